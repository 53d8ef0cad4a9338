"""The training loop: one `strategy.run` loop for every tf.distribute strategy.

Keras 3's `model.fit` fails under `MultiWorkerMirroredStrategy` on TF 2.21
(keras-team/keras#20585), so, as Model Garden does, the loop is written once
on `strategy.run` and serves OneDevice, Mirrored, MultiWorkerMirrored and TPU
strategies alike. Keras still provides the model, the SGD optimizer (its
`apply_gradients` all-reduces the gradients across replicas), mixed
precision with loss scaling, and the progress bar.

The objective and the compiled step are in `delving.training.step`. Each call
of the step runs the steps up to the next log or checkpoint boundary in a
graph loop, and the host reads their losses and hits back once per call, so
neither Python nor a per-step device-to-host sync sits between two steps
(benchmarks/train_throughput.py).

Fault tolerance: checkpoints (model, optimizer slots, global step, epoch,
step within the epoch, learning-rate schedule) every
`checkpoint_every_steps` and at each epoch end; a restarted run continues
from the last one, running only the steps its epoch has left. Weights are
checked to be finite before every save, and a non-finite loss stops the run
with `TrainingDiverged`, so the latest checkpoint is always a good one.

The parts, in the order `train` runs them (the shape of flax's
`examples/imagenet/train.py`): from `delving.training.setup`, `prepare_run` (data
source, epoch length, class list), `create_train_state` (model, optimizer,
schedule, counters, checkpointer: a `TrainState`) and `restore`; then
`train_step.make_train_step` (the compiled step) and the loop here:
`train_epoch` once per epoch, `_finish` at the end.

The model_dir is the run's alone (`delving.training.run_guard`), and nothing is
written to it until every check has passed, the checkpoint restore included:
a command that fails (another network's flags, broken data) leaves the run
as it was. Every file appears whole (temporary name, then rename), and what
killed writes left behind is removed at the next start.
"""

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from common import progress
from delving.models import networks
from delving.training import config as config_lib
from delving.training import distribute, inputs, memory, run_dir, run_guard
from delving.training import step as train_step_lib

