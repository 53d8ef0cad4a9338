"""The paper's networks, built from the tables in `delving.models.specs`.

Every network is `head(trunk(image))`, two nested functional models that
share their weights with the whole:

- `trunk`: image `(None, None, 3)` (or `(3, None, None)` channels-first) ->
  last conv feature map; fully convolutional, any input size.
- `head`: feature map -> `spp` -> `fc1` -> act -> dropout -> `fc2` -> act ->
  dropout -> `fc3` logits (float32 even under a mixed-precision policy).

Dense multi-view testing runs the trunk once per image and scale and the
head on every `head_window(name, image_size)`-sized window of its output.

Layer names follow the paper: `conv1`, `conv2_1`, ..., `pool1`, ..., `spp`,
`fc1`, `fc2`, `fc3` (see `delving.models.specs` for the scheme). The
activation after a weight layer `X` is named `X_relu`, `X_lrelu` or
`X_prelu` (`X_prelu` for both channel-wise and channel-shared PReLU), so
`prelu_coefficients` keys read `conv1_prelu`, ..., `fc2_prelu`: Table 1's
rows with the suffix.

Initialization (`init`), the same scheme for conv and fc kernels (for a
Dense kernel fan-in is its inputs and fan-out its units); biases are zero:

- `"he_fan_in"`: Eq. 10, std `sqrt(2 / n)`, `n = k*k*c`.
- `"he_fan_out"`: Eq. 14, std `sqrt(2 / n^)`, `n^ = k*k*d` (what the paper
  trains its ImageNet models with; the default).
- `"he_prelu"`: Eq. 15 with the fan-in, std `sqrt(2 / ((1 + a^2) n))` with
  `a = 0.25`, the PReLU slope at initialization.
- `"xavier"`: `n Var[w] = 1` with the fan-in (Caffe's "xavier", Sec. 2.3).
"""

import itertools

import keras

import keras_layers
from delving.models import specs
from delving.models.specs import (  # noqa: F401
    ACTIVATIONS,
    INITS,
    MODEL_NAMES,
    PRELU_INIT_SLOPE,
)

# init name (one of INITS) -> initializer factory taking a seed.
_INITIALIZERS = {
    "he_fan_in": lambda seed: keras_layers.HeVarianceScaling(mode="fan_in", seed=seed),
    "he_fan_out": lambda seed: keras_layers.HeVarianceScaling(mode="fan_out", seed=seed),
    "he_prelu": lambda seed: keras_layers.HeVarianceScaling(
        mode="fan_in", negative_slope=PRELU_INIT_SLOPE, seed=seed
    ),
    "xavier": lambda seed: keras_layers.XavierVarianceScaling(mode="fan_in", seed=seed),
}


def initializer(init, seed=None):
    """The kernel initializer called `init` (one of `INITS`, see the module docstring)."""
    _check_choice("init", init, INITS)
    return _INITIALIZERS[init](seed)


def _check_choice(kind, value, choices):
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(choices)}")


def _activation_layer(activation, layer_name, data_format):
    """The activation after weight layer `layer_name`, named after it."""
    if activation == "relu":
        return keras.layers.ReLU(name=f"{layer_name}_relu")
    if activation == "lrelu":
        return keras.layers.LeakyReLU(negative_slope=PRELU_INIT_SLOPE, name=f"{layer_name}_lrelu")
    return keras_layers.PReLU(
        channel_shared=activation == "prelu_shared",
        data_format=data_format,
        name=f"{layer_name}_prelu",
    )


def scaled_filters(filters, width_multiplier):
    """A conv's filter count at `width_multiplier` (rounded, at least 1)."""
    return max(1, int(filters * width_multiplier + 0.5))


def _seeds(seed):
    """Distinct per-layer seeds derived from one model seed (or all None)."""
    if seed is None:
        return itertools.repeat(None)
    return itertools.count(seed * 1000 + 1)


def _image_shape(channels, data_format):
    if data_format == "channels_first":
        return (channels, None, None)
    return (None, None, channels)


def _build_trunk(spec, *, activation, make_init, seeds, data_format, width_multiplier):
    image = keras.Input(_image_shape(3, data_format), name="image")
    x = image
    even_kernels = 0
    for i, stage in enumerate(spec.stages, start=1):
        for j in range(stage.repeats):
            name = f"conv{i}" if stage.repeats == 1 else f"conv{i}_{j + 1}"
            stride = stage.stride if j == 0 else 1
            padding = "same"
            if stage.kernel % 2 == 0 and stride == 1:
                # "same" pads an even kernel on the bottom/right only; every
                # other such conv pads top/left instead (model_specs).
                even_kernels += 1
                if even_kernels % 2 == 0:
                    before = stage.kernel // 2
                    pad = ((before, before - 1),) * 2
                    x = keras.layers.ZeroPadding2D(
                        pad, data_format=data_format, name=f"{name}_pad"
                    )(x)
                    padding = "valid"
            x = keras.layers.Conv2D(
                scaled_filters(stage.filters, width_multiplier),
                stage.kernel,
                strides=stride,
                padding=padding,
                data_format=data_format,
                kernel_initializer=make_init(next(seeds)),
                bias_initializer="zeros",
                name=name,
            )(x)
            x = _activation_layer(activation, name, data_format)(x)
        if stage.pool:
            x = keras.layers.MaxPooling2D(
                stage.pool.size,
                strides=stage.pool.stride,
                padding="same",
                data_format=data_format,
                name=f"pool{i}",
            )(x)
    return keras.Model(image, x, name="trunk")


