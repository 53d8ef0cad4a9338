"""keras_layers as a whole: every public piece in one model, built in the three
Keras model styles, through `.keras` files, under MirroredStrategy and under a
second Keras backend."""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_layers
from tests import train_testutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = os.path.join(ROOT, "tests", "programs", "layers_on_a_backend.py")


def _layers():
    """A tiny version of the paper's nets: every public piece, both PReLU kinds."""
    return [
        keras.layers.Conv2D(
            6, 3, padding="same", kernel_initializer=keras_layers.HeVarianceScaling("fan_out")
        ),
        keras_layers.PReLU(),
        keras.layers.Conv2D(
            6,
            2,
            kernel_initializer=keras_layers.HeVarianceScaling(
                "fan_in", negative_slope=0.25, distribution="truncated_normal"
            ),
        ),
        keras_layers.PReLU(channel_shared=True),
        keras_layers.SpatialPyramidPooling((3, 2, 1)),
        keras.layers.Dense(8, kernel_initializer=keras_layers.XavierVarianceScaling()),
        keras_layers.PReLU(),
        keras.layers.Dense(3),
    ]


@keras.saving.register_keras_serializable(package="keras_layers_tests")
class SubclassedNet(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stack = _layers()

    def call(self, inputs):
        for layer in self.stack:
            inputs = layer(inputs)
        return inputs


def _sequential():
    return keras.Sequential([keras.Input((None, None, 3))] + _layers())


def _functional():
    inputs = keras.Input((None, None, 3))
    y = inputs
    for layer in _layers():
        y = layer(y)
    return keras.Model(inputs, y)


def _subclassed():
    model = SubclassedNet()
    model(np.zeros((1, 8, 8, 3), "float32"))
    return model


@pytest.mark.parametrize("build", [_sequential, _functional, _subclassed])
def test_a_saved_model_reloads_in_safe_mode_as_the_same_network(build, tmp_path):
    # Training steps run in the MirroredStrategy and second-backend tests.
    model = build()
    rng = np.random.default_rng(0)
    for v in model.trainable_variables:  # non-default slopes must survive the file
        if v.name == "alpha":
            v.assign(rng.uniform(-1, 1, v.shape).astype("float32"))
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    for shape in [(2, 5, 7, 3), (1, 16, 12, 3)]:  # any image size, thanks to SPP
        x = rng.standard_normal(shape).astype("float32")
        np.testing.assert_allclose(restored(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    restored_types = {type(layer).__name__ for layer in restored._flatten_layers()}
    assert {"PReLU", "SpatialPyramidPooling"} <= restored_types


def test_mirrored_strategy_two_replicas_one_step():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        model = _functional()
        optimizer = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=5e-4)
        keras_layers.exclude_prelu_from_weight_decay(optimizer, model)
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    slopes = [v for v in model.trainable_variables if v.name == "alpha"]
    before = [v.numpy().copy() for v in slopes]
    rng = np.random.default_rng(1)
    data = tf.data.Dataset.from_tensor_slices(
        (rng.standard_normal((8, 11, 11, 3)).astype("float32"), np.arange(8) % 3)
    ).batch(8)
    history = model.fit(data, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # The slopes learned. Not the shared one right before SPP: only the bin
    # maxima get a gradient, and dE/da (Eq. 5) is 0 unless a whole bin is negative.
    assert len(slopes) == 3
    for index in (0, 2):
        assert not np.array_equal(before[index], slopes[index].numpy()), slopes[index].path


def _second_backend():
    for backend in ("torch", "jax"):
        if importlib.util.find_spec(backend) is not None:
            return backend
    return None


def test_layers_under_a_second_backend(tmp_path):
    backend = _second_backend()
    if backend is None:
        pytest.skip("neither torch nor jax is installed (requirements-test.txt installs torch)")
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, PROGRAM, backend, str(tmp_path / "m.keras")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
    )
    assert result.returncode == 0 and "SECOND_BACKEND_OK" in result.stdout, (
        result.stdout[-3000:] + result.stderr[-3000:]
    )
