"""Training-step throughput of one of the paper's networks on any Keras backend.

Runs `model.train_on_batch` (SGD with momentum, softmax cross-entropy) on
in-memory tensors placed on the backend's default device, and prints
images/s, ms/step and the achieved FLOP/s against a float32 matmul measured
in the same run. It imports neither TensorFlow nor anything of ours that
does (`delving.models.networks`, `delving.models.specs`, `delving.models.stats` and
`keras_layers` use Keras only), so it runs on an accelerator machine that has
JAX or PyTorch and no TensorFlow:

    KERAS_BACKEND=jax   python benchmarks/model_step.py --model=small_14 --image_size=224
    KERAS_BACKEND=torch python benchmarks/model_step.py --model=model_a --batch_size=32
    KERAS_BACKEND=jax   python benchmarks/model_step.py --width_multiplier=0.25 \
        --fc_units=256 --image_size=64 --batch_size=64     # the built-in default network

FLOPs per image are counted from the built model (`delving.models.stats`:
multiply-adds of the conv and fc layers), times 2 FLOPs per multiply-add
and times 3 for a training step (forward, gradient w.r.t. the inputs,
gradient w.r.t. the weights), the usual convention; elementwise work,
pooling and the optimizer update are not counted.
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from delving.models import (
    networks,  # noqa: E402
    stats,  # noqa: E402
)

_MODEL = flags.DEFINE_enum("model", "small_14", networks.MODEL_NAMES, "Network (Table 1/3).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Input height and width.", lower_bound=16)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per step.", lower_bound=1)
_WIDTH = flags.DEFINE_float("width_multiplier", 1.0, "Scales every conv's filters.")
_FC_UNITS = flags.DEFINE_integer("fc_units", 4096, "Width of fc1 and fc2.", lower_bound=1)
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 1000, "Units of fc3.", lower_bound=2)
_ACTIVATION = flags.DEFINE_enum("activation", "prelu", networks.ACTIVATIONS, "Activation.")
_DATA_FORMAT = flags.DEFINE_enum(
    "data_format", "channels_last", ["channels_last", "channels_first"], "Image layout."
)
_POLICY = flags.DEFINE_enum(
    "dtype_policy", "float32", ["float32", "mixed_float16", "mixed_bfloat16"], "Keras dtype policy."
)
_JIT = flags.DEFINE_enum(
    "jit_compile",
    "auto",
    ["auto", "true", "false"],
    "Keras' jit_compile: 'auto' is Keras' default (XLA on JAX, eager on torch).",
)
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per repeat.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats (median, min-max).", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps (compilation).", lower_bound=1)
_MATMUL = flags.DEFINE_integer(
    "matmul_size", 1024, "Side of the float32 matmul reference (0: skip it).", lower_bound=0
)


def training_flops_per_image(model, image_size):
    """2 FLOPs per multiply-add, x3 for forward + both backward products."""
    _, macs = stats.totals(stats.layer_stats(model, image_size))
    return 6 * macs


def timed(fn, steps, repeats):
    """Seconds per call of `fn` (which must block until done): one value per repeat."""
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        out.append((time.perf_counter() - start) / steps)
    return out


def matmul_flops(size, steps, repeats):
    """FLOP/s of a float32 `size x size` matmul via keras.ops, per repeat."""
    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((size, size)).astype("float32"))
    b = keras.ops.convert_to_tensor(rng.standard_normal((size, size)).astype("float32"))

    def run():
        # Reading back one element waits for the product (async devices).
        keras.ops.convert_to_numpy(keras.ops.matmul(a, b)[0, 0])

    run()
    return [2 * size**3 / t for t in timed(run, steps, repeats)]


def summary(values):
    return statistics.median(values), min(values), max(values)


def main(argv):
    del argv
    keras.config.set_dtype_policy(_POLICY.value)
    # Weights from build_model's seed: keras.utils.set_random_seed would
    # import TensorFlow (to seed it too) wherever it is installed.
    model = networks.build_model(
        _MODEL.value,
        num_classes=_NUM_CLASSES.value,
        activation=_ACTIVATION.value,
        dropout=0.0,
        data_format=_DATA_FORMAT.value,
        width_multiplier=_WIDTH.value,
        fc_units=_FC_UNITS.value,
        seed=0,
    )
    jit = {"auto": "auto", "true": True, "false": False}[_JIT.value]
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    size, batch = _IMAGE_SIZE.value, _BATCH_SIZE.value
    shape = (
        (batch, size, size, 3) if _DATA_FORMAT.value == "channels_last" else (batch, 3, size, size)
    )
    rng = np.random.default_rng(0)
    # Tensors on the default device: the step measures compute, not copies.
    images = keras.ops.convert_to_tensor(rng.standard_normal(shape).astype("float32"))
    labels = keras.ops.convert_to_tensor(rng.integers(0, _NUM_CLASSES.value, batch).astype("int32"))

    def step():
        model.train_on_batch(images, labels)  # returns NumPy: the step has finished

    for _ in range(_WARMUP.value):
        step()
    seconds = timed(step, _STEPS.value, _REPEATS.value)
    flops = training_flops_per_image(model, size) * batch
    med, lo, hi = summary(seconds)
    print(
        f"backend={keras.backend.backend()} model={_MODEL.value} activation={_ACTIVATION.value} "
        f"width={_WIDTH.value:g} fc={_FC_UNITS.value} image={size} batch={batch} "
        f"policy={_POLICY.value} jit_compile={_JIT.value} data_format={_DATA_FORMAT.value}; "
        f"{_STEPS.value} steps x {_REPEATS.value} repeats, median [min, max]"
    )
    print(f"ms/step       {med * 1e3:10.2f}  [{lo * 1e3:.2f}, {hi * 1e3:.2f}]")
    print(f"images/s      {batch / med:10.1f}  [{batch / hi:.1f}, {batch / lo:.1f}]")
    print(f"GFLOP/step    {flops / 1e9:10.2f}  (6 x multiply-adds of conv and fc layers)")
    print(
        f"GFLOP/s       {flops / med / 1e9:10.1f}  [{flops / hi / 1e9:.1f}, {flops / lo / 1e9:.1f}]"
    )
    if _MATMUL.value:
        mm = summary(matmul_flops(_MATMUL.value, _STEPS.value, _REPEATS.value))
        print(
            f"matmul GFLOP/s{mm[0] / 1e9:10.1f}  [{mm[1] / 1e9:.1f}, {mm[2] / 1e9:.1f}] "
            f"(float32 {_MATMUL.value}^2); the step reaches {flops / med / mm[0]:.0%} of it"
        )


if __name__ == "__main__":
    app.run(main)
