"""The paper's network tables as data (He et al. 2015, Table 1 and Table 3).

Each network is a `ModelSpec`: a tuple of conv `Stage`s (one row of the
paper's tables each: `repeats` convolutions of the same shape, optionally
followed by a max pool) plus the spatial pyramid pooling levels; fc1 and
fc2 are `FC_UNITS` wide in every table. `delving.models.networks.build_model` loops
over these specs; nothing about a particular network is written elsewhere.

Naming (followed by the builder): stage `i` (1-based) holds convolutions
`conv{i}` when it has one layer and `conv{i}_1 ... conv{i}_{n}` otherwise,
and its pool is `pool{i}`; this reproduces the paper's names (`conv1`,
`conv2_1`, ..., `conv3_6`) and VGG's (`conv1_1`, ..., `conv5_4`).

Choices the paper leaves open, fixed here once for every network:

- Convolutions and pools use "same" padding, so every layer maps a side of
  length `a` to `ceil(a / stride)`. The trunk output side is therefore
  `ceil(image_side / total_stride)` at any input size (ceil(ceil(a/s)/t) ==
  ceil(a/(s*t))), never zero, and a 64x64 image works for every network.
  At 224 this gives the paper's 14x14 for models A/B/C and VGG-19, and 19x19
  for the small models (pool1 is 3x3 /3: 112 -> 38 -> pool2 -> 19).
- An even kernel (the small models' 2x2 convs) cannot be padded "same"
  symmetrically: Keras puts the one pixel of padding on the bottom/right,
  which shifts the receptive field half a pixel per layer, and after the 22
  of `small_30`'s conv3 it has left a 6x6 map (64 px input) altogether, so
  the deep layers see mostly zeros. The builder therefore alternates: odd-
  numbered stride-1 even-kernel convs pad bottom/right, even-numbered ones
  top/left (a `ZeroPadding2D` named `<conv>_pad`); the shifts cancel pair by
  pair, and the sizes are those of "same".
- VGG-19's pool5 (2x2 /2 on the 14x14 conv5_4 map at 224) followed by the
  7x7x512 flatten is exactly a one-level SPP with a 7x7 grid: at 224 each of
  the 7x7 bins is one 2x2 /2 pooling window. So vgg19 has no separate pool5:
  its SPP layer with `spp_bins=(7,)` plays that role, which keeps its trunk
  ending at the last conv map (total stride 16, 14x14 at 224 like models
  A/B/C) and lets the head accept any input size with fc1 unchanged
  (25088 inputs, as in VGG-19).
"""

import dataclasses
import math

# Every table ends with fc 4096, 4096, num_classes.
FC_UNITS = 4096


@dataclasses.dataclass(frozen=True)
class Pool:
    """A max pool after a stage: `size x size` window, stride `stride`."""

    size: int
    stride: int