def _build_head(
    spec, channels, *, num_classes, activation, make_init, seeds, dropout, data_format, fc_units
):
    feature_map = keras.Input(_image_shape(channels, data_format), name="feature_map")
    x = keras_layers.SpatialPyramidPooling(bins=spec.spp_bins, data_format=data_format, name="spp")(
        feature_map
    )
    for name in ("fc1", "fc2"):
        x = keras.layers.Dense(
            fc_units, kernel_initializer=make_init(next(seeds)), bias_initializer="zeros", name=name
        )(x)
        # Rank-2 input: one slope per unit whatever data_format is.
        x = _activation_layer(activation, name, "channels_last")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, seed=next(seeds), name=f"{name}_dropout")(x)
    # float32 logits under mixed precision: a stable loss and a float32
    # serving signature.
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=make_init(next(seeds)),
        bias_initializer="zeros",
        dtype="float32",
        name="fc3",
    )(x)
    return keras.Model(feature_map, logits, name="head")


def build_model(
    name,
    *,
    num_classes=1000,
    activation="prelu",
    init="he_fan_out",
    dropout=0.5,
    data_format=None,
    width_multiplier=1.0,
    fc_units=specs.FC_UNITS,
    seed=None,
):
    """Builds one of the paper's networks as `head(trunk(image))`.

    Args:
      name: one of `MODEL_NAMES`.
      num_classes: units of fc3.
      activation: `"relu"`, `"lrelu"` (fixed slope 0.25), `"prelu"`
        (channel-wise, Eq. 1) or `"prelu_shared"` (one slope per layer).
      init: `"he_fan_in"` (Eq. 10), `"he_fan_out"` (Eq. 14), `"he_prelu"`
        (Eq. 15, fan-in, a = 0.25) or `"xavier"` (variance 1/fan-in).
      dropout: rate after fc1 and fc2 (0 leaves the dropout layers out).
      data_format: `"channels_last"`, `"channels_first"` or None for
        `keras.config.image_data_format()`. TensorFlow's CPU kernels have
        no NCHW convolution: channels-first runs on GPU, or on CPU under XLA
        (`jit_compile=True`).
      width_multiplier: scales every conv's filter count (rounded, at least 1).
      fc_units: width of fc1 and fc2 (the tables' 4096 by default).
      seed: int for reproducible weights and dropout masks, or None.

    Returns:
      A `keras.Model` with nested models `trunk` and `head`.

    Example:
      >>> model = build_model("small_14", num_classes=10, width_multiplier=0.25,
      ...                     fc_units=256)
      >>> model(np.zeros((2, 64, 64, 3))).shape
      TensorShape([2, 10])
    """
    spec = specs.get_spec(name)
    _check_choice("activation", activation, ACTIVATIONS)
    _check_choice("init", init, INITS)
    data_format = data_format or keras.config.image_data_format()
    _check_choice("data_format", data_format, ("channels_last", "channels_first"))
    if width_multiplier <= 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
    if fc_units < 1 or num_classes < 1:
        raise ValueError(f"fc_units and num_classes must be >= 1, got {fc_units} and {num_classes}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    make_init, seeds = _INITIALIZERS[init], _seeds(seed)
    trunk = _build_trunk(
        spec,
        activation=activation,
        make_init=make_init,
        seeds=seeds,
        data_format=data_format,
        width_multiplier=width_multiplier,
    )
    channels = scaled_filters(spec.stages[-1].filters, width_multiplier)
    head = _build_head(
        spec,
        channels,
        num_classes=num_classes,
        activation=activation,
        make_init=make_init,
        seeds=seeds,
        dropout=dropout,
        data_format=data_format,
        fc_units=fc_units,
    )
    image = keras.Input(_image_shape(3, data_format), name="image")
    return keras.Model(image, head(trunk(image)), name=name)


def get_trunk(model):
    """The image -> last-conv-map part of a `build_model` model."""
    return model.get_layer("trunk")


def get_head(model):
    """The conv-map -> logits part of a `build_model` model."""
    return model.get_layer("head")


def total_stride(name):
    """Product of the strides up to the last conv map (16 for A/B/C, VGG-19;
    12 for the small models)."""
    return specs.get_spec(name).total_stride


def feature_map_size(name, image_size):
    """Side of the trunk output for square inputs of side `image_size`:
    `ceil(image_size / total_stride(name))` ("same" padding throughout)."""
    return specs.get_spec(name).feature_map_size(image_size)


def head_window(name, image_size=224):
    """Side of the conv-map window the head sees during training at
    `image_size` crops, the window of dense testing: at 224, 14 for models
    A/B/C and VGG-19 (the paper's 14x14), 19 for the small models
    (ceil(224 / 12)); 6 for the small models at the built-in 64-px crops."""
    return feature_map_size(name, image_size)


def _walk_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk_layers(layer)
        else:
            yield layer


def prelu_layers(model):
    """The `keras_layers.PReLU` layers in network order, searching nested
    models; empty for ReLU/LReLU networks."""
    return [layer for layer in _walk_layers(model) if isinstance(layer, keras_layers.PReLU)]


def prelu_slopes(model):
    """`{prelu_layer_name: [slope, ...]}` in network order, one slope per
    channel (a single one for channel-shared); empty for ReLU/LReLU networks."""
    return {
        layer.name: [float(a) for a in keras.ops.convert_to_numpy(layer.alpha).ravel()]
        for layer in prelu_layers(model)
    }


def prelu_coefficients(model):
    """`{prelu_layer_name: mean slope}` in network order (Table 1's numbers),
    searching nested models; empty for ReLU/LReLU networks."""
    return {layer.name: float(keras.ops.mean(layer.alpha)) for layer in prelu_layers(model)}
