"""PReLU (Eq. 1-5) against NumPy references computed here."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_layers


def _reference(x, alpha, channel_axis):
    """Eq. 2 in NumPy: max(0, y) + a * min(0, y), slopes along channel_axis."""
    shape = [1] * x.ndim
    if np.ndim(alpha):
        shape[channel_axis] = -1
    a = np.reshape(alpha, shape)
    return np.maximum(x, 0) + a * np.minimum(x, 0)


def _inputs(shape, seed=0):
    # Continuous normal values: no exact zeros, where Eq. 4's `y <= 0` and the
    # autodiff subgradient could disagree.
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


CASES = [  # (shape, data_format, channel axis)
    ((4, 7), "channels_last", 1),
    ((4, 7), "channels_first", 1),  # rank 2: one slope per unit either way
    ((3, 9, 5), "channels_last", 2),
    ((3, 5, 9), "channels_first", 1),
    ((2, 6, 5, 4), "channels_last", 3),
    ((2, 4, 6, 5), "channels_first", 1),
    ((2, 3, 4, 5, 3), "channels_last", 4),
    ((2, 3, 3, 4, 5), "channels_first", 1),
]


def _built(shape, data_format, channel_shared):
    layer = keras_layers.PReLU(channel_shared=channel_shared, data_format=data_format)
    layer.build(shape)
    return layer


def _distinct_slopes(layer, channels):
    """Assigns distinct, partly negative and > 1 slopes (the paper leaves them
    unconstrained); returns them."""
    alpha = np.linspace(-0.5, 1.5, channels, dtype="float32")
    alpha = alpha[1] if layer.channel_shared else alpha
    layer.alpha.assign(alpha)
    return alpha


@pytest.mark.parametrize("channel_shared", [False, True])
@pytest.mark.parametrize("shape,data_format,axis", CASES)
def test_one_slope_per_channel_or_one_shared(shape, data_format, axis, channel_shared):
    layer = _built(shape, data_format, channel_shared)
    expected_shape = () if channel_shared else (shape[axis],)
    assert tuple(layer.alpha.shape) == expected_shape


@pytest.mark.parametrize("channel_shared", [False, True])
@pytest.mark.parametrize("shape,data_format,axis", CASES)
def test_slopes_start_at_the_papers_0_25(shape, data_format, axis, channel_shared):
    layer = _built(shape, data_format, channel_shared)
    np.testing.assert_allclose(layer.alpha.numpy(), 0.25)


@pytest.mark.parametrize("channel_shared", [False, True])
@pytest.mark.parametrize("shape,data_format,axis", CASES)
def test_forward_matches_eq2(shape, data_format, axis, channel_shared):
    x = _inputs(shape)
    layer = _built(shape, data_format, channel_shared)
    alpha = _distinct_slopes(layer, shape[axis])
    np.testing.assert_allclose(layer(x).numpy(), _reference(x, alpha, axis), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("channel_shared", [False, True])
@pytest.mark.parametrize("shape,data_format,axis", CASES)
def test_slope_gradient_matches_eq4_eq5(shape, data_format, axis, channel_shared):
    x = _inputs(shape)
    layer = _built(shape, data_format, channel_shared)
    _distinct_slopes(layer, shape[axis])
    upstream = _inputs(shape, seed=1)  # dE/df(y)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) * upstream)
    (grad_alpha,) = tape.gradient(loss, [layer.alpha.value])
    # Eq. 4: dE/da_i = sum over positions of channel i of dE/df(y) * min(y, 0);
    # Eq. 5 (shared): also summed over the channels.
    per_element = upstream * np.where(x <= 0, x, 0).astype("float64")
    if channel_shared:
        expected = per_element.sum()
    else:
        other_axes = tuple(i for i in range(x.ndim) if i != axis)
        expected = per_element.sum(axis=other_axes)
    np.testing.assert_allclose(grad_alpha.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_same_as_keras_prelu_with_paper_settings():
    x = _inputs((2, 5, 6, 8))
    ours = keras_layers.PReLU()
    builtin = keras.layers.PReLU(
        alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2]
    )
    np.testing.assert_allclose(ours(x).numpy(), builtin(x).numpy(), rtol=1e-6)
    assert ours.count_params() == builtin.count_params() == 8


def test_channel_wise_has_one_parameter_per_channel():
    layer = keras_layers.PReLU()
    layer.build((None, None, None, 64))
    assert layer.count_params() == 64


def test_channel_shared_has_one_parameter():
    shared = keras_layers.PReLU(channel_shared=True)
    shared.build((None, None, None, 64))
    assert shared.count_params() == 1


@pytest.mark.parametrize("channel_shared", [False, True])
def test_the_slopes_weight_is_named_alpha(channel_shared):
    layer = keras_layers.PReLU(channel_shared=channel_shared)
    layer.build((None, None, None, 64))
    assert layer.weights[0].name == "alpha"


def test_model_keeps_unknown_spatial_dims():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras_layers.PReLU()(inputs))
    assert model.output.shape == (None, None, None, 3)


def test_one_tf_function_graph_serves_every_spatial_size():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras_layers.PReLU()(inputs))
    fn = tf.function(model, input_signature=[tf.TensorSpec((None, None, None, 3))])
    for shape in [(1, 4, 9, 3), (2, 7, 3, 3)]:
        x = _inputs(shape)
        np.testing.assert_allclose(fn(x).numpy(), _reference(x, 0.25, 3), rtol=1e-6)
    assert len(fn._list_all_concrete_functions()) == 1  # one graph for every size


@pytest.mark.parametrize(
    "policy,compute", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")]
)
def test_mixed_precision_keeps_float32_slopes(policy, compute):
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    try:
        model = keras.Sequential(
            [
                keras.Input((6, 6, 3)),
                keras.layers.Conv2D(4, 3),
                keras_layers.PReLU(),
                keras.layers.Flatten(),
                keras.layers.Dense(2, dtype="float32"),
            ]
        )
        prelu = model.layers[1]
        assert prelu.alpha.dtype == "float32"
        assert prelu(_inputs((1, 2, 2, 4)).astype(compute)).dtype == compute
        assert prelu.compute_output_spec(keras.KerasTensor((1, 2, 2, 4), compute)).dtype == compute
        optimizer = keras.optimizers.SGD(1.0)
        if policy == "mixed_float16":
            # Keras' default initial loss scale (2**15) overflows float16 in
            # this net's gradients for some initial weights, and the dynamic
            # loss scale then skips the one step.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=1.0)
        model.compile(optimizer, "mse")
        model.fit(_inputs((4, 6, 6, 3)), _inputs((4, 2)), epochs=1, verbose=0)
        assert prelu.alpha.dtype == "float32"
        # The step did reach the slopes (through the compute-dtype graph).
        assert not np.array_equal(prelu.alpha.numpy(), np.full(4, 0.25, "float32"))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_config_round_trip():
    layer = keras_layers.PReLU(
        channel_shared=True,
        alpha_initializer=keras.initializers.Constant(0.1),
        alpha_regularizer=keras.regularizers.L2(1e-4),
        alpha_constraint=keras.constraints.NonNeg(),
        data_format="channels_first",
        name="act",
    )
    config = layer.get_config()
    clone = keras_layers.PReLU.from_config(config)
    assert clone.get_config() == config
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, keras_layers.PReLU)
    assert keras.layers.serialize(layer)["registered_name"] == "keras_layers>PReLU"
    assert restored.channel_shared and restored.data_format == "channels_first"
    restored.build((None, 2, 3, 3))
    np.testing.assert_allclose(restored.alpha.numpy(), 0.1)


def test_clear_errors():
    with pytest.raises(ValueError, match="channel dimension"):
        keras_layers.PReLU().build((None, None, None, None))
    with pytest.raises(ValueError, match="max_ndim=5"):
        keras_layers.PReLU()(np.zeros((1, 1, 1, 1, 1, 2), "float32"))
    with pytest.raises(ValueError, match="data_format"):
        keras_layers.PReLU(data_format="nhwc")
    layer = keras_layers.PReLU()
    layer(np.zeros((1, 2, 2, 3), "float32"))
    with pytest.raises(ValueError):
        layer(np.zeros((1, 2, 2, 5), "float32"))


# Programs run under each backend, with that backend's own autodiff, in a
# process of their own (KERAS_BACKEND is read once, at Keras' import).
PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "programs")


def _run_on_backend(program, backend):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=root, CUDA_VISIBLE_DEVICES="")
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, os.path.join(PROGRAMS, program)],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0 and f"PRELU_BACKEND_OK {backend}" in result.stdout, (
        result.stdout[-3000:] + result.stderr[-3000:]
    )


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_gradient_at_zero_equals_torch_prelu_on_every_backend(backend):
    pytest.importorskip("torch")  # the reference
    pytest.importorskip(backend)
    _run_on_backend("prelu_gradient_at_zero.py", backend)


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_shared_slope_trains_under_norm_constraints_on_every_backend(backend):
    pytest.importorskip(backend)
    _run_on_backend("prelu_shared_norm_constraints.py", backend)
