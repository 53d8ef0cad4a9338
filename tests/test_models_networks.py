"""delving.models.networks on width-reduced networks: every model x activation trains,
shapes follow the strides, trunk/head share weights, .keras round trip,
mixed precision and channels-first (the full-size networks:
test_models_networks_full_size.py)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_layers
from delving.models import networks

# Strides up to the last conv map, from the tables: conv1 /2, pool1 /3,
# pool2 /2 for the small models; conv1 /2 and three /2 pools for A/B/C;
# four /2 pools for VGG-19 (its pool5 is the 7x7 SPP, see model_specs).
STRIDES = {"small_14": 12, "small_30": 12, "model_a": 16, "model_b": 16, "model_c": 16, "vgg19": 16}


def tiny(name, **kwargs):
    """A width-reduced network: strides and layer structure as the paper's."""
    kwargs = {"num_classes": 5, "width_multiplier": 1 / 16, "fc_units": 16, "seed": 0, **kwargs}
    return networks.build_model(name, **kwargs)


def images(size=64, batch=2, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, size, size, 3)).astype("float32")


@pytest.fixture
def policy():
    """Sets a global dtype policy for one test and restores the old one."""
    old = keras.config.dtype_policy()
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy(old)


def test_model_names():
    assert networks.MODEL_NAMES == (
        "small_14",
        "small_30",
        "model_a",
        "model_b",
        "model_c",
        "vgg19",
    )


@pytest.mark.parametrize("activation", networks.ACTIVATIONS)
@pytest.mark.parametrize("name", networks.MODEL_NAMES)
def test_forward_backward_finite(name, activation):
    model = tiny(name, activation=activation)
    x, labels = images(), np.array([1, 3])
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    grads = tape.gradient(loss, model.trainable_variables)
    assert logits.shape == (2, 5)
    assert np.isfinite(logits).all()
    for var, grad in zip(model.trainable_variables, grads):
        assert grad is not None, var.path
        assert np.isfinite(grad).all(), var.path
    # The signal reaches the first layer through the whole depth.
    first = model.trainable_variables.index(networks.get_trunk(model).layers[1].kernel)
    assert np.abs(grads[first]).max() > 0


def test_layer_names_follow_the_paper():
    model = tiny("small_14", activation="relu")
    trunk = [layer.name for layer in networks.get_trunk(model).layers]
    # Every other 2x2 conv pads top/left explicitly (`<conv>_pad`).
    assert trunk == [
        "image",
        "conv1",
        "conv1_relu",
        "pool1",
        "conv2_1",
        "conv2_1_relu",
        "conv2_2_pad",
        "conv2_2",
        "conv2_2_relu",
        "conv2_3",
        "conv2_3_relu",
        "conv2_4_pad",
        "conv2_4",
        "conv2_4_relu",
        "pool2",
        *[
            name
            for i in range(1, 7)
            for name in ([f"conv3_{i}_pad"] if i % 2 == 0 else [])
            + [f"conv3_{i}", f"conv3_{i}_relu"]
        ],
    ]
    head = [layer.name for layer in networks.get_head(model).layers]
    assert head == [
        "feature_map",
        "spp",
        "fc1",
        "fc1_relu",
        "fc1_dropout",
        "fc2",
        "fc2_relu",
        "fc2_dropout",
        "fc3",
    ]
    vgg = [layer.name for layer in networks.get_trunk(tiny("vgg19")).layers]
    assert vgg[1:4] == ["conv1_1", "conv1_1_prelu", "conv1_2"]
    assert vgg[-2:] == ["conv5_4", "conv5_4_prelu"]
    lrelu = tiny("model_a", activation="lrelu").get_layer("trunk").get_layer("conv1_lrelu")
    assert lrelu.negative_slope == pytest.approx(0.25)