@dataclasses.dataclass(frozen=True)
class Stage:
    """`repeats` convolutions `kernel x kernel, filters` (the first with
    stride `stride`, the others stride 1), then an optional max pool."""

    filters: int
    kernel: int
    repeats: int = 1
    stride: int = 1
    pool: Pool | None = None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One network: conv stages and SPP levels (then fc1, fc2, fc3)."""

    stages: tuple[Stage, ...]
    spp_bins: tuple[int, ...]
    paper_depth: int  # weight layers, as the paper states it
    source: str  # where in the paper the table is

    @property
    def num_conv_layers(self) -> int:
        return sum(stage.repeats for stage in self.stages)

    @property
    def depth(self) -> int:
        """Weight layers: every conv plus fc1, fc2, fc3."""
        return self.num_conv_layers + 3

    @property
    def strides(self) -> tuple[int, ...]:
        """Stride of every spatial layer of the trunk, in order."""
        out = []
        for stage in self.stages:
            out += [stage.stride] + [1] * (stage.repeats - 1)
            if stage.pool:
                out.append(stage.pool.stride)
        return tuple(out)

    @property
    def total_stride(self) -> int:
        return math.prod(self.strides)

    def feature_map_size(self, image_size: int) -> int:
        """Side of the trunk's output for an input side of `image_size`."""
        size = image_size
        for stride in self.strides:  # "same" padding: ceil(a / stride)
            size = -(-size // stride)
        return size


def _pool2() -> Pool:
    return Pool(size=2, stride=2)


MODEL_SPECS: dict[str, ModelSpec] = {
    # Table 1: conv1 7x7,64,/2; pool1 3x3,/3; conv2_x 2x2,128 x4; pool2 2x2,/2;
    # conv3_x 2x2,256 x6; spp {6,3,2,1}; fc 4096, 4096, 1000. 11 conv + 3 fc.
    "small_14": ModelSpec(
        stages=(
            Stage(filters=64, kernel=7, stride=2, pool=Pool(size=3, stride=3)),
            Stage(filters=128, kernel=2, repeats=4, pool=_pool2()),
            Stage(filters=256, kernel=2, repeats=6),
        ),
        spp_bins=(6, 3, 2, 1),
        paper_depth=14,
        source="Table 1",
    ),
    # Sec. 2.3 / Fig. 3: Table 1 with sixteen more 2x2,256 convs in conv3
    # (6 + 16 = 22). 27 conv + 3 fc.
    "small_30": ModelSpec(
        stages=(
            Stage(filters=64, kernel=7, stride=2, pool=Pool(size=3, stride=3)),
            Stage(filters=128, kernel=2, repeats=4, pool=_pool2()),
            Stage(filters=256, kernel=2, repeats=22),
        ),
        spp_bins=(6, 3, 2, 1),
        paper_depth=30,
        source="Sec. 2.3, Fig. 3",
    ),
    # Table 3, model A: 7x7,96,/2; pool; 3x3,256 x5; pool; 3x3,512 x5; pool;
    # 3x3,512 x5; spp {7,3,2,1}. 16 conv + 3 fc.
    "model_a": ModelSpec(
        stages=(
            Stage(filters=96, kernel=7, stride=2, pool=_pool2()),
            Stage(filters=256, kernel=3, repeats=5, pool=_pool2()),
            Stage(filters=512, kernel=3, repeats=5, pool=_pool2()),
            Stage(filters=512, kernel=3, repeats=5),
        ),
        spp_bins=(7, 3, 2, 1),
        paper_depth=19,
        source="Table 3",
    ),
    # Table 3, model B: model A with one more conv per 3x3 stage. 19 conv + 3 fc.
    "model_b": ModelSpec(
        stages=(
            Stage(filters=96, kernel=7, stride=2, pool=_pool2()),
            Stage(filters=256, kernel=3, repeats=6, pool=_pool2()),
            Stage(filters=512, kernel=3, repeats=6, pool=_pool2()),
            Stage(filters=512, kernel=3, repeats=6),
        ),
        spp_bins=(7, 3, 2, 1),
        paper_depth=22,
        source="Table 3",
    ),
    # Table 3, model C: model B made wider (384/768/896). 19 conv + 3 fc.
    "model_c": ModelSpec(
        stages=(
            Stage(filters=96, kernel=7, stride=2, pool=_pool2()),
            Stage(filters=384, kernel=3, repeats=6, pool=_pool2()),
            Stage(filters=768, kernel=3, repeats=6, pool=_pool2()),
            Stage(filters=896, kernel=3, repeats=6),
        ),
        spp_bins=(7, 3, 2, 1),
        paper_depth=22,
        source="Table 3",
    ),
    # Table 3, VGG-19: 3x3 convs 64 x2, 128 x2, 256 x4, 512 x4, 512 x4, a 2x2
    # /2 pool after each; pool5 + flatten is the one-level 7x7 SPP (see the
    # module docstring). 16 conv + 3 fc.
    "vgg19": ModelSpec(
        stages=(
            Stage(filters=64, kernel=3, repeats=2, pool=_pool2()),
            Stage(filters=128, kernel=3, repeats=2, pool=_pool2()),
            Stage(filters=256, kernel=3, repeats=4, pool=_pool2()),
            Stage(filters=512, kernel=3, repeats=4, pool=_pool2()),
            Stage(filters=512, kernel=3, repeats=4),
        ),
        spp_bins=(7,),
        paper_depth=19,
        source="Table 3 (reference column)",
    ),
}

MODEL_NAMES: tuple[str, ...] = tuple(MODEL_SPECS)

# The rectifiers Table 2 compares (LReLU with the fixed slope 0.25), and the
# initializations of Sec. 2.2-2.3; `delving.models.networks` documents each.
ACTIVATIONS: tuple[str, ...] = ("relu", "lrelu", "prelu", "prelu_shared")
#: The paper's initial PReLU slope a_i (Sec. 2.1), also LReLU's fixed slope in Table 2.
PRELU_INIT_SLOPE = 0.25
INITS: tuple[str, ...] = ("he_fan_in", "he_fan_out", "he_prelu", "xavier")


def get_spec(name: str) -> ModelSpec:
    """The spec of network `name`, or a one-line ValueError naming the choices."""
    try:
        return MODEL_SPECS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}"
        ) from None
