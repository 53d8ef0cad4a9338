"""How long a run will take: projected from its own measured step time.

`delving.train` prints one projection early, after the first call of the
compiled step that follows its tracing (so compile time is not counted),
from epochs x steps x the measured time per step, plus the evaluations once
one has run (evaluations x batches x the measured time per batch, the first
evaluation's, whose tracing makes it an overestimate; until then the line
says they are not included). `delving.summary` projects the
paper's schedule from FLOPs and a device's throughput instead.

Everything here but `Clock` is plain arithmetic (no TensorFlow).
"""

import dataclasses
import math

from delving import paper

DAY_S = 24 * 3600

TRAINING_FLOPS_PER_MAC = 2 * 3  # a multiply-add is 2 FLOPs; backward costs 2x forward


@dataclasses.dataclass(frozen=True)
class Projection:
    """A run's projected wall time, in seconds."""

    train_s: float
    eval_s: float | None  # None: no evaluation measured yet, not included

    @property
    def total_s(self):
        return self.train_s + (self.eval_s or 0.0)


def project(*, epochs, steps_per_epoch, step_s, eval_batches=None, eval_batch_s=None) -> Projection:
    """The whole run: `epochs` x `steps_per_epoch` x `step_s`, plus one
    evaluation per epoch of `eval_batches` x `eval_batch_s` when measured."""
    evals = None if eval_batch_s is None else epochs * eval_batches * eval_batch_s
    return Projection(epochs * steps_per_epoch * step_s, evals)


def duration(seconds):
    """'2 d 3 h', '3 h 12 min', '4 min 5 s', '1.5 s'."""
    if seconds < 60:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    parts, left = [], round(seconds)
    for unit, size in (("d", DAY_S), ("h", 3600), ("min", 60), ("s", 1)):
        if left >= size or parts:
            parts.append(f"{left // size} {unit}")
            left %= size
    return " ".join(parts[:2])


def projection_lines(cfg, projection, *, step_s, eval_batches, eval_batch_s, device):
    """The printed line and, when it runs over a day on a CPU, a warning line."""
    line = (
        f"Projected run time on this hardware ({device}): "
        f"{duration(projection.total_s)} = {cfg.epochs} epochs x {cfg.steps_per_epoch} "
        f"steps x {step_s:.3g} s/step"
    )
    if projection.eval_s is None:
        line += "; evaluation not included (not measured until the first one has run)"
    else:
        line += f" + {cfg.epochs} evaluations x {eval_batches} batches x {eval_batch_s:.3g} s"
    lines = [line]
    if device == "CPU" and projection.total_s > DAY_S:
        smaller = "builtin" if cfg.builtin_data else "photos"
        instead = (
            f"the smaller recipe for CPUs is --preset={smaller}"
            if cfg.preset not in ("builtin", "photos")
            else "lower --epochs, --steps_per_epoch or the model size"
        )
        lines.append(f"Warning: more than a day on a CPU; {instead}")
    return lines


def training_flops_per_image(macs):
    """FLOPs to train on one image: forward + backward, from the forward's
    multiply-adds (`delving.models.stats`)."""
    return TRAINING_FLOPS_PER_MAC * macs


def paper_schedule_s(flops_per_image, *, device_tflops, utilisation, images):
    """Seconds for the paper's `paper.TRAINING_EPOCHS` epochs of `images` on a
    device of `device_tflops` peak at `utilisation` (0-1] of it."""
    return paper.TRAINING_EPOCHS * images * flops_per_image / (device_tflops * 1e12 * utilisation)


class Clock:
    """Times the training loop's step calls and evaluations; prints the
    projection once (chief, verbose only), after the first measured call."""

    def __init__(self, cfg, device, verbose):
        self.cfg, self.device, self.verbose = cfg, device, verbose
        self.calls = 0
        self.eval_batches = self.eval_batch_s = None
        self.printed = not verbose

    def evaluated(self, seconds, images, batch_size):
        """After an evaluation of `images` in batches of `batch_size`."""
        if self.eval_batch_s is None and images:
            self.eval_batches = math.ceil(images / batch_size)
            self.eval_batch_s = seconds / self.eval_batches

    def stepped(self, seconds, steps, progbar=None):
        """After a call of the compiled step that ran `steps` steps; the
        process's first call traces it and is not measured."""
        self.calls += 1
        if self.printed or self.calls < 2 or not steps:
            return
        self.printed = True
        step_s = seconds / steps
        projection = project(
            epochs=self.cfg.epochs,
            steps_per_epoch=self.cfg.steps_per_epoch,
            step_s=step_s,
            eval_batches=self.eval_batches,
            eval_batch_s=self.eval_batch_s,
        )
        if progbar is not None:
            from common import progress

            progress.end_line(progbar)
        lines = projection_lines(
            self.cfg,
            projection,
            step_s=step_s,
            eval_batches=self.eval_batches,
            eval_batch_s=self.eval_batch_s,
            device=self.device,
        )
        print("\n".join(lines), flush=True)


def device_kind(strategy):
    """'CPU', 'GPU' or 'TPU': where the strategy's replicas run."""
    import tensorflow as tf

    try:
        return tf.DeviceSpec.from_string(strategy.extended.worker_devices[0]).device_type
    except RuntimeError:  # the default strategy: TensorFlow's default device
        return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