def test_prelu_coefficients_in_network_order():
    model = tiny("small_14", activation="prelu")
    coefficients = networks.prelu_coefficients(model)
    assert list(coefficients) == (
        ["conv1_prelu"]
        + [f"conv2_{i}_prelu" for i in range(1, 5)]
        + [f"conv3_{i}_prelu" for i in range(1, 7)]
        + ["fc1_prelu", "fc2_prelu"]
    )
    assert all(v == pytest.approx(0.25) for v in coefficients.values())
    conv1 = networks.get_trunk(model).get_layer("conv1_prelu")
    conv1.alpha.assign(np.linspace(0.0, 1.0, conv1.alpha.shape[0]))
    assert networks.prelu_coefficients(model)["conv1_prelu"] == pytest.approx(0.5)
    assert networks.prelu_coefficients(tiny("small_14", activation="relu")) == {}


@pytest.mark.parametrize("name", networks.MODEL_NAMES)
def test_spatial_sizes_follow_the_strides(name):
    stride = STRIDES[name]
    assert networks.total_stride(name) == stride
    # The paper's 14x14 window for A/B/C (and VGG-19's conv5 map at 224);
    # ceil(224 / 12) = 19 for the small models.
    assert networks.head_window(name) == (19 if stride == 12 else 14)
    # Strides do not depend on width, so a width-reduced model really runs.
    model = tiny(name, dropout=0.0)
    trunk = networks.get_trunk(model)
    for size in (224, 256, 384, 480, 640):
        side = math.ceil(size / stride)  # "same" padding: ceil at every step
        assert networks.feature_map_size(name, size) == side
        assert trunk.compute_output_shape((1, size, size, 3))[1:3] == (side, side)
        x = images(size, batch=1)
        feature_map = trunk(x)
        assert feature_map.shape[1:3] == (side, side)
        assert model(x).shape == (1, 5)
        # The whole is exactly head(trunk(image)).
        np.testing.assert_array_equal(networks.get_head(model)(feature_map), model(x))


def test_model_is_its_trunk_then_its_head_sharing_their_weights():
    model = tiny("model_a")
    trunk, head = networks.get_trunk(model), networks.get_head(model)
    assert [layer.name for layer in model.layers] == ["image", "trunk", "head"]
    assert model.count_params() == trunk.count_params() + head.count_params()
    x = images()
    before = model(x)
    kernel = trunk.get_layer("conv4_5").kernel
    kernel.assign(kernel * 2.0)
    after = model(x)
    assert not np.allclose(before, after)
    np.testing.assert_array_equal(after, head(trunk(x)))


@pytest.mark.parametrize("name", networks.MODEL_NAMES)
def test_keras_round_trip_safe_mode(name, tmp_path):
    model = tiny(name, activation="prelu_shared" if name == "vgg19" else "prelu")
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = images()
    np.testing.assert_array_equal(loaded(x), model(x))
    assert isinstance(
        networks.get_trunk(loaded).get_layer("conv1" if "_" in name else "conv1_1").kernel,
        keras.Variable,
    )
    assert list(networks.prelu_coefficients(loaded)) == list(networks.prelu_coefficients(model))