# The steps before the loop; their names are part of this module's API too.
from delving.training.setup import (  # noqa: F401
    BatchSizeError,
    ConfigMismatch,
    TrainState,
    check_batch_size,
    create_train_state,
    make_evaluator,
    prepare_run,
    restore,
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message is one line."""


@dataclasses.dataclass
class TrainResult:
    config: config_lib.TrainConfig
    step: int
    epoch: int
    history: list  # one dict per epoch, as in training_log.csv
    prelu: dict  # layer -> mean learned slope
    files: dict  # what was written where
    model: keras.Model


# --------------------------------------------------------------------- loop
class _Run:
    """What every epoch of one run shares: printing, saving, TensorBoard."""

    def __init__(self, cfg, state, strategy, verbose):
        self.cfg, self.state, self.strategy = cfg, state, strategy
        self.chief = distribute.is_chief(strategy)
        self.verbose = verbose and self.chief
        self.writers = run_dir.summary_writers(cfg.model_dir, self.chief)

    def say(self, text):
        if self.verbose:
            print(text, flush=True)

    def save(self):
        """Checkpoint, unless the weights are no longer finite."""
        state = self.state
        if not _all_finite(state.model.trainable_variables):
            raise TrainingDiverged(
                f"weights became NaN/Inf at step {int(state.step.numpy())}; "
                f"stopped before saving. {self.last_good()}"
            )
        return state.checkpointer.save(int(state.step.numpy()))

    def last_good(self):
        latest = self.state.checkpointer.latest()
        return (
            f"Last good checkpoint: {latest}" if latest else "No checkpoint was saved"
        ) + "; try a lower --learning_rate."


def train_epoch(run, train_step, iterator, evaluator) -> dict:
    """Trains the rest of the current epoch, validates; the training_log.csv row."""
    cfg, state = run.cfg, run.state
    epoch = int(state.epoch.numpy())
    state.epoch_rate.assign(state.schedule.rate())
    run.say(f"Epoch {epoch + 1}/{cfg.epochs}  lr={state.schedule.rate():g}")
    done = int(state.epoch_step.numpy())
    progbar = progress.progress_bar(
        cfg.steps_per_epoch,
        visible=bool(run.verbose),
        stateful_metrics=["loss", "top1_err", "top5_err", "img/s"],
    )
    if done:
        progbar.update(done)
    sums = state.epoch_sums.numpy() if done else np.zeros(4)
    images_before = sums[3]  # img/s counts this process's steps only
    started = time.perf_counter()
    while done < cfg.steps_per_epoch:
        step = int(state.step.numpy())
        count = _steps_to_boundary(
            step, cfg.steps_per_epoch - done, cfg.log_every_steps, cfg.checkpoint_every_steps
        )
        # One host sync per call of `count` steps, not per step.
        rows = train_step(iterator, tf.constant(count, tf.int32)).numpy().astype(float)
        bad = np.flatnonzero(~np.isfinite(rows[:, 0]))
        if bad.size:
            progress.end_line(progbar)
            raise TrainingDiverged(
                f"loss became {rows[bad[0], 0]} at step {step + bad[0] + 1} "
                f"(epoch {epoch + 1}); training stopped. {run.last_good()}"
            )
        state.step.assign_add(count)
        state.epoch_step.assign_add(count)
        done += count
        step += count
        loss, top1, top5, images = rows.T
        sums += ((loss * images).sum(), top1.sum(), top5.sum(), images.sum())
        state.epoch_sums.assign(sums)
        train_seconds = time.perf_counter() - started
        logs = {
            "loss": sums[0] / sums[3],
            "top1_err": 1 - sums[1] / sums[3],
            "top5_err": 1 - sums[2] / sums[3],
            "img/s": (sums[3] - images_before) / train_seconds,
        }
        progbar.update(done, list(logs.items()))
        if step % cfg.log_every_steps == 0:
            run_dir.write_scalars(
                run.writers["train"],
                step,
                dict(logs, learning_rate=float(state.optimizer.learning_rate.numpy())),
            )
        if step % cfg.checkpoint_every_steps == 0 and done < cfg.steps_per_epoch:
            run.save()
    train_seconds = time.perf_counter() - started
    val = evaluator.run()
    state.schedule.end_epoch(epoch, val["top1_error"])
    step = int(state.step.numpy())
    run_dir.write_scalars(
        run.writers["validation"],
        step,
        {"loss": val["loss"], "top1_err": val["top1_error"], "top5_err": val["top5_error"]},
    )
    row = {
        "epoch": epoch + 1,
        "step": step,
        "learning_rate": float(state.optimizer.learning_rate.numpy()),
        "train_loss": logs_or_nan(sums, 0),
        "train_top1_error": 1 - logs_or_nan(sums, 1),
        "train_top5_error": 1 - logs_or_nan(sums, 2),
        "val_loss": val["loss"],
        "val_top1_error": val["top1_error"],
        "val_top5_error": val["top5_error"],
        # Training steps only (the evaluation above is not counted).
        "images_per_sec": (sums[3] - images_before) / max(train_seconds, 1e-9),
    }
    run.say(
        f"Epoch {epoch + 1}: train loss {row['train_loss']:.4f} "
        f"top-1 err {row['train_top1_error']:.2%} top-5 err "
        f"{row['train_top5_error']:.2%} | val loss {val['loss']:.4f} "
        f"top-1 err {val['top1_error']:.2%} top-5 err "
        f"{val['top5_error']:.2%}"
    )
    return row


def _train_loop(run, source, restored):
    """Trains the epochs left after checkpoint `restored`; the history."""
    cfg, state, strategy = run.cfg, run.state, run.strategy
    step, epoch = int(state.step.numpy()), int(state.epoch.numpy())
    run.say(
        f"Training {cfg.model} ({cfg.activation}) on {cfg.dataset_name}"
        f" with --strategy={cfg.strategy} ({type(strategy).__name__},"
        f" {strategy.num_replicas_in_sync} replicas"
        f"{', XLA' if train_step_lib.uses_xla(cfg, strategy) else ''}): "
        f"{cfg.epochs} epochs of {cfg.steps_per_epoch} steps, "
        f"global batch {cfg.batch_size}; model_dir {cfg.model_dir}"
    )
    if restored and epoch >= cfg.epochs:
        run.say(f"Resumed from {restored}: all {epoch} epochs already done (step {step})")
    elif restored and int(state.epoch_step.numpy()):
        run.say(
            f"Resumed from {restored}: step {step}, epoch {epoch + 1}, "
            f"{int(state.epoch_step.numpy())} steps into the epoch"
        )
    elif restored:  # at an epoch boundary: no epoch is under way
        run.say(f"Resumed from {restored}: step {step}, {epoch} of {cfg.epochs} epochs done")
    train_step = train_step_lib.make_train_step(cfg, state, strategy)
    evaluator = make_evaluator(cfg, state, source, strategy)
    history = run_dir.read_history(cfg.model_dir)
    # A fresh shuffle per (re)start: resuming does not replay the order.
    iterator = iter(inputs.make_train_dataset(cfg, source, strategy, seed=cfg.seed + step))
    while int(state.epoch.numpy()) < cfg.epochs:
        row = train_epoch(run, train_step, iterator, evaluator)
        history = [r for r in history if r["epoch"] < row["epoch"]] + [row]
        if run.chief:
            run_dir.write_history(cfg.model_dir, history)
        state.epoch.assign_add(1)
        state.epoch_step.assign(0)
        state.epoch_sums.assign(tf.zeros(4, tf.float64))
        run.save()
    return history


def _finish(run, history) -> TrainResult:
    """Saves model.keras (chief), prints the summary, returns the result."""
    cfg, state = run.cfg, run.state
    files = run_dir.paths(cfg.model_dir)
    if run.chief:
        # Keras writes the zip in place: a kill or a full disk mid-save must
        # not leave a truncated model.keras (`run_guard.leftover_temporaries`).
        tmp = os.path.join(cfg.model_dir, f"model.tmp-{os.getpid()}.keras")
        state.model.save(tmp)
        tf.io.gfile.rename(tmp, files["model"], overwrite=True)
    prelu = networks.prelu_coefficients(state.model)
    if history:
        last = history[-1]
        run.say(
            f"Final validation: top-1 error {last['val_top1_error']:.2%}, "
            f"top-5 error {last['val_top5_error']:.2%} "
            f"(epoch {last['epoch']}, step {last['step']})"
        )
    if prelu:
        run.say(run_dir.prelu_table(prelu, cfg))
    run.say("Wrote:\n" + "\n".join(f"  {name:<12} {path}" for name, path in files.items()))
    return TrainResult(
        cfg,
        int(state.step.numpy()),
        int(state.epoch.numpy()),
        history,
        prelu,
        files,
        state.model,
    )


def _steps_to_boundary(step, left, *every):
    """Steps from global `step` to the next multiple of any of `every` (where
    the loop logs or checkpoints), at most `left` (the epoch's end)."""
    return min([left] + [n - step % n for n in every])


def logs_or_nan(sums, i):
    return float(sums[i] / sums[3]) if sums[3] else float("nan")


@tf.function
def _all_finite(variables):
    return tf.reduce_all(
        [tf.reduce_all(tf.math.is_finite(tf.cast(v, tf.float32))) for v in variables]
    )


def train(cfg: config_lib.TrainConfig, *, strategy=None, verbose=1, force=False) -> TrainResult:
    """Trains (or resumes) the run described by `cfg` in `cfg.model_dir`.

    Args:
      cfg: a resolved `TrainConfig` (see `delving.training.config.resolve_config`).
      strategy: a `tf.distribute.Strategy`; default `cfg.strategy`.
      verbose: 0 for silence, 1 for progress bars and per-epoch lines.
      force: take model_dir's lock over from another run (`delving.training.run_guard`).

    Returns:
      A `TrainResult`.

    Raises:
      TrainingDiverged: the loss became NaN/Inf (latest checkpoint is good).
      ConfigMismatch: model_dir holds a run of a different network.
      BatchSizeError: the batch does not split over the replicas.
      run_guard.RunLocked: another run holds model_dir.
      run_guard.WriteFailed: a disk full or permission error (earlier checkpoints are good).
      common.errors.DataError: the data is missing or broken.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(
        config_lib.MIXED_PRECISION_POLICIES[cfg.mixed_precision]
    )
    try:
        if strategy is None:
            # Before creating it: a multi-worker strategy starts its server.
            check_batch_size(cfg, distribute.expected_replicas(cfg.strategy))
            strategy = distribute.make_strategy(cfg.strategy, tpu=cfg.tpu)
        check_batch_size(cfg, strategy.num_replicas_in_sync)
        chief = distribute.is_chief(strategy)
        cfg, source, classes = prepare_run(cfg, strategy)  # reads only
        state = create_train_state(cfg, strategy)  # writes nothing either
        devices = strategy.extended.worker_devices  # this host's replicas
        memory.check_batch_fits(
            state.model,
            image_size=cfg.image_size,
            batch_size=cfg.batch_size,
            host_batch=cfg.batch_size * len(devices) // strategy.num_replicas_in_sync,
            devices=devices,
            compute_dtype=keras.mixed_precision.global_policy().compute_dtype,
            error_type=BatchSizeError,
        )
        with run_guard.hold(cfg.model_dir, owner=chief, force=force):
            run_dir.check_compatible(cfg, ConfigMismatch)  # again, now as the owner
            restored = restore(cfg, state)
            if chief:  # every check passed: only now is anything written
                run_dir.write_config(cfg)
                run_dir.write_classes(cfg, classes)
            run = _Run(cfg, state, strategy, verbose)
            return _finish(run, _train_loop(run, source, restored))
    finally:
        keras.mixed_precision.set_global_policy(previous)
