"""Training-step cost of PReLU vs ReLU on the same small conv net.

The paper (Sec. 2.1) calls PReLU's extra cost negligible: one slope per
channel, a few elementwise ops. This measures it: the same net with ReLU, with
`keras_layers.PReLU` and with `keras.layers.PReLU(shared_axes=[1, 2])`
(Keras' layer set up as channel-wise slopes), trained side by side in one run,
and, as a yardstick, ReLU followed by a learned per-channel scale `x * a`: the
least that any activation with a learned per-channel parameter adds to ReLU
where nothing fuses it into the convolution (one pass forward; the input's
gradient and the parameter's sum backward). Where that row already costs more
than a few percent, so does any PReLU written in `keras.ops`.
Repeats are interleaved (ReLU, ours, Keras, ReLU, ...) so that load changes on
the machine hit every variant alike; the table reports medians with min-max
and the ratio to ReLU within each repeat (median [min-max]), and warnings
where the spreads of two variants overlap or a ratio's spread includes 1.00
(`benchmarks/compare.py`).

    python benchmarks/prelu_overhead.py                      # small, < 1 min on CPU
    python benchmarks/prelu_overhead.py --batch_size=128 --image_size=224 --width=64
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from keras import ops  # noqa: E402

import keras_layers  # noqa: E402

_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Images per training step.", lower_bound=1)
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Input height and width.", lower_bound=16)
_WIDTH = flags.DEFINE_integer(
    "width", 32, "Filters of the first conv; later stages 2x, 4x.", lower_bound=1
)
_STEPS = flags.DEFINE_integer("steps", 5, "Timed training steps per repeat.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 10, "Interleaved repeats per variant.", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps per variant (tracing).", lower_bound=1)
_JIT = flags.DEFINE_bool("jit_compile", False, "Compile the training step with XLA.")
_POLICY = flags.DEFINE_enum(
    "dtype_policy", "float32", ["float32", "mixed_float16", "mixed_bfloat16"], "Keras dtype policy."
)


class ChannelScale(keras.layers.Layer):
    """ReLU, then a learned per-channel scale: the yardstick row, not a layer
    to train with (a scale after ReLU adds nothing a following conv could not
    learn)."""

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs):
        return ops.relu(inputs) * ops.cast(self.scale, inputs.dtype)


YARDSTICK = "ReLU, then x * a (learned a)"

# Each maker takes `spatial`: False after the fc layer, where Keras' PReLU has
# no spatial axes to share (one slope per unit there, like ours).
VARIANTS = {
    "ReLU": lambda spatial: keras.layers.ReLU(),
    YARDSTICK: lambda spatial: ChannelScale(),
    "keras_layers.PReLU": lambda spatial: keras_layers.PReLU(),
    "keras.layers.PReLU(shared_axes=[1,2])": lambda spatial: keras.layers.PReLU(
        alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2] if spatial else None
    ),
}


def build_net(activation, image_size, width, num_classes=100):
    """A scaled-down Table 1 net: conv/2, pool/3, 2x2 conv stages, SPP, fc."""
    init = keras_layers.HeVarianceScaling("fan_out")
    inputs = keras.Input((image_size, image_size, 3))
    y = keras.layers.Conv2D(width, 7, strides=2, padding="same", kernel_initializer=init)(inputs)
    y = activation(True)(y)
    y = keras.layers.MaxPooling2D(3, 3)(y)
    for filters, count in ((2 * width, 2), (4 * width, 3)):
        for _ in range(count):
            y = keras.layers.Conv2D(filters, 2, padding="same", kernel_initializer=init)(y)
            y = activation(True)(y)
        y = keras.layers.MaxPooling2D(2, 2)(y) if filters == 2 * width else y
    y = keras_layers.SpatialPyramidPooling((4, 2, 1))(y)
    y = keras.layers.Dense(8 * width, kernel_initializer=init)(y)
    y = activation(False)(y)
    outputs = keras.layers.Dense(num_classes, dtype="float32")(y)
    return keras.Model(inputs, outputs)


def main(argv):
    del argv
    keras.config.set_dtype_policy(_POLICY.value)
    rng = np.random.default_rng(0)
    images = rng.standard_normal(
        (_BATCH_SIZE.value, _IMAGE_SIZE.value, _IMAGE_SIZE.value, 3)
    ).astype("float32")
    labels = rng.integers(0, 100, _BATCH_SIZE.value)

    models = {}
    for name, activation in VARIANTS.items():
        keras.utils.set_random_seed(0)  # same weights in every variant
        model = build_net(activation, _IMAGE_SIZE.value, _WIDTH.value)
        model.compile(
            keras.optimizers.SGD(0.01, momentum=0.9),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=_JIT.value,
        )
        for _ in range(_WARMUP.value):
            model.train_on_batch(images, labels)
        models[name] = model

    def timed(model):
        def run():
            start = time.perf_counter()
            for _ in range(_STEPS.value):
                # Returns NumPy values, so each step has finished when timed.
                model.train_on_batch(images, labels)
            return (time.perf_counter() - start) / _STEPS.value

        return run

    times = compare.interleaved({n: timed(m) for n, m in models.items()}, _REPEATS.value)
    print(
        f"\nbackend={keras.backend.backend()} policy={_POLICY.value} jit={_JIT.value} "
        f"batch={_BATCH_SIZE.value} image={_IMAGE_SIZE.value} width={_WIDTH.value} "
        f"steps={_STEPS.value}x{_REPEATS.value} interleaved repeats; median [min-max]; "
        "vs ReLU: the ratio within each repeat"
    )
    header = f"{'activation':<40}{'params':>10}{'ms/step':>10}{'min':>9}{'max':>9}  vs ReLU"
    print(header)
    print("-" * (len(header) + 20))
    for name, model in models.items():
        median, low, high = (x * 1e3 for x in compare.spread(times[name]))
        ratio = compare.format_ratio(compare.paired_ratio(times, name, "ReLU"))
        print(
            f"{name:<40}{model.count_params():>10,}{median:>10.2f}{low:>9.2f}{high:>9.2f}  {ratio}"
        )
    ours, theirs = "keras_layers.PReLU", "keras.layers.PReLU(shared_axes=[1,2])"
    pairs = [(ours, theirs), (ours, YARDSTICK)]
    for a, b in pairs:
        print(f"{a} / {b}: {compare.format_ratio(compare.paired_ratio(times, a, b))}")
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    ratios = [(name, "ReLU") for name in times if name != "ReLU"] + pairs
    print("\n".join(compare.warnings(times, ratios)))


if __name__ == "__main__":
    app.run(main)
