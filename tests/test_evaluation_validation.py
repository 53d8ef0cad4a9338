"""`delving.evaluate --views=dense` computes what the exported model serves."""

import os
import subprocess
import sys

import export_testutil as fx
import imaging_testutil
import numpy as np
import pytest
import tensorflow as tf

from delving.evaluation import dense, validation
from delving.models import networks
from export import export_lib
from pipelines import preprocessing, sources
from pipelines.config import InputConfig
from tests import train_testutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALES = (96, 240)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense_eval")
    data_dir = str(root / "data")
    shards = imaging_testutil.write_shards(
        data_dir,
        "validation",
        num_shards=1,
        per_shard=3,
        num_classes=fx.NUM_CLASSES,
        height=150,
        width=200,
    )
    # input_std: inputs of unit scale, so an untrained net is not saturated.
    model_dir = fx.write_model_dir(
        root / "run", model="model_a", seed=4, data_dir=data_dir, input_std=True
    )
    servable = export_lib.load_servable(model_dir)
    records = list(
        tf.data.TFRecordDataset(shards[0][0]).map(
            lambda r: tf.io.parse_single_example(
                r,
                {
                    "image/encoded": tf.io.FixedLenFeature([], tf.string),
                    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
                },
            )
        )
    )
    images = [tf.io.decode_jpeg(r["image/encoded"], channels=3) for r in records]
    labels = np.array([int(r["image/class/label"]) - 1 for r in records])
    return dict(
        model_dir=model_dir,
        servable=servable,
        images=images,
        labels=labels,
        source=sources.DataSource(
            data_dir=data_dir,
            num_classes=fx.NUM_CLASSES,
            input=InputConfig(batch_size=4, std=preprocessing.STD_RGB),
        ),
    )


def _expected(run, flip):
    member = run["servable"].dense_inference(scales=SCALES, flip=flip)
    probs = np.concatenate([member(image[None]) for image in run["images"]])
    picked = probs[np.arange(len(probs)), run["labels"]]
    assert np.all(picked > 1e-6)  # a loss that tells probabilities apart
    loss = -np.mean(np.log(picked))
    top1 = np.mean(np.argmax(probs, -1) != run["labels"])
    return loss, top1


def test_dense_view_equals_the_exported_computation(run):
    result = validation.evaluate(
        run["servable"].model, run["source"], view="dense", scales=SCALES, batch_size=4
    )
    loss, top1 = _expected(run, flip=True)
    assert result["count"] == 3
    np.testing.assert_allclose(result["loss"], loss, rtol=1e-5)
    assert result["top1_error"] == pytest.approx(top1)


def test_evaluate_binary_dense_scales_noflip(run):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "delving.evaluate",
            f"--model_dir={run['model_dir']}",
            "--views=dense",
            f"--scales={','.join(map(str, SCALES))}",
            "--noflip",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    row = [line for line in result.stdout.splitlines() if line.startswith("dense")][-1].split()
    loss, top1 = _expected(run, flip=False)
    assert row[1] == "96,240" and row[-1] == "3"
    assert float(row[-2]) == pytest.approx(loss, abs=1e-4)
    assert float(row[2].rstrip("%")) == pytest.approx(100 * top1, abs=0.01)


@pytest.mark.parametrize("image_size,window", [(224, 14), (160, 10)])
def test_window_of_the_view_comes_from_the_training_crop_size(run, image_size, window):
    model = run["servable"].model
    x = tf.random.stateless_normal([1, 240, 260, 3], [1, 2])
    assert networks.head_window("model_a", image_size) == window
    np.testing.assert_allclose(
        dense.evaluation_scores(model, x, image_size=image_size),
        dense.dense_scores(model, x, window=window),
    )


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
