"""Training throughput, side by side in one run:

  (a) what `python -m delving.train` runs: `delving.training.loop.train` on
      the config the binary resolves (the built-in preset: the built-in set
      decoded in memory, its input, loss, weight decay, metrics, logging,
      checkpoints and per-epoch evaluation), one epoch per repeat, its
      images/s read from the run's own training_log.csv;
  (b) the same model and batch in Keras `train_on_batch` on in-memory
      tensors (the compute floor of (a));
  (c) the same network in PyTorch eager on the CPU (benchmarks/torch_net.py,
      built from the same `delving.models.specs` tables);

plus a float32 matmul, against which the achieved FLOP/s of each is given
(6 FLOPs per multiply-add of the conv and fc layers, `delving.models.stats`).
Repeats are interleaved (a, b, c, matmul, a, b, ...: (a) waits between its
epochs in the loop's `on_epoch_end`) so that load changes on
the machine hit every variant alike; the table gives medians with min-max
and each variant's speed relative to (b) within each repeat, and warnings
where two spreads overlap or a ratio's spread includes 1.00
(`benchmarks/compare.py`).

    python benchmarks/train_throughput.py                      # default network
    python benchmarks/train_throughput.py --width_multiplier=1 --fc_units=4096 \
        --image_size=224 --batch_size=8                        # full-width small_14
    python benchmarks/train_throughput.py --compare_xla        # + (a), (b) with XLA
    python benchmarks/train_throughput.py --compare_relu       # + (b) with ReLU
    python benchmarks/train_throughput.py --model=model_a --width_multiplier=1 \
        --fc_units=4096 --image_size=224 --batch_size=4
"""

import dataclasses
import os
import queue
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import quiet_start  # noqa: E402

quiet_start.install()  # the binary's start-up state, before TensorFlow loads

import compare  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import torch_net  # noqa: E402
from absl import app, flags  # noqa: E402

from delving.models import from_config, networks, stats  # noqa: E402
from delving.training import config as config_lib  # noqa: E402
from delving.training import loop, presets, run_dir  # noqa: E402

_B = presets.PRESETS["builtin"]
_MODEL = flags.DEFINE_enum("model", _B["model"], networks.MODEL_NAMES, "Network.")
_ACTIVATION = flags.DEFINE_enum("activation", "prelu", networks.ACTIVATIONS, "Activation.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", _B["image_size"], "Crop side.", lower_bound=16)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", _B["batch_size"], "Batch.", lower_bound=1)
_WIDTH = flags.DEFINE_float("width_multiplier", _B["width_multiplier"], "Conv width scale.")
_FC_UNITS = flags.DEFINE_integer("fc_units", _B["fc_units"], "fc1/fc2 width.", lower_bound=1)
_JIT = flags.DEFINE_bool("jit_compile", False, "XLA for (a) and (b).")
_COMPARE_XLA = flags.DEFINE_bool(
    "compare_xla",
    False,
    "Also time (a) and (b) with XLA, interleaved with the rest (what the "
    "per-device default of delving.train's --jit_compile is decided from).",
)
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps of (b), (c) per repeat.", lower_bound=1)
_TRAINER_STEPS = flags.DEFINE_integer(
    "trainer_steps",
    None,
    "Steps of an epoch of (a), one epoch per repeat; default: the run's own (the split).",
    lower_bound=1,
)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Interleaved repeats.", lower_bound=1)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFRecords in the ImageNet schema for (a); default: the built-in set."
)
_COMPARE_RELU = flags.DEFINE_bool(
    "compare_relu",
    False,
    "Also time (b) with ReLU in place of --activation, interleaved (PReLU's cost).",
)
_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Where (a) trains, kept; must not exist yet. Default: a temporary directory."
)
_MATMUL = flags.DEFINE_integer("matmul_size", 1024, "Side of the float32 matmul.", lower_bound=64)


_TRAINER = "(a) delving.training.loop.train"
_FLOOR = "(b) Keras train_on_batch, in memory"
_RELU = "(b) the same, ReLU"
_MATMUL_NAME = "float32 matmul"


def _timed(fn, steps):
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


