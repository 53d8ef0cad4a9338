"""Rectifier initializers (Eq. 10, 14, 15) and signal propagation (Eq. 9, 13)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_layers

KERNEL = (3, 3, 256, 256)
# P(|z| > 2.5) for a standard normal: 2 * (1 - Phi(2.5)).
GAUSS_TAIL_2_5 = math.erfc(2.5 / math.sqrt(2.0))


def _sample(initializer, shape=KERNEL):
    return keras.ops.convert_to_numpy(initializer(shape)).astype("float64")


@pytest.mark.parametrize("distribution", ["normal", "truncated_normal", "uniform"])
@pytest.mark.parametrize("slope", [0.0, 0.25])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_he_std_within_2_percent(mode, slope, distribution):
    w = _sample(keras_layers.HeVarianceScaling(mode, slope, distribution, seed=1))
    n = 3 * 3 * 256  # k*k*c == k*k*d here
    target = math.sqrt(2.0 / ((1.0 + slope**2) * n))  # Eq. 10/14, Eq. 15
    assert abs(w.std() / target - 1.0) < 0.02
    assert abs(w.mean()) < 0.01 * target


@pytest.mark.parametrize("mode,n", [("fan_in", 3 * 3 * 64), ("fan_out", 3 * 3 * 256)])
def test_mode_picks_the_fan_k_k_c_or_k_k_d(mode, n):
    w = _sample(keras_layers.HeVarianceScaling(mode, seed=2), (3, 3, 64, 256))
    assert abs(w.std() / math.sqrt(2.0 / n) - 1.0) < 0.02
    x = _sample(keras_layers.XavierVarianceScaling(mode, seed=2), (3, 3, 64, 256))
    assert abs(x.std() / math.sqrt(1.0 / n) - 1.0) < 0.02


def test_dense_kernel_fans():
    w = _sample(keras_layers.HeVarianceScaling("fan_in", seed=3), (400, 4000))
    assert abs(w.std() / math.sqrt(2.0 / 400) - 1.0) < 0.02
    w = _sample(keras_layers.HeVarianceScaling("fan_out", seed=3), (4000, 400))
    assert abs(w.std() / math.sqrt(2.0 / 400) - 1.0) < 0.02


def _keras_std(shape, mode, **axes):
    """The std Keras' own VarianceScaling draws for the He gain (untruncated)."""
    keras_init = keras.initializers.VarianceScaling(2.0, mode, "untruncated_normal", seed=0, **axes)
    return keras.ops.convert_to_numpy(keras_init(shape)).std()


@pytest.mark.parametrize(
    "shape,axes",
    [
        ((), {}),
        ((900,), {}),
        ((300, 200), {}),
        ((5, 40, 60), {}),  # Conv1D
        ((3, 3, 40, 60), {}),  # Conv2D
        ((2, 3, 3, 20, 30), {}),  # Conv3D
        ((32, 8, 16), {"input_axes": [0], "output_axes": [1, 2]}),  # MHA query
        ((8, 16, 32), {"input_axes": [0, 1], "output_axes": [2]}),  # MHA output
    ],
)
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_fans_follow_keras_variance_scaling_for_every_rank(shape, axes, mode):
    ours = keras_layers.HeVarianceScaling(mode, seed=4, **axes)
    want = math.sqrt(
        2.0 / max(1, keras_layers.initializers.compute_fans(shape, **axes)[mode == "fan_out"])
    )
    assert ours.stddev(shape) == pytest.approx(want)
    from keras.src.initializers.random_initializers import compute_fans as keras_fans

    assert keras_layers.initializers.compute_fans(shape, **axes) == keras_fans(shape, **axes)
    if math.prod(shape) >= 900:  # enough draws to compare the sample stds
        assert _sample(ours, shape).std() == pytest.approx(_keras_std(shape, mode, **axes), rel=0.1)


def test_einsum_dense_kernels_get_their_fans():
    """MultiHeadAttention's EinsumDense kernels, e.g. the query's (32, 8, 16):
    fan-in 32 (the model dim), as Keras' VarianceScaling gives them."""
    layer = keras.layers.MultiHeadAttention(
        num_heads=8, key_dim=16, kernel_initializer=keras_layers.HeVarianceScaling(seed=5)
    )
    x = np.zeros((1, 4, 32), "float32")
    layer(x, x)
    query = keras.ops.convert_to_numpy(layer.query_dense.kernel)
    assert query.shape == (32, 8, 16)
    assert query.std() == pytest.approx(math.sqrt(2.0 / 32), rel=0.1)
    output = keras.ops.convert_to_numpy(layer.output_dense.kernel)  # (8, 16, 32)
    assert output.std() == pytest.approx(math.sqrt(2.0 / 128), rel=0.1)
    # The axes survive serialization (EinsumDense's from_config clone).
    init = keras_layers.HeVarianceScaling(seed=1, input_axes=[0], output_axes=[1, 2])
    again = keras.initializers.deserialize(keras.initializers.serialize(init))
    assert (again.input_axes, again.output_axes, again.seed) == ([0], [1, 2], 1)


