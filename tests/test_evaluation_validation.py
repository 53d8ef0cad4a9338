"""delving.evaluation.validation: the views' numbers on real shards, the
dense view against the exported computation, and the progress line."""

import re

import numpy as np
import pytest

from delving.evaluation import validation
from delving.models import networks
from delving.training import inputs
from pipelines import sources
from pipelines.config import InputConfig
from tests import evaluation_testutil, train_testutil


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return evaluation_testutil.dense_run(tmp_path_factory)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return evaluation_testutil.trained_run(tmp_path_factory)


def test_dense_view_equals_the_exported_computation(run):
    result = validation.evaluate(
        run["servable"].model,
        run["source"],
        view="dense",
        scales=evaluation_testutil.SCALES,
        batch_size=4,
    )
    loss, top1 = evaluation_testutil.served_loss_and_top1(run, flip=True)
    assert result["count"] == 3
    np.testing.assert_allclose(result["loss"], loss, rtol=1e-5)
    assert result["top1_error"] == pytest.approx(top1)


def test_dense_view_traces_once_for_images_of_every_size(tmp_path_factory):
    """The built-in images differ in size: one trace serves them all (the
    view used to retrace for every image, seconds each)."""
    data_dir = train_testutil.tiny_data_dir(tmp_path_factory)
    model = networks.build_model("small_14", num_classes=10, width_multiplier=0.125, fc_units=16)
    evaluator = validation.Evaluator(
        model,
        sources.DataSource(data_dir=data_dir, num_classes=10, input=InputConfig(batch_size=4)),
        view="dense",
        scales=(40, 48),
        batch_size=1,
        steps=8,
    )
    assert evaluator.run()["count"] == 8
    assert evaluator._step.experimental_get_tracing_count() == 1


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
