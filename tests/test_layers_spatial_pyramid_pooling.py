"""Spatial pyramid pooling against a NumPy reference computed here."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_layers
from keras_layers.spatial_pyramid_pooling import bin_edges, uniform_window


def _reference(x, bins):
    """SPP of an NHWC array, straight from the definition with Python loops."""
    batch, height, width, channels = x.shape
    features = []
    for n in bins:
        level = np.empty((batch, n, n, channels), x.dtype)
        for i in range(n):
            r0, r1 = math.floor(i * height / n), math.ceil((i + 1) * height / n)
            for j in range(n):
                c0, c1 = math.floor(j * width / n), math.ceil((j + 1) * width / n)
                level[:, i, j, :] = x[:, r0:r1, c0:c1, :].max(axis=(1, 2))
        features.append(level.reshape(batch, -1))  # row-major bins, channels fastest
    return np.concatenate(features, axis=1)


SIZES = [(1, 1), (2, 3), (3, 7), (5, 5), (6, 1), (13, 13), (14, 14), (17, 9), (29, 40)]


@pytest.mark.parametrize("bins", [(6, 3, 2, 1), (7, 3, 2, 1), (1, 4)])
@pytest.mark.parametrize("height,width", SIZES)
def test_matches_reference_both_formats(height, width, bins):
    rng = np.random.default_rng(height * 100 + width)
    # Strictly negative values (as after PReLU): a zero-padded or
    # zero-initialised max would give 0 instead.
    x = -rng.uniform(0.5, 3.0, (2, height, width, 5)).astype("float32")
    expected = _reference(x, bins)
    assert expected.shape == (2, 5 * sum(n * n for n in bins))
    got = keras_layers.SpatialPyramidPooling(bins)(x)
    np.testing.assert_array_equal(got.numpy(), expected)
    nchw = np.transpose(x, (0, 3, 1, 2))
    got_nchw = keras_layers.SpatialPyramidPooling(bins, data_format="channels_first")(nchw)
    np.testing.assert_array_equal(got_nchw.numpy(), expected)


@pytest.mark.parametrize("length", [1, 2, 3, 5, 6, 7, 13, 14, 100])
@pytest.mark.parametrize("n", [1, 2, 3, 6, 7])
def test_bin_edges_exactly_n_nonempty_bins_covering_the_axis(length, n):
    edges = bin_edges(length, n)
    assert len(edges) == n
    assert edges[0][0] == 0 and edges[-1][1] == length
    for (start, end), (next_start, _) in zip(edges, edges[1:] + [(length, None)]):
        assert 0 <= start < end <= length
        assert next_start <= end  # no gaps
    # Same edges when the length is a run-time tensor.
    tensor_edges = bin_edges(tf.constant(length), n)
    assert [(int(s), int(e)) for s, e in tensor_edges] == edges


def test_pools_a_13x13_map_like_spp_net():
    # SPP-net: window ceil(a/n), stride floor(a/n), for the 13x13 conv5 map.
    x = np.random.default_rng(0).standard_normal((2, 13, 13, 4)).astype("float32")
    for n in (6, 3, 2, 1):
        window, stride = math.ceil(13 / n), math.floor(13 / n)
        assert bin_edges(13, n) == [(i * stride, i * stride + window) for i in range(n)]
        pooled = keras.layers.MaxPooling2D(window, stride, padding="valid")(x)
        assert pooled.shape[1:3] == (n, n)
        ours = keras_layers.SpatialPyramidPooling((n,))(x)
        np.testing.assert_array_equal(ours.numpy(), np.reshape(pooled, (2, -1)))


def test_dynamic_shapes_in_tf_function_one_graph():
    layer = keras_layers.SpatialPyramidPooling((6, 3, 2, 1))
    fn = tf.function(layer, input_signature=[tf.TensorSpec((None, None, None, 3))])
    rng = np.random.default_rng(1)
    for shape in [(1, 1, 1, 3), (2, 4, 11, 3), (3, 13, 13, 3), (1, 50, 37, 3)]:
        x = rng.standard_normal(shape).astype("float32")
        np.testing.assert_array_equal(fn(x).numpy(), _reference(x, (6, 3, 2, 1)))
    assert len(fn._list_all_concrete_functions()) == 1  # one graph, bins from run-time shape


@pytest.mark.parametrize("length", [1, 2, 5, 6, 13, 14, 19, 100])
@pytest.mark.parametrize("n", [1, 2, 3, 6, 7])
def test_uniform_window_is_exactly_the_bins_or_none(length, n):
    edges = bin_edges(length, n)
    window = uniform_window(length, n)
    sizes = {end - start for start, end in edges}
    strides = {b[0] - a[0] for a, b in zip(edges, edges[1:])} or {length}
    if window is None:
        assert len(sizes) > 1 or len(strides) > 1 or 0 in strides
    else:
        size, stride = window
        assert [(i * stride, i * stride + size) for i in range(n)] == edges
    assert uniform_window(tf.constant(length), n) is None  # run-time size: slices
    # The sizes the models train at use the pooling op.
    assert uniform_window(6, 3) == (2, 2) and uniform_window(19, 6) == (4, 3)
    assert uniform_window(14, 7) == (2, 2) and uniform_window(14, 3) is None


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("shape", [(6, 6), (19, 19), (14, 14), (13, 6)])
def test_pooling_op_path_equals_slices_path_with_gradient(shape, data_format):
    """A static size (pooling ops where the bins are a window) against the
    same layer traced with an unknown size (slices): values and gradients."""
    layer = keras_layers.SpatialPyramidPooling((7, 6, 3, 2, 1), data_format=data_format)
    rng = np.random.default_rng(sum(shape))
    # Distinct values: no tied maxima, where the two gradients may differ.
    x = rng.permutation(2 * 4 * shape[0] * shape[1]).reshape((2, *shape, 4)).astype("float32")
    if data_format == "channels_first":
        x = np.transpose(x, (0, 3, 1, 2))
    x = tf.constant(x)
    upstream = tf.constant(rng.standard_normal((2, 4 * 99)).astype("float32"))

    def value_and_grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        return y, tape.gradient(y, x, output_gradients=upstream)

    spec = tf.TensorSpec(
        (None, 4, None, None) if data_format == "channels_first" else (None, None, None, 4)
    )
    dynamic = tf.function(value_and_grad, input_signature=[spec])
    for got, want in zip(tf.function(value_and_grad)(x), dynamic(x)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)


def _unknown_size_model():
    inputs = keras.Input((None, None, 8))
    outputs = keras_layers.SpatialPyramidPooling((7, 3, 2, 1))(inputs)
    return keras.Model(inputs, outputs)


def test_model_of_unknown_size_has_a_fixed_length_output():
    model = _unknown_size_model()
    assert model.output.shape == (None, 8 * 63)
    assert model.compute_output_shape((None, None, None, 8)) == (None, 504)


def test_gradient_reaches_only_the_bin_maxima():
    model = _unknown_size_model()
    x = tf.constant(np.random.default_rng(2).standard_normal((1, 9, 10, 8)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(model(x))
    grad = tape.gradient(total, x).numpy()
    # The gradient of a max goes to the bins' maxima only: one unit per bin and
    # channel; the global maximum of a channel is the maximum of at least one
    # bin in each of the 4 levels.
    assert grad.sum() == pytest.approx(8 * 63)
    flat_x, flat_grad = x.numpy().reshape(-1, 8), grad.reshape(-1, 8)
    assert (flat_grad[flat_x.argmax(0), np.arange(8)] >= 4).all()
    assert np.count_nonzero(grad) <= 63 * 8


def test_config_round_trip():
    layer = keras_layers.SpatialPyramidPooling((4, 2), data_format="channels_first", name="spp")
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(clone, keras_layers.SpatialPyramidPooling)
    assert clone.bins == (4, 2) and clone.data_format == "channels_first"
    assert clone.get_config() == layer.get_config()


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="bins"):
        keras_layers.SpatialPyramidPooling((3, 0))
    with pytest.raises(ValueError, match="bins"):
        keras_layers.SpatialPyramidPooling(())
    with pytest.raises(ValueError, match="channel dimension"):
        keras_layers.SpatialPyramidPooling().build((None, 5, 5, None))
