"""Per-layer output shapes, parameters and multiply-adds of a built model.

Everything is read from the model itself (layer configs, weights and the
symbolic output shapes at a given image size), never typed in, so the figures
follow any change to `delving.models.specs`.

Multiply-adds are counted per image for the weight layers, the usual
convention: a Conv2D output element costs `k_h * k_w * c_in / groups`, a
Dense output `units_in`. Biases, activations (PReLU's one multiply per
negative input), pooling and SPP (comparisons) count as zero.
"""

import dataclasses
import math

import keras

from delving.models import networks, specs


@dataclasses.dataclass(frozen=True)
class LayerStats:
    name: str
    kind: str  # layer class name
    part: str  # enclosing nested model ("trunk", "head") or the model's name
    output_shape: tuple[int, ...]  # one image, no batch axis
    params: int
    macs: int


def _macs(layer, input_shape, output_shape):
    if isinstance(layer, keras.layers.Conv2D):
        channel_axis = -1 if layer.data_format == "channels_last" else 1
        per_output = math.prod(layer.kernel_size) * input_shape[channel_axis] // layer.groups
        return math.prod(output_shape[1:]) * per_output
    if isinstance(layer, keras.layers.Dense):
        return math.prod(output_shape[1:]) * input_shape[-1]
    return 0


def _chain_stats(model, input_shape, part):
    """Stats of `model`'s layers for one concrete `input_shape` (with batch
    axis), recursing into nested models; returns (stats, output_shape).

    `build_model`'s models and their trunk and head are chains (every layer
    feeds the next, in `model.layers` order), so shapes are pushed through
    the layers one after the other.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"{model.name}: expected a single-input, single-output chain of layers")
    rows, shape = [], tuple(input_shape)
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            nested, shape = _chain_stats(layer, shape, layer.name)
            rows += nested
            continue
        out_shape = tuple(
            layer.compute_output_spec(keras.KerasTensor(shape, dtype=model.inputs[0].dtype)).shape
        )
        rows.append(
            LayerStats(
                name=layer.name,
                kind=type(layer).__name__,
                part=part,
                output_shape=out_shape[1:],
                params=layer.count_params(),
                macs=_macs(layer, shape, out_shape),
            )
        )
        shape = out_shape
    return rows, shape


def layer_stats(model, image_size=224):
    """One `LayerStats` per leaf layer of `model` for a square RGB image of
    side `image_size`, in network order (nested trunk/head models expanded).

    Example:
      >>> stats = layer_stats(build_model("model_a"), 224)
      >>> sum(s.macs for s in stats)  # multiply-adds per 224x224 image
    """
    # The unknown spatial axes of (None, None, 3) or (3, None, None).
    shape = (1,) + tuple(image_size if d is None else d for d in model.inputs[0].shape[1:])
    return _chain_stats(model, shape, model.name)[0]


def activation_elements(
    name,
    image_size=224,
    *,
    width_multiplier=1.0,
    fc_units=specs.FC_UNITS,
    num_classes=1000,
    dropout=0.5,
):
    """Output elements of every leaf layer of `networks.build_model(name, ...)`
    for one square image, what `layer_stats`' output shapes add up to, from
    the spec alone: a memory check can then refuse a batch before building
    (and initialising) a network of up to 178 M parameters."""
    spec = specs.get_spec(name)
    size, total, even_kernels, channels = image_size, 0, 0, 3
    for stage in spec.stages:
        filters = networks.scaled_filters(stage.filters, width_multiplier)
        for j in range(stage.repeats):
            stride = stage.stride if j == 0 else 1
            if stage.kernel % 2 == 0 and stride == 1:
                even_kernels += 1
                if even_kernels % 2 == 0:  # an explicit padding layer before the conv
                    total += (size + stage.kernel - 1) ** 2 * channels
            size, channels = -(-size // stride), filters  # "same": ceil(size / stride)
            total += 2 * size * size * channels  # the conv and its activation
        if stage.pool:
            size = -(-size // stage.pool.stride)
            total += size * size * channels
    total += channels * sum(b * b for b in spec.spp_bins)
    total += 2 * (2 + (dropout > 0)) * fc_units  # fc1, fc2: dense, activation, dropout
    return total + num_classes


def totals(stats):
    """(total parameters, total multiply-adds) over `stats`."""
    return sum(s.params for s in stats), sum(s.macs for s in stats)


def format_table(stats):
    """The stats as an aligned text table with a totals line."""
    header = ("layer", "type", "output shape", "params", "multiply-adds")
    rows = [
        (s.name, s.kind, "x".join(map(str, s.output_shape)), f"{s.params:,}", f"{s.macs:,}")
        for s in stats
    ]
    params, macs = totals(stats)
    footer = ("total", "", "", f"{params:,}", f"{macs:,}")
    widths = [max(len(r[i]) for r in [header, *rows, footer]) for i in range(len(header))]

    def line(row):
        left = [c.ljust(w) for c, w in zip(row[:3], widths)]
        right = [c.rjust(w) for c, w in zip(row[3:], widths[3:])]
        return "  ".join(left + right).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *map(line, rows), rule, line(footer)])