class TrainerVariant:
    """(a): `delving.train`'s own code path, `delving.training.loop.train` on
    the resolved config, run in a thread that trains one epoch per call and
    waits between calls in the loop's `on_epoch_end` (as the binary waits in
    its evaluation, whose time is not counted either). Each call returns the
    seconds per step of that epoch from the run's own training_log.csv
    (`images_per_sec`). The first epoch (tracing, the split decoded into
    memory) is run on construction and not timed; `cfg.epochs` must be
    1 + the number of calls."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._go = threading.Semaphore(0)
        self._done = queue.Queue()
        self._thread = threading.Thread(target=self._train, name="trainer", daemon=True)
        self._thread.start()
        self._wait()

    def _train(self):
        try:
            loop.train(self.cfg, verbose=0, on_epoch_end=self._epoch_end)
            self._done.put(None)
        except BaseException as e:  # re-raised by the caller's thread
            self._done.put(e)

    def _epoch_end(self, row):
        self._done.put(row)
        if row["epoch"] < self.cfg.epochs:
            self._go.acquire()

    def _wait(self):
        row = self._done.get()
        if isinstance(row, BaseException):
            raise row
        if row is None:
            raise RuntimeError(f"{self.cfg.model_dir}: the run ended before the epoch")
        return row

    def __call__(self):
        self._go.release()
        self._wait()
        rate = run_dir.read_history(self.cfg.model_dir)[-1]["images_per_sec"]
        return self.cfg.batch_size / rate

    def close(self):
        """Waits for the run to finish (its model saved)."""
        self._thread.join()
        if isinstance(error := self._done.get(), BaseException):
            raise error

    @property
    def num_classes(self):
        return len(run_dir.read_classes(self.cfg.model_dir))


def keras_variant(cfg, steps):
    """(b): `train_on_batch` on one in-memory batch."""
    keras.utils.set_random_seed(0)
    model = from_config.build(cfg)
    model.compile(
        keras.optimizers.SGD(cfg.learning_rate, momentum=cfg.momentum),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=bool(cfg.jit_compile),
    )
    rng = np.random.default_rng(0)
    size, batch = cfg.image_size, cfg.batch_size
    images = tf.constant(rng.standard_normal((batch, size, size, 3)).astype("float32"))
    labels = tf.constant(rng.integers(0, cfg.num_classes, batch))
    model.train_on_batch(images, labels)
    return lambda: _timed(lambda: model.train_on_batch(images, labels), steps)


def torch_variant(cfg, steps):
    """(c): PyTorch eager, SGD with momentum, NCHW."""
    torch.manual_seed(0)
    net = torch_net.build(
        cfg.model,
        num_classes=cfg.num_classes,
        activation=cfg.activation,
        width_multiplier=cfg.width_multiplier,
        fc_units=cfg.fc_units,
    )
    opt = torch.optim.SGD(net.parameters(), lr=cfg.learning_rate, momentum=cfg.momentum)
    images = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size)
    labels = torch.randint(0, cfg.num_classes, (cfg.batch_size,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn_loss(net(images), labels)
        loss.backward()
        opt.step()
        loss.item()

    nn_loss = torch.nn.CrossEntropyLoss()
    step()
    return lambda: _timed(step, steps)


def matmul_variant(size, steps):
    """Seconds per float32 `size x size` matmul (TensorFlow, this process):
    the best of `steps` matmuls, so that caches cold after a large model's
    step and a run cut short by load do not lower the reference."""
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    run = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    run().numpy()
    return lambda: min(_timed(lambda: run().numpy(), 1) for _ in range(steps))


def main(argv):
    del argv
    quiet_start.start()  # as delving.train: absl at WARNING (no line per checkpoint)
    tf.get_logger().setLevel("WARNING")
    # Another crop size scales the preset's jitter and evaluation resize with it.
    ratio = _IMAGE_SIZE.value / _B["image_size"]
    network = dict(
        model=_MODEL.value,
        activation=_ACTIVATION.value,
        image_size=_IMAGE_SIZE.value,
        batch_size=_BATCH_SIZE.value,
        width_multiplier=_WIDTH.value,
        fc_units=_FC_UNITS.value,
    )
    changed = {k: v for k, v in network.items() if v != _B.get(k, "prelu")}
    if _MODEL_DIR.value and os.path.exists(_MODEL_DIR.value):
        raise app.UsageError(f"--model_dir={_MODEL_DIR.value} exists: (a) would resume its run")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _MODEL_DIR.value or tmp
        # With the flags' defaults this is `python -m delving.train`'s config
        # (only the model_dir and the number of epochs differ).
        cfg = config_lib.resolve_config(
            preset="builtin",
            data_dir=_DATA_DIR.value,
            model_dir=model_dir,
            epochs=1 + _REPEATS.value,
            steps_per_epoch=_TRAINER_STEPS.value,
            jit_compile=True if _JIT.value else None,
            **changed,
            **(
                dict(
                    scale_range=tuple(round(s * ratio) for s in _B["scale_range"]),
                    eval_resize=round(_B["eval_resize"] * ratio),
                    # Speed does not depend on the rate; full-width nets diverge at the preset's.
                    learning_rate=1e-3,
                )
                if changed
                else {}
            ),
        )
        run_a = TrainerVariant(cfg)
        # (b), (c): the data's class count, as the run resolved it.
        cfg = dataclasses.replace(cfg, num_classes=run_a.num_classes)
        trainers = [run_a]
        variants = {
            _TRAINER: run_a,
            _FLOOR: keras_variant(cfg, _STEPS.value),
            "(c) PyTorch eager, in memory": torch_variant(cfg, _STEPS.value),
        }
        if _COMPARE_XLA.value and not cfg.jit_compile:
            xla = dataclasses.replace(cfg, jit_compile=True, model_dir=model_dir + "/xla")
            start = time.perf_counter()
            trainers.append(TrainerVariant(xla))
            variants["(a) the same, XLA"] = trainers[-1]
            variants["(b) the same, XLA"] = keras_variant(xla, _STEPS.value)
            seconds = time.perf_counter() - start
            print(f"XLA: tracing and compiling (a) and (b) took {seconds:.1f} s")
        if _COMPARE_RELU.value and cfg.activation != "relu":
            relu = dataclasses.replace(cfg, activation="relu")
            variants[_RELU] = keras_variant(relu, _STEPS.value)
        variants[_MATMUL_NAME] = matmul_variant(_MATMUL.value, steps=20)
        load_before = os.getloadavg()[0]
        times = compare.interleaved(variants, _REPEATS.value)
        loads = (load_before, os.getloadavg()[0])
        for trainer in trainers:
            trainer.close()
        model = from_config.build(cfg)
    matmul_times = times.pop(_MATMUL_NAME)

    flops = 6 * stats.totals(stats.layer_stats(model, cfg.image_size))[1]
    mm = [2 * _MATMUL.value**3 / t for t in matmul_times]
    print(
        f"\n{cfg.model} {cfg.activation} width x{cfg.width_multiplier:g} fc {cfg.fc_units} "
        f"image {cfg.image_size} batch {cfg.batch_size} jit_compile={cfg.jit_compile}; "
        f"{_STEPS.value} steps x {_REPEATS.value} interleaved repeats, median [min-max]; "
        f"load average (1 min) {min(loads):.1f}-{max(loads):.1f}; torch threads "
        f"{torch.get_num_threads()}"
    )
    print(
        f"float32 matmul {_MATMUL.value}^2: {statistics.median(mm) / 1e9:.1f} GFLOP/s "
        f"[{min(mm) / 1e9:.1f}-{max(mm) / 1e9:.1f}]; {flops / 1e9:.3f} GFLOP per image-step"
    )
    header = (
        f"{'variant':<42}{'images/s':>20}{'ms/step':>10}{'GFLOP/s':>9}{'of mm':>7}"
        "  speed vs (b), per repeat"
    )
    print(header + "\n" + "-" * len(header))
    for name, t in times.items():
        med = statistics.median(t)
        ips = [cfg.batch_size / x for x in t]
        rate = flops * cfg.batch_size / med
        print(
            f"{name:<42}{cfg.batch_size / med:>9.1f} [{min(ips):.0f}-{max(ips):.0f}]"
            f"{med * 1e3:>10.1f}{rate / 1e9:>9.1f}{rate / statistics.median(mm):>7.0%}"
            f"  {compare.format_ratio(compare.paired_ratio(times, _FLOOR, name))}"
        )
    # The ReLU row's "speed vs (b)" is PReLU's step time over ReLU's.
    ratios = [(_FLOOR, name) for name in times if name != _FLOOR]
    print("\n".join(compare.warnings(times, ratios)))


if __name__ == "__main__":
    app.run(main)