def test_default_is_plain_gaussian_with_tails():
    he = keras_layers.HeVarianceScaling(seed=4)
    assert he.distribution == "normal"
    w = _sample(he)
    z = np.abs(w) / w.std()
    # 590k samples: the binomial std of this fraction is ~1.5e-4.
    assert abs((z > 2.5).mean() - GAUSS_TAIL_2_5) < 1e-3
    assert z.max() > 4.0
    # Keras' HeNormal is truncated: no mass beyond 2 std. Ours are not like it.
    truncated = _sample(keras_layers.HeVarianceScaling(distribution="truncated_normal", seed=4))
    zt = np.abs(truncated) / truncated.std()
    assert (zt > 2.5).mean() == 0.0
    keras_he = _sample(keras.initializers.HeNormal(seed=4))
    assert (np.abs(keras_he) / keras_he.std() > 2.5).mean() == 0.0
    uniform = _sample(keras_layers.HeVarianceScaling(distribution="uniform", seed=4))
    assert np.abs(uniform).max() <= math.sqrt(3.0) * math.sqrt(2.0 / 2304) + 1e-6


def test_xavier_is_one_over_n_gaussian():
    w = _sample(keras_layers.XavierVarianceScaling(seed=5))
    assert abs(w.std() / math.sqrt(1.0 / 2304) - 1.0) < 0.02
    assert abs((np.abs(w) / w.std() > 2.5).mean() - GAUSS_TAIL_2_5) < 1e-3


@pytest.mark.parametrize(
    "cls", [keras_layers.HeVarianceScaling, keras_layers.XavierVarianceScaling]
)
def test_unseeded_instances_give_different_kernels(cls):
    a, b = cls(), cls()
    assert not np.allclose(_sample(a, (3, 3, 8, 8)), _sample(b, (3, 3, 8, 8)))


@pytest.mark.parametrize("seed", [None, 7])
@pytest.mark.parametrize(
    "cls", [keras_layers.HeVarianceScaling, keras_layers.XavierVarianceScaling]
)
def test_one_instance_shared_by_two_layers_gives_them_different_kernels(cls, seed):
    # A common Keras idiom.
    init = cls(seed=seed)
    convs = [keras.layers.Conv2D(8, 3, kernel_initializer=init) for _ in range(2)]
    for conv in convs:
        conv.build((None, 5, 5, 8))
    assert not np.allclose(convs[0].kernel.numpy(), convs[1].kernel.numpy())


def test_seeded_instances_are_reproducible():
    first = keras_layers.HeVarianceScaling("fan_out", seed=11)
    second = keras_layers.HeVarianceScaling.from_config(first.get_config())
    for _ in range(3):  # the same sequence of draws
        np.testing.assert_array_equal(_sample(first, (2, 2, 3, 4)), _sample(second, (2, 2, 3, 4)))
    # Call 0 uses the seed itself, i.e. what Keras' own initializer gives.
    keras_own = keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal", seed=11)
    np.testing.assert_allclose(
        _sample(keras_layers.HeVarianceScaling("fan_out", seed=11), (2, 2, 3, 4)),
        _sample(keras_own, (2, 2, 3, 4)),
        rtol=1e-6,
    )


def test_unseeded_follows_keras_set_random_seed():
    keras.utils.set_random_seed(123)
    a = _sample(keras_layers.HeVarianceScaling(), (4, 4))
    keras.utils.set_random_seed(123)
    b = _sample(keras_layers.HeVarianceScaling(), (4, 4))
    np.testing.assert_array_equal(a, b)


def test_serialization_in_a_layer():
    conv = keras.layers.Conv2D(
        4, 3, kernel_initializer=keras_layers.HeVarianceScaling("fan_out", 0.25, "uniform", seed=3)
    )
    clone = keras.layers.Conv2D.from_config(conv.get_config())
    init = clone.kernel_initializer
    assert isinstance(init, keras_layers.HeVarianceScaling)
    assert (init.mode, init.negative_slope, init.distribution, init.seed) == (
        "fan_out",
        0.25,
        "uniform",
        3,
    )
    restored = keras.initializers.deserialize(
        keras.initializers.serialize(keras_layers.XavierVarianceScaling("fan_out"))
    )
    assert isinstance(restored, keras_layers.XavierVarianceScaling)
    assert restored.mode == "fan_out" and restored.seed is None


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_dtypes(dtype):
    w = keras_layers.HeVarianceScaling()((3, 3, 4, 4), dtype=dtype)
    assert keras.backend.standardize_dtype(w.dtype) == dtype


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        keras_layers.HeVarianceScaling("fan_avg")
    with pytest.raises(ValueError, match="distribution"):
        keras_layers.XavierVarianceScaling(distribution="gaussian")
    with pytest.raises(ValueError, match="seed"):
        keras_layers.HeVarianceScaling(seed="0")


