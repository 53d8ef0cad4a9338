"""delving.experiments.activations (Table 1 and 2: ReLU against PReLU), as the
quick report ran it (tests/experiments_testutil.py)."""

import pytest

from delving import paper
from delving.experiments import common
from tests import experiments_testutil


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    return experiments_testutil.quick_report(tmp_path_factory)


@pytest.fixture(scope="module")
def results(quick_report):
    return experiments_testutil.results(quick_report, "activations")


@pytest.fixture(scope="module")
def table(quick_report):
    return (quick_report["work"] / "activations" / "activations.md").read_text()


def test_quick_mode_compares_relu_with_prelu(results):
    assert list(results["summary"]) == ["relu", "prelu"]  # --quick: two of the four


def test_every_run_reports_its_validation_errors(results):
    for runs in results["runs"].values():
        for r in runs:
            assert 0.0 <= r["val_top1_error"] <= 1.0
            assert r["val_top5_error"] <= r["val_top1_error"] + 1e-9
            assert r["val_count"] == common.QUICK_SPLITS[1][1]


def test_prelu_runs_report_table1s_coefficients(results):
    for activation, runs in results["runs"].items():
        for r in runs:
            if activation.startswith("prelu"):
                assert list(r["prelu"]) == list(paper.TABLE1)  # Table 1's 13 rows
            else:
                assert r["prelu"] == {}


def test_table_names_each_activation(table):
    for activation in ("relu", "prelu"):
        assert common.ACTIVATION_LABELS[activation] in table


def test_table_shows_the_papers_conv1_slope_beside_ours(table):
    assert "| conv1 |" in table and "0.596" in table  # the paper's channel-wise conv1 slope


@pytest.mark.parametrize("name", ["activations", "activations_coefficients"])
def test_draws_its_figures(quick_report, name):
    assert experiments_testutil.is_png(quick_report["work"] / "activations" / f"{name}.png")


@pytest.mark.parametrize("flag", ["--activations=swish", "--seeds=0,x", "--image_size=8"])
def test_bad_flag_fails_in_one_line(flag):
    experiments_testutil.assert_bad_flag_fails_in_one_line(
        ["delving.experiments.activations", flag]
    )
