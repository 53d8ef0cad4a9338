"""delving.training.step under MirroredStrategy: the all-reduced step equals
the one-device step, with XLA or without (the strategies, and when XLA is
on: test_training_setup.py).

Mirrored runs on the two logical CPU devices conftest.py sets up.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from delving.models import from_config
from delving.training import config, loop
from tests import train_testutil


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return train_testutil.tiny_data_dir(tmp_path_factory)


def _train(data_dir, model_dir, strategy, **overrides):
    recipe = dict(train_testutil.TINY_RECIPE, dropout=0.0, **overrides)
    cfg = config.resolve_config(data_dir=data_dir, model_dir=str(model_dir), **recipe)
    return loop.train(cfg, strategy=strategy, verbose=0)


def test_mirrored_matches_one_device(data_dir, tmp_path):
    """Same global batch and seed: same weights after a few SGD steps.

    The data order and augmentation are seeded per example, so the two
    replicas of the mirrored run see exactly the halves of the one-device
    batch; the all-reduced gradient (loss over the global batch; the weight
    decay is added once, after the all-reduce) must then equal the
    one-device gradient.
    """
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2, "conftest.py should set up two logical CPUs"
    one = _train(data_dir, tmp_path / "one", tf.distribute.OneDeviceStrategy(devices[0]))
    # ReductionToOneDevice: no collective ops, whose instance keys can clash
    # with another MirroredStrategy created earlier in the same test process.
    two = _train(
        data_dir,
        tmp_path / "two",
        tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
        ),
    )
    assert one.step == two.step == train_testutil.TINY_RECIPE["steps_per_epoch"]
    cfg = one.config  # the seeded initial weights, rebuilt
    initial = from_config.build(cfg, seed=cfg.seed)
    moved = 0
    for w1, w2, w0 in zip(one.model.weights, two.model.weights, initial.weights):
        a, b = np.asarray(w1.numpy()), np.asarray(w2.numpy())
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=w1.path)
        moved += not np.allclose(a, w0.numpy(), atol=1e-7)
    assert moved > len(one.model.weights) // 2  # training did change them
    np.testing.assert_allclose(
        one.history[-1]["train_loss"], two.history[-1]["train_loss"], rtol=1e-4
    )


@pytest.mark.parametrize("mixed_precision", ["none", "bfloat16"])
def test_xla_under_mirrored_matches_the_uncompiled_step(data_dir, tmp_path, mixed_precision):
    """--jit_compile compiles each replica's pass (and the evaluation's
    forward pass); under MirroredStrategy, float32 or bfloat16, it trains
    as the uncompiled step does."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    runs = {}
    try:
        for jit in (False, True):
            strategy = tf.distribute.MirroredStrategy(
                devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
            )
            runs[jit] = _train(
                data_dir,
                tmp_path / f"jit{jit}",
                strategy,
                jit_compile=jit,
                mixed_precision=mixed_precision,
            )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for w1, w2 in zip(runs[False].model.weights, runs[True].model.weights):
        tolerance = 2e-3 if mixed_precision == "none" else 5e-2
        np.testing.assert_allclose(
            np.asarray(w1.numpy(), np.float32),
            np.asarray(w2.numpy(), np.float32),
            rtol=tolerance,
            atol=tolerance / 10,
            err_msg=w1.path,
        )
    for key in ("train_loss", "val_loss"):
        assert np.isfinite(runs[True].history[-1][key])
        np.testing.assert_allclose(
            runs[True].history[-1][key], runs[False].history[-1][key], rtol=0.05
        )
