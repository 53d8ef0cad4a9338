"""Full-size checks of delving.models.networks against the paper's tables: depth,
parameter counts computed here layer by layer, PReLU parameter counts and
the initialization std of every kernel. Models are built, never run on
large inputs."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from delving.models import networks

# The tables of docs/PAPER.md, "Architectures", written out again here (independently of
# delving.models.specs): per model the conv stages as (kernel, filters,
# repeats) and the SPP levels; every model ends with fc 4096, 4096, 1000.
TABLES = {
    # Table 1: 7x7,64 /2; 2x2,128 x4; 2x2,256 x6; spp {6,3,2,1}.
    "small_14": ([(7, 64, 1), (2, 128, 4), (2, 256, 6)], (6, 3, 2, 1)),
    # Fig. 3: Table 1 with sixteen more 2x2,256 convs (6 + 16 = 22).
    "small_30": ([(7, 64, 1), (2, 128, 4), (2, 256, 22)], (6, 3, 2, 1)),
    # Table 3.
    "model_a": ([(7, 96, 1), (3, 256, 5), (3, 512, 5), (3, 512, 5)], (7, 3, 2, 1)),
    "model_b": ([(7, 96, 1), (3, 256, 6), (3, 512, 6), (3, 512, 6)], (7, 3, 2, 1)),
    "model_c": ([(7, 96, 1), (3, 384, 6), (3, 768, 6), (3, 896, 6)], (7, 3, 2, 1)),
    # VGG-19: pool5 then fc at 7x7, i.e. one 7x7 SPP level.
    "vgg19": ([(3, 64, 2), (3, 128, 2), (3, 256, 4), (3, 512, 4), (3, 512, 4)], (7,)),
}
PAPER_DEPTH = {
    "small_14": 14,
    "small_30": 30,
    "model_a": 19,
    "model_b": 22,
    "model_c": 22,
    "vgg19": 19,
}
FC = (4096, 4096, 1000)


def expected_params(name):
    """(weights + biases, channel-wise PReLU slopes) implied by the table."""
    stages, bins = TABLES[name]
    weights, slopes, c_in = 0, 0, 3  # RGB input
    for kernel, filters, repeats in stages:
        for _ in range(repeats):
            # k*k*c_in*d kernel + d biases; one PReLU slope per channel.
            weights += kernel * kernel * c_in * filters + filters
            slopes += filters
            c_in = filters
    # SPP: c_in channels x sum(n*n) bins is fc1's input length (pooling has
    # no parameters). Then fc1, fc2, fc3: inputs x units + units biases;
    # PReLU after fc1 and fc2 only (fc3 gives the logits).
    n_in = c_in * sum(n * n for n in bins)
    for units in FC:
        weights += n_in * units + units
        n_in = units
    slopes += FC[0] + FC[1]
    return weights, slopes


def test_expected_params_reproduce_known_figures():
    # VGG-19's well-known parameter count (Simonyan & Zisserman's model).
    assert expected_params("vgg19")[0] == 143_667_240


def _walk(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk(layer)
        else:
            yield layer


# Expected std of a kernel with fan-in n and fan-out n^ (Keras kernels are
# (k, k, c, d) or (c, d), so n = k*k*c and n^ = k*k*d).
STD = {
    "he_fan_in": lambda n, n_hat: math.sqrt(2 / n),  # Eq. 10
    "he_fan_out": lambda n, n_hat: math.sqrt(2 / n_hat),  # Eq. 14
    "he_prelu": lambda n, n_hat: math.sqrt(2 / ((1 + 0.25**2) * n)),  # Eq. 15
    "xavier": lambda n, n_hat: math.sqrt(1 / n),  # n Var[w] = 1
}


def check_kernel_stds(model, init, kinds=(keras.layers.Conv2D, keras.layers.Dense)):
    """Every kernel of the `kinds` layers has the std of its `init` formula
    (within 3%), zero mean and zero biases; returns how many were checked."""
    checked = 0
    for layer in _walk(model):
        if not isinstance(layer, kinds):
            continue
        *receptive, c_in, d_out = layer.kernel.shape
        k2 = math.prod(receptive)
        expected = STD[init](k2 * c_in, k2 * d_out)
        size = math.prod(layer.kernel.shape)
        # The sample std of N Gaussian draws has relative error ~1/sqrt(2N):
        # 3% is at least 3 sigma for N >= 5000, true of every kernel except
        # VGG's conv1_1 (3x3x3x64), held to 4 sigma instead.
        tolerance = max(0.03, 4 / math.sqrt(2 * size))
        std = float(tf.math.reduce_std(layer.kernel))
        mean = float(tf.reduce_mean(layer.kernel))
        assert std == pytest.approx(expected, rel=tolerance), layer.name
        assert abs(mean) < 5 * expected / math.sqrt(size), layer.name
        assert not np.any(layer.bias), layer.name
        checked += 1
    return checked


@pytest.mark.slow
@pytest.mark.parametrize("name", networks.MODEL_NAMES)
def test_full_size_model(name):
    """Depth, parameter count and Eq. 14 initialization of the conv kernels
    of the paper's model (built once per model: its fc layers alone hold up
    to 231M weights; fc inits are checked below on narrow fc layers).
    small_14 is built channel-shared: Table 1's 13 extra parameters."""
    activation = "prelu_shared" if name == "small_14" else "prelu"
    model = networks.build_model(name, activation=activation, seed=0)
    assert model.output_shape == (None, 1000)
    weight_layers = [
        layer
        for layer in _walk(model)
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
    ]
    assert len(weight_layers) == PAPER_DEPTH[name]
    assert [layer.name for layer in weight_layers[-3:]] == ["fc1", "fc2", "fc3"]

    weights, channel_slopes = expected_params(name)
    slopes = {
        layer.name: layer.count_params() for layer in _walk(model) if layer.name.endswith("_prelu")
    }
    assert len(slopes) == PAPER_DEPTH[name] - 1  # after all but fc3
    if activation == "prelu_shared":
        assert sum(slopes.values()) == 13
    else:
        assert sum(slopes.values()) == channel_slopes
    assert model.count_params() == weights + sum(slopes.values())

    assert (
        check_kernel_stds(model, "he_fan_out", kinds=keras.layers.Conv2D) == PAPER_DEPTH[name] - 3
    )


@pytest.mark.parametrize("init", networks.INITS)
def test_every_init_matches_its_formula(init):
    # Full-width convs; narrow fc1/fc2 keep the build fast (the fc kernels
    # are still checked, with their own fans).
    model = networks.build_model("small_14", init=init, fc_units=256, seed=1)
    assert check_kernel_stds(model, init) == 14
