"""The evaluate binary on a trained tiny model_dir: centre and 10-view."""

import re
import shutil

import numpy as np
import pytest

from delving.evaluation import validation
from delving.training import config, inputs, loop
from tests import train_testutil as util


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("evaluate") / "run"
    cfg = config.resolve_config(
        **dict(
            util.TINY_RECIPE,
            data_dir=util.tiny_data_dir(tmp_path_factory),
            model_dir=str(model_dir),
            steps_per_epoch=4,
            eval_steps=None,
        )
    )
    return loop.train(cfg, verbose=0)


def _results(stdout):
    """{view: (top1, top5, images)} from the binary's table."""
    rows = re.findall(r"^(\S+)\s+\S+\s+([\d.]+)%\s+([\d.]+)%\s+[\d.]+\s+(\d+)$", stdout, re.M)
    return {v: (float(a) / 100, float(b) / 100, int(n)) for v, a, b, n in rows}


def test_center_and_10view(trained):
    code, out, err = util.run(
        "delving.evaluate", [f"--model_dir={trained.config.model_dir}", "--views=center,10view"]
    )
    assert code == 0, err[-3000:]
    results = _results(out)
    assert set(results) == {"center", "10view"}, out
    validation = util.TINY_SPLITS[1][1]
    assert all(n == validation for _, _, n in results.values())
    # The centre view at the run's eval_resize is the trainer's validation.
    last = trained.history[-1]
    assert results["center"][:2] == pytest.approx(
        (last["val_top1_error"], last["val_top5_error"]), abs=1e-4
    )
    assert 0 <= results["10view"][0] <= 1


def test_multi_scale_and_bad_view(trained):
    code, out, err = util.run(
        "delving.evaluate",
        [f"--model_dir={trained.config.model_dir}", "--views=center", "--scale=36,44"],
    )
    assert code == 0, err[-3000:]
    assert re.search(r"^center\s+36,44\s", out, re.M), out
    code, out, err = util.run(
        "delving.evaluate", [f"--model_dir={trained.config.model_dir}", "--views=sideways"]
    )
    assert code != 0 and "Traceback" not in err
    lines = util.error_lines(err)
    assert len(lines) == 1 and "--views: expected names among center, 10view, dense" in lines[0]


def test_progress_line_agrees_with_the_result_table(trained, capsys):
    """The bar shows the running error as it is (not re-averaged), and a
    stdout that is not a terminal gets one plain line, no ANSI codes."""
    model, cfg = validation.load_model(trained.config.model_dir)
    result = validation.evaluate(
        model,
        inputs.source_from_config(cfg),
        view="center",
        scales=(cfg.eval_resize,),
        image_size=cfg.image_size,
        batch_size=4,
        steps=5,
        progress=True,
    )
    out = capsys.readouterr().out
    assert "\x1b[" not in out and "\r" not in out, repr(out)
    assert len(out.splitlines()) == 1, repr(out)
    shown = re.search(r"top1_err: ([\d.]+) - top5_err: ([\d.]+)", out)
    assert shown, repr(out)
    assert float(shown[1]) == pytest.approx(result["top1_error"], abs=1e-4)
    assert float(shown[2]) == pytest.approx(result["top5_error"], abs=1e-4)


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
    assert result["nonfinite"] == result["count"] == util.TINY_SPLITS[1][1]


def test_binary_prints_the_count_of_non_finite_probabilities(overflowed):
    code, out, err = util.run("delving.evaluate", [f"--model_dir={overflowed}", "--views=center"])
    assert code == 0, err[-3000:]
    assert f"images with non-finite probabilities: center {util.TINY_SPLITS[1][1]}" in out
    assert re.search(r"^center\s+\S+\s+100\.00%\s+100\.00%\s", out, re.M), out
