"""The evaluate binary (delving.evaluate) on real model_dirs: its table for
every view, scales, and bad flags in one line."""

import re
import shutil

import numpy as np
import pytest

from delving.evaluation import validation
from delving.training import inputs
from tests import evaluation_testutil, train_testutil


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return evaluation_testutil.trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return evaluation_testutil.dense_run(tmp_path_factory)


def _results(stdout):
    """{view: (top1, top5, images)} from the binary's table."""
    rows = re.findall(r"^(\S+)\s+\S+\s+([\d.]+)%\s+([\d.]+)%\s+[\d.]+\s+(\d+)$", stdout, re.M)
    return {v: (float(a) / 100, float(b) / 100, int(n)) for v, a, b, n in rows}


@pytest.fixture(scope="module")
def two_views(trained):
    """The binary's {view: (top1, top5, images)} for --views=center,10view."""
    code, out, err = train_testutil.run(
        "delving.evaluate", [f"--model_dir={trained.config.model_dir}", "--views=center,10view"]
    )
    assert code == 0, err[-3000:]
    results = _results(out)
    assert set(results) == {"center", "10view"}, out
    return results


def test_each_view_is_reported_over_the_whole_validation_split(two_views):
    validation = train_testutil.TINY_SPLITS[1][1]
    assert all(n == validation for _, _, n in two_views.values())
    assert 0 <= two_views["10view"][0] <= 1


def test_center_view_at_the_runs_resize_is_the_trainers_validation(trained, two_views):
    last = trained.history[-1]
    assert two_views["center"][:2] == pytest.approx(
        (last["val_top1_error"], last["val_top5_error"]), abs=1e-4
    )


def test_scale_flag_sets_the_scales_of_the_row(trained):
    code, out, err = train_testutil.run(
        "delving.evaluate",
        [f"--model_dir={trained.config.model_dir}", "--views=center", "--scale=36,44"],
    )
    assert code == 0, err[-3000:]
    assert re.search(r"^center\s+36,44\s", out, re.M), out


def test_unknown_view_is_a_one_line_error(trained):
    code, out, err = train_testutil.run(
        "delving.evaluate", [f"--model_dir={trained.config.model_dir}", "--views=sideways"]
    )
    assert code != 0 and "Traceback" not in err
    lines = train_testutil.error_lines(err)
    assert len(lines) == 1 and "--views: expected names among center, 10view, dense" in lines[0]


def test_dense_view_at_given_scales_unflipped_equals_the_export(run):
    scales = ",".join(map(str, evaluation_testutil.SCALES))
    code, out, err = train_testutil.run(
        "delving.evaluate",
        [f"--model_dir={run['model_dir']}", "--views=dense", f"--scales={scales}", "--noflip"],
    )
    assert code == 0, err[-3000:]
    row = [line for line in out.splitlines() if line.startswith("dense")][-1].split()
    loss, top1 = evaluation_testutil.served_loss_and_top1(run, flip=False)
    assert row[1] == "96,240" and row[-1] == "3"
    assert float(row[-2]) == pytest.approx(loss, abs=1e-4)
    assert float(row[2].rstrip("%")) == pytest.approx(100 * top1, abs=0.01)


@pytest.fixture(scope="module")
def overflowed(trained, tmp_path_factory):
    """A copy of the run whose logits are NaN, as a float16 model's are once
    its activations overflow."""
    model_dir = tmp_path_factory.mktemp("overflowed") / "run"
    shutil.copytree(trained.config.model_dir, model_dir)
    model, _ = validation.load_model(str(model_dir))
    fc3 = model.get_layer("head").get_layer("fc3")
    kernel, bias = fc3.get_weights()
    fc3.set_weights([kernel, np.full_like(bias, np.nan)])
    model.save(model_dir / "model.keras")
    return str(model_dir)


def test_non_finite_probabilities_count_as_errors(overflowed):
    model, cfg = validation.load_model(overflowed)
    result = validation.evaluate(
        model,
        inputs.source_from_config(cfg),
        view="center",
        scales=(cfg.eval_resize,),
        image_size=cfg.image_size,
        batch_size=4,
    )
    assert (result["top1_error"], result["top5_error"]) == (1.0, 1.0)
    assert result["nonfinite"] == result["count"] == train_testutil.TINY_SPLITS[1][1]


def test_binary_prints_the_count_of_non_finite_probabilities(overflowed):
    code, out, err = train_testutil.run(
        "delving.evaluate", [f"--model_dir={overflowed}", "--views=center"]
    )
    assert code == 0, err[-3000:]
    count = train_testutil.TINY_SPLITS[1][1]
    assert f"images with non-finite probabilities: center {count}" in out
    assert re.search(r"^center\s+\S+\s+100\.00%\s+100\.00%\s", out, re.M), out