# --- Signal propagation through 30 conv + ReLU layers (Sec. 2.2, Fig. 3) ----
# Eq. 9 and 13 are expectations over the random weights. A single finite-width
# ReLU net fluctuates a lot around them (the log of its variance ratio has a
# variance of roughly 5 * depth / width), so the tests average over NETS
# independent networks run side by side as one batched computation.
DEPTH, CHANNELS, NETS, SIZE = 30, 64, 64, 4


def _conv2x2(x, kernels):
    """2x2 convolution with circular padding of x [NETS, H, W, C], one kernel per net.

    Circular padding: every output sees a full window of real inputs, as
    Eq. 7-13 assume (zero padding would lose variance at the borders on every
    layer), and the map keeps its size through 30 layers.
    """
    patches = tf.concat([tf.roll(x, (-a, -b), (1, 2)) for a in range(2) for b in range(2)], -1)
    y = tf.matmul(tf.reshape(patches, (x.shape[0], -1, 4 * CHANNELS)), kernels)
    return tf.reshape(y, x.shape[:-1] + (CHANNELS,))


def _kernels(initializer, mode, nets):
    """[NETS, 4C, C] kernels, one draw of the initializer per layer.

    One call draws the kernels of all nets stacked along the axis that does
    not enter `n` (the output axis for fan-in, the input axis for fan-out), so
    `n` is exactly 2*2*C, the fan of each net's own (2, 2, C, C) kernel.
    """
    c, k = CHANNELS, nets
    if mode == "fan_in":
        w = tf.reshape(initializer((2, 2, c, k * c)), (2, 2, c, k, c))
        w = tf.transpose(w, (3, 0, 1, 2, 4))
    else:
        w = tf.reshape(initializer((2, 2, k * c, c)), (2, 2, k, c, c))
        w = tf.transpose(w, (2, 0, 1, 3, 4))
    return tf.reshape(w, (k, 4 * c, c))


def _signal_ratios(initializer, nets=NETS):
    """(Var[y_30] / Var[y_1], Var[dE/dy_1] / Var[dE/dy_30]): Eq. 9 and Eq. 13.

    y_l are the pre-activations, x_{l+1} = relu(y_l), biases 0; dE/dy_30 is
    random, as a loss gradient would be.
    """
    kernels = [_kernels(initializer, initializer.mode, nets) for _ in range(DEPTH)]
    x = tf.random.stateless_normal((nets, SIZE, SIZE, CHANNELS), seed=(1, 2))
    with tf.GradientTape() as tape:
        y1 = _conv2x2(x, kernels[0])
        tape.watch(y1)
        y = y1
        for w in kernels[1:]:
            y = _conv2x2(tf.nn.relu(y), w)
        upstream = tf.random.stateless_normal(tf.shape(y), seed=(3, 4))
        loss = tf.reduce_sum(y * upstream)
    grad = tape.gradient(loss, y1)
    forward = tf.reduce_mean(tf.square(y)) / tf.reduce_mean(tf.square(y1))
    backward = tf.reduce_mean(tf.square(grad)) / tf.reduce_mean(tf.square(upstream))
    return float(forward), float(backward)


def test_forward_signal_he_fan_in_keeps_variance_xavier_vanishes():
    he, _ = _signal_ratios(keras_layers.HeVarianceScaling("fan_in", seed=10))
    # Orders of magnitude away: a few nets are enough.
    xavier, _ = _signal_ratios(keras_layers.XavierVarianceScaling("fan_in", seed=10), nets=4)
    assert 0.5 <= he <= 2.0, he
    assert xavier < 1e-3, xavier  # ~2^-29: each rectifier halves it


def test_backward_signal_he_fan_out_keeps_variance_xavier_vanishes():
    _, he = _signal_ratios(keras_layers.HeVarianceScaling("fan_out", seed=20))
    _, xavier = _signal_ratios(keras_layers.XavierVarianceScaling("fan_out", seed=20), nets=4)
    assert 0.5 <= he <= 2.0, he
    assert xavier < 1e-3, xavier
