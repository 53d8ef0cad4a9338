"""delving.experiments.report_photos: the real-photo report, as `report --quick
--data_dir` writes it on a tiny set of real photo crops converted by our
builder (tests/experiments_testutil.py), and its judgements on constructed
results."""

import os
import re

import pytest

from delving.experiments import common, report_photos, slope_tables
from tests import experiments_testutil, train_testutil

ACTIVATIONS = ("relu", "lrelu", "prelu_shared", "prelu")


@pytest.fixture(scope="module")
def photo_report(tmp_path_factory):
    return experiments_testutil.quick_photo_report(tmp_path_factory)


@pytest.fixture(scope="module")
def text(photo_report):
    return photo_report["report"].read_text()


@pytest.fixture(scope="module")
def results(photo_report):
    return experiments_testutil.results(photo_report, "activations")


def _row(text, label):
    return next(l for l in text.splitlines() if l.startswith(f"| {label} |"))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_table2_gives_mean_and_std_of_top1_and_top5(text, results, activation):
    s = results["summary"][activation]
    row = _row(text, common.ACTIVATION_LABELS[activation])
    for key in ("val_top1_error", "val_top5_error"):
        assert "{:.2f} ± {:.2f}".format(*(100 * v for v in s[key])) in row


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_table2_gives_every_seeds_top1(text, results, activation):
    row = _row(text, common.ACTIVATION_LABELS[activation])
    per_seed = ", ".join(f"{100 * r['val_top1_error']:.2f}" for r in results["runs"][activation])
    assert len(results["runs"][activation]) == 2 and per_seed in row


@pytest.mark.parametrize("activation", ["lrelu", "prelu_shared", "prelu"])
def test_table2_says_whether_the_difference_to_relu_exceeds_two_standard_errors(
    text, results, activation
):
    diff, se = report_photos.difference(results, activation, "relu", "val_top1_error")
    row = _row(text, common.ACTIVATION_LABELS[activation])
    verdict = "yes" if abs(diff) > 2 * se else "no"
    assert f"| {diff:+.2f} ({2 * se:.2f}) | {verdict} |" in row


def test_says_where_the_papers_ranking_holds_or_not(text):
    assert "Where the paper's ranking" in text or "holds on these photos" in text


def test_table1_gives_each_layers_slopes_beside_the_papers(text, results):
    conv1 = _row(text, "conv1")
    shared = results["summary"]["prelu_shared"]["prelu"]["conv1"]
    assert f"{shared[0]:.3f} ± {shared[1]:.3f}" in conv1 and "0.681" in conv1
    assert len([l for l in text.splitlines() if re.match(r"\| (conv|fc)\S* \|", l)]) == 13


def test_table1_gives_the_channel_spread(text, results):
    spread = report_photos.channel_spread(results["runs"]["prelu"], "conv2_1")
    assert "{:.3f} ({:.3f} to {:.3f})".format(*spread) in _row(text, "conv2_1")


def test_table1_shows_the_slopes_the_shapes_report_published(text):
    with open(experiments_testutil.SHAPES_REPORT) as f:
        shapes = slope_tables.read_coefficient_table(f.read())["summary"]
    conv1 = _row(text, "conv1").split(" | ")
    header = next(l for l in text.splitlines() if l.startswith("| layer |")).split(" | ")
    for variant, column in (
        ("prelu_shared", "shared: shapes"),
        ("prelu", "channel-wise mean: shapes"),
    ):
        assert conv1[header.index(column)] == f"{shapes[variant]['prelu']['conv1'][0]:.3f}"
    assert f"(from `{experiments_testutil.SHAPES_REPORT}`)" in text


def test_says_why_fig_2_3_was_not_run_without_convergence(text):
    assert report_photos.CONVERGENCE_NOT_RUN.strip() in text


def test_slopes_section_says_when_the_shapes_are_left_out(results):
    assert "the shapes' values are left out" in report_photos.slopes_section(results, None, {})


def test_answers_whether_conv1_learns_the_largest_slope_on_photos_and_shapes(text):
    assert text.count("the largest conv slope is") == 4


def test_links_only_existing_photo_figures(photo_report, text):
    links = [l.split("](")[1].rstrip(")") for l in text.splitlines() if l.startswith("![")]
    assert len(links) >= 3
    for link in links:
        path = os.path.join(os.path.dirname(photo_report["report"]), link)
        assert os.path.basename(path).startswith("photos_")
        assert experiments_testutil.is_png(path)


def test_writes_only_photo_figures(photo_report):
    assert all(n.startswith("photos_") for n in os.listdir(photo_report["figures"]))


def test_writes_the_data_dir_as_a_placeholder(photo_report, text):
    assert str(photo_report["data"]) not in text and "--data_dir=$DATA_DIR" in text


def test_states_the_photo_counts(text):
    assert "3 classes, 18 training and 9 validation images" in text


def _results(top1_by_activation):
    """Activation results with the given top-1 errors (fractions) per seed."""
    return {
        "runs": {
            a: [{"seed": i, "val_top1_error": e, "val_top5_error": e / 3} for i, e in enumerate(es)]
            for a, es in top1_by_activation.items()
        }
    }


def test_ranking_names_a_reversed_step():
    said = report_photos.ranking_sentences(
        _results(
            {
                "relu": [0.30, 0.31, 0.30],
                "lrelu": [0.30, 0.31, 0.30],
                "prelu_shared": [0.40, 0.41, 0.40],
                "prelu": [0.20, 0.21, 0.20],
            }
        )
    )
    assert said[0].startswith("- **Where the paper's ranking")
    assert "PReLU, channel-shared is **not** better than ReLU" in said[0]
    assert "beyond 2 SE: the reverse order" in said[0]


def test_ranking_holds_when_every_step_is_beyond_noise():
    said = report_photos.ranking_sentences(
        _results(
            {
                "relu": [0.40, 0.41, 0.40],
                "lrelu": [0.40, 0.41, 0.40],
                "prelu_shared": [0.30, 0.31, 0.30],
                "prelu": [0.20, 0.21, 0.20],
            }
        )
    )
    assert "holds on these photos, every step of it beyond twice" in said[0]


def test_ranking_calls_a_step_within_noise_unresolved():
    said = report_photos.ranking_sentences(
        _results(
            {
                "relu": [0.40, 0.30, 0.35],
                "prelu_shared": [0.39, 0.29, 0.34],
                "prelu": [0.20, 0.21, 0.20],
            }
        )
    )
    assert "better than ReLU only within noise" in said[0]


@pytest.mark.parametrize("records", ["missing", "empty"])
def test_data_dir_without_shards_fails_in_one_line_writing_nothing(tmp_path, records):
    data = tmp_path / records
    if records == "empty":
        data.mkdir()
    out = tmp_path / "out"
    proc = experiments_testutil.run_module(
        [
            "delving.experiments.report",
            f"--data_dir={data}",
            f"--output={out / 'REPRODUCTION_PHOTOS.md'}",
            f"--work_dir={out / 'work'}",
            f"--figures_dir={out / 'figures'}",
        ],
        timeout=train_testutil.HANG_GUARD_S,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"--data_dir={data}" in proc.stderr and not out.exists()