@pytest.mark.parametrize("dtype_policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_gives_float32_logits(dtype_policy, policy):
    policy(dtype_policy)
    model = tiny("small_14")
    compute_dtype = dtype_policy.split("_")[1]
    assert networks.get_trunk(model)(images()).dtype == compute_dtype
    with tf.GradientTape() as tape:
        logits = model(images(), training=True)
        loss = tf.reduce_mean(logits**2)
    assert logits.dtype == "float32"
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert all(np.isfinite(g).all() for g in grads)


def test_channels_first_matches_channels_last():
    last = tiny("model_a", dropout=0.0)
    first = tiny("model_a", dropout=0.0, data_format="channels_first")
    assert first.input_shape == (None, 3, None, None)
    assert networks.get_trunk(first).output_shape == (None, 32, None, None)
    first.set_weights(last.get_weights())
    x = images(96)
    # TensorFlow's CPU kernels have no NCHW convolution; XLA has.
    run_first = tf.function(first, jit_compile=True)
    np.testing.assert_allclose(
        run_first(np.transpose(x, (0, 3, 1, 2))), last(x), rtol=1e-4, atol=1e-4
    )


def _model_c():
    return networks.build_model("model_c", num_classes=7, width_multiplier=0.1, fc_units=24)


def test_width_multiplier_scales_the_conv_filters():
    trunk = networks.get_trunk(_model_c())
    assert trunk.get_layer("conv1").filters == 10  # round(96 * 0.1)
    assert trunk.get_layer("conv4_6").filters == 90  # round(896 * 0.1)
    assert (
        networks.build_model("small_14", width_multiplier=1e-3, fc_units=8)
        .get_layer("trunk")
        .get_layer("conv1")
        .filters
        == 1
    )


def test_fc_units_set_the_width_of_the_hidden_fc_layers():
    head = networks.get_head(_model_c())
    assert head.get_layer("fc1").units == head.get_layer("fc2").units == 24


def test_fc3_has_one_unit_per_class():
    assert networks.get_head(_model_c()).get_layer("fc3").units == 7


def test_seed_makes_weights_reproducible():
    a, b = tiny("small_14", seed=3), tiny("small_14", seed=3)
    c = tiny("small_14", seed=4)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    kernels = [w for w in a.weights if "kernel" in w.path]
    assert not np.array_equal(kernels[0], c.weights[0])
    # Layers of the same shape get different draws.
    trunk = networks.get_trunk(a)
    assert not np.array_equal(trunk.get_layer("conv3_2").kernel, trunk.get_layer("conv3_3").kernel)


def test_uses_the_keras_layers_building_blocks():
    model = tiny("model_b", activation="prelu_shared")
    head = networks.get_head(model)
    assert isinstance(head.get_layer("spp"), keras_layers.SpatialPyramidPooling)
    assert tuple(head.get_layer("spp").bins) == (7, 3, 2, 1)
    assert tuple(tiny("small_30").get_layer("head").get_layer("spp").bins) == (6, 3, 2, 1)
    assert tuple(tiny("vgg19").get_layer("head").get_layer("spp").bins) == (7,)
    conv = networks.get_trunk(model).get_layer("conv1")
    assert isinstance(conv.kernel_initializer, keras_layers.HeVarianceScaling)
    assert conv.kernel_initializer.mode == "fan_out"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "resnet50"}, "unknown model 'resnet50'; choose one of small_14"),
        ({"name": "model_a", "activation": "gelu"}, "unknown activation 'gelu'"),
        ({"name": "model_a", "init": "glorot"}, "unknown init 'glorot'"),
        ({"name": "model_a", "data_format": "nchw"}, "unknown data_format"),
        ({"name": "model_a", "width_multiplier": 0}, "width_multiplier must be"),
        ({"name": "model_a", "dropout": 1.0}, "dropout must be in"),
    ],
)
def test_bad_arguments_raise_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        networks.build_model(**kwargs)
    assert "\n" not in str(info.value)


def test_two_by_two_convs_alternate_their_padding_side():
    # Keras' "same" pads a 2x2 kernel bottom/right; a stack that always did
    # so would drift its receptive field. With the alternation, a pair of
    # 2x2 box filters (all-ones kernels) maps a centred impulse to a
    # symmetric response, and the map keeps its size.
    model = networks.build_model(
        "small_14", num_classes=3, activation="relu", width_multiplier=1 / 64, fc_units=4
    )
    trunk = networks.get_trunk(model)
    assert trunk.get_layer("conv2_2_pad").padding == ((1, 0), (1, 0))
    conv_a, conv_b = (trunk.get_layer(n) for n in ("conv2_1", "conv2_2"))
    pad = trunk.get_layer("conv2_2_pad")
    for conv in (conv_a, conv_b):
        kernel, bias = conv.get_weights()
        conv.set_weights([np.ones_like(kernel) / kernel.shape[2], bias * 0])
    x = np.zeros((1, 7, 7, conv_a.input.shape[-1]), np.float32)
    x[0, 3, 3, :] = 1.0
    y = conv_b(pad(conv_a(x))).numpy()[0, :, :, 0]
    assert y.shape == (7, 7)
    np.testing.assert_allclose(y, y[::-1, ::-1], atol=1e-6)
    assert y[3, 3] == y.max()
