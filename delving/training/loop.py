"""Training, read top to bottom in the order a run happens.

`train` prepares the run (`delving.training.setup`: strategy, data, model,
optimizer; nothing written), opens its directory (`delving.training.run_dir`:
lock, restore, config.json), builds the compiled step
(`delving.training.step`) and the input (`delving.training.inputs`), then
runs the epochs here: each trains to the epoch's end in calls of the step,
validates, logs, and checkpoints. After the first call of the step that
follows its tracing, the chief prints the run's projected wall time
(`delving.training.estimate`).

Keras 3's `model.fit` fails under `MultiWorkerMirroredStrategy` on TF 2.21
(keras-team/keras#20585), so, as Model Garden does, the loop is written once
on `strategy.run` and serves every strategy. Each call of the step runs the
steps up to the next log or checkpoint boundary in a graph loop, so the host
syncs once per call, not per step.

A restarted run continues from the last checkpoint (every
`checkpoint_every_steps` and at each epoch end), running only the steps its
epoch has left. Weights are checked to be finite before every save and a
non-finite loss stops the run with `TrainingDiverged`, so the latest
checkpoint is always a good one.
"""

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from common import progress
from delving import paper
from delving.evaluation import validation
from delving.models import networks
from delving.training import config as config_lib
from delving.training import estimate, inputs, preemption, presets, run_dir, setup, step, summaries
from delving.training.preemption import Stopped, Stopper  # noqa: F401  (delving.train uses both)
from delving.training.run_dir import ConfigMismatch, RunLocked, WriteFailed  # noqa: F401
from delving.training.setup import BatchSizeError  # noqa: F401

#: What `train` raises for a user's mistake or the world's (one-line messages).
USER_ERRORS = (ConfigMismatch, BatchSizeError, RunLocked, WriteFailed)


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


def train(
    cfg: config_lib.TrainConfig,
    *,
    strategy=None,
    verbose=1,
    force=False,
    stop=None,
    on_epoch_end=None,
) -> TrainResult:
    """Trains (or resumes) the run described by `cfg` in `cfg.model_dir`.

    Args:
      cfg: a resolved `TrainConfig` (`delving.training.config.resolve_config`).
      strategy: a `tf.distribute.Strategy`; default `cfg.strategy`.
      verbose: 0 for silence, 1 for progress bars and per-epoch lines.
      force: take model_dir's lock over from another run.
      stop: a `Stopper` that can end the run early (e.g. `Stopper.on_signals`).
      on_epoch_end: called with each epoch's training_log.csv row once it is
        written and checkpointed (benchmarks/train_throughput.py interleaves
        its other variants with the epochs this way).

    Raises:
      TrainingDiverged: the loss became NaN/Inf (the latest checkpoint is good).
      Stopped: `stop` was requested; the step it stopped at is checkpointed.
      ConfigMismatch, BatchSizeError, RunLocked, WriteFailed: see `USER_ERRORS`.
      common.errors.DataError: the data is missing or broken.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(
        config_lib.MIXED_PRECISION_POLICIES[cfg.mixed_precision]
    )
    stop = stop or Stopper()
    try:
        run = setup.prepare(cfg, strategy)  # every check; nothing written
        if stop.requested:
            name = stop.signal_name()
            raise Stopped(f"{name} before training started; nothing written", stop.signum)
        with run_dir.open_run(
            run.cfg, run.classes, run.state, chief=run.chief, task=run.task, force=force
        ) as (directory, restored):
            return _train(run, directory, restored, verbose and run.chief, stop, on_epoch_end)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _train(run, directory, restored, verbose, stop, on_epoch_end):
    cfg, state, strategy = run.cfg, run.state, run.strategy
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        stop = preemption.ClusterStop(cfg, state, strategy, directory)
    say = print if verbose else lambda *_, **__: None
    say(
        f"Training {cfg.model} ({cfg.activation}) on {cfg.dataset_name}"
        f" with --strategy={cfg.strategy} ({type(strategy).__name__},"
        f" {strategy.num_replicas_in_sync} replicas{', XLA' if run.jit_compile else ''}): "
        f"{cfg.epochs} epochs of {cfg.steps_per_epoch} steps, "
        f"global batch {cfg.batch_size}; model_dir {cfg.model_dir}",
        flush=True,
    )
    say(presets.preset_reason(cfg), flush=True)
    if restored:
        say(_resumed(cfg, state, restored), flush=True)
    tensorboard = summaries.TrainSummaries(directory, state.model)
    tensorboard.write_hparams(cfg)
    if not int(state.step.numpy()):
        tensorboard.write_slopes(epoch=0, step=0)  # the initial slopes
    train_step = step.make_train_step(
        cfg, state, strategy, jit_compile=run.jit_compile, stop=stop.flag()
    )
    # A fresh shuffle per (re)start: resuming does not replay the order.
    seed = cfg.seed + int(state.step.numpy())
    iterator = iter(inputs.make_train_dataset(cfg, run.source, strategy, seed=seed))
    evaluator = make_evaluator(run)
    clock = estimate.Clock(cfg, estimate.device_kind(strategy), verbose)
    history = directory.history
    while int(state.epoch.numpy()) < cfg.epochs:
        row = train_epoch(
            cfg, state, directory, train_step, iterator, evaluator, verbose, stop, clock
        )
        history = [r for r in history if r["epoch"] < row["epoch"]] + [row]
        directory.write_history(history)
        tensorboard.write_slopes(epoch=row["epoch"], step=row["step"])
        state.epoch.assign_add(1)
        state.epoch_step.assign(0)
        state.epoch_sums.assign(tf.zeros_like(state.epoch_sums))
        _save(state, directory)
        _stop_if_requested(cfg, state, directory, stop)
        if on_epoch_end is not None:
            on_epoch_end(row)
    return _finish(cfg, state, directory, history, say)


def make_evaluator(run):
    """The per-epoch validation: centre crops at `eval_resize`."""
    cfg = run.cfg
    return validation.Evaluator(
        run.state.model,
        run.source,
        view="center",
        scales=(cfg.eval_resize,),
        image_size=cfg.image_size,
        batch_size=cfg.batch_size,
        steps=cfg.eval_steps,
        strategy=run.strategy,
        dtype=keras.mixed_precision.global_policy().compute_dtype,
        jit_compile=run.jit_compile,
    )


def _resumed(cfg, state, restored):
    step_, epoch = int(state.step.numpy()), int(state.epoch.numpy())
    if epoch >= cfg.epochs:
        return f"Resumed from {restored}: all {epoch} epochs already done (step {step_})"
    if int(state.epoch_step.numpy()):
        return (
            f"Resumed from {restored}: step {step_}, epoch {epoch + 1}, "
            f"{int(state.epoch_step.numpy())} steps into the epoch"
        )
    return f"Resumed from {restored}: step {step_}, {epoch} of {cfg.epochs} epochs done"


def train_epoch(
    cfg, state, directory, train_step, iterator, evaluator, verbose, stop=None, clock=None
):
    """Trains the rest of the current epoch, validates; the training_log.csv row.
    `clock` (an `estimate.Clock`) is told how long each call and the evaluation took."""
    stop = stop or Stopper()
    clock = clock or estimate.Clock(cfg, "", verbose=False)
    epoch = int(state.epoch.numpy())
    state.epoch_rate.assign(state.schedule.rate())
    if verbose:
        print(f"Epoch {epoch + 1}/{cfg.epochs}  lr={state.schedule.rate():g}", flush=True)
    done = int(state.epoch_step.numpy())
    progbar = progress.progress_bar(
        cfg.steps_per_epoch,
        visible=bool(verbose),
        stateful_metrics=["loss", "top1_err", "top5_err", "img/s"],
    )
    if done:
        progbar.update(done)
    sums = setup.EpochSums(*state.epoch_sums.numpy()) if done else setup.EpochSums(0, 0, 0, 0)
    images_before = sums.images  # img/s counts this process's steps only
    started = time.perf_counter()
    while done < cfg.steps_per_epoch:
        at = int(state.step.numpy())
        count = _steps_to_boundary(
            at, cfg.steps_per_epoch - done, cfg.log_every_steps, cfg.checkpoint_every_steps
        )
        # One host sync per call of `count` steps, not per step (fewer if stopped).
        called = time.perf_counter()
        rows = train_step(iterator, tf.constant(count, tf.int32)).numpy().astype(float)
        count = len(rows)
        call_s = time.perf_counter() - called
        bad = np.flatnonzero(~np.isfinite(rows[:, 0]))
        if bad.size:
            progress.end_line(progbar)
            raise TrainingDiverged(
                f"loss became {rows[bad[0], 0]} at step {at + bad[0] + 1} "
                f"(epoch {epoch + 1}); training stopped. {_last_good(directory)}"
            )
        state.step.assign_add(count)
        state.epoch_step.assign_add(count)
        done += count
        at += count
        sums = sums.add(rows)
        state.epoch_sums.assign(sums)
        loss, top1_err, top5_err = sums.means()
        rate = (sums.images - images_before) / (time.perf_counter() - started)
        logs = {"loss": loss, "top1_err": top1_err, "top5_err": top5_err, "img/s": rate}
        progbar.update(done, list(logs.items()))
        clock.stepped(call_s, count, progbar)
        if at % cfg.log_every_steps == 0:
            lr = float(state.optimizer.learning_rate.numpy())
            directory.write_scalars("train", at, dict(logs, learning_rate=lr))
        if at % cfg.checkpoint_every_steps == 0 and done < cfg.steps_per_epoch:
            _save(state, directory)
        _stop_if_requested(cfg, state, directory, stop, progbar)
    train_seconds = time.perf_counter() - started
    val = evaluator.run(stop=lambda: stop.requested)
    _stop_if_requested(cfg, state, directory, stop, progbar)  # mid-evaluation: redone on resume
    clock.evaluated(
        time.perf_counter() - started - train_seconds, val["count"], evaluator.batch_size
    )
    state.schedule.end_epoch(epoch, val["top1_error"])
    at = int(state.step.numpy())
    directory.write_scalars(
        "validation",
        at,
        {"loss": val["loss"], "top1_err": val["top1_error"], "top5_err": val["top5_error"]},
    )
    loss, top1_err, top5_err = sums.means()
    trained = sums.images - images_before  # by this process: none if resumed at the evaluation
    row = {
        "epoch": epoch + 1,
        "step": at,
        "learning_rate": float(state.optimizer.learning_rate.numpy()),
        "train_loss": loss,
        "train_top1_error": top1_err,
        "train_top5_error": top5_err,
        "val_loss": val["loss"],
        "val_top1_error": val["top1_error"],
        "val_top5_error": val["top5_error"],
        # Training steps only (the evaluation above is not counted).
        "images_per_sec": trained / max(train_seconds, 1e-9) if trained else float("nan"),
    }
    if verbose:
        print(
            f"Epoch {epoch + 1}: train loss {loss:.4f} top-1 err {top1_err:.2%} "
            f"top-5 err {top5_err:.2%} | val loss {val['loss']:.4f} "
            f"top-1 err {val['top1_error']:.2%} top-5 err {val['top5_error']:.2%}",
            flush=True,
        )
    return row


def _steps_to_boundary(step_, left, *every):
    """Steps from global `step_` to the next multiple of any of `every` (where
    the loop logs or checkpoints), at most `left` (the epoch's end)."""
    return min([left] + [n - step_ % n for n in every])


def _save(state, directory):
    """Checkpoint, unless the weights are no longer finite."""
    if not _all_finite(state.model.trainable_variables):
        raise TrainingDiverged(
            f"weights became NaN/Inf at step {int(state.step.numpy())}; "
            f"stopped before saving. {_last_good(directory)}"
        )
    return directory.save(int(state.step.numpy()))


def _stop_if_requested(cfg, state, directory, stop, progbar=None):
    """Checkpoints this step (unless it is the latest already) and raises
    `Stopped` when the stopper says to stop here."""
    if not stop.at_boundary(cfg, state):
        return
    if progbar is not None:
        progress.end_line(progbar)
    at = int(state.step.numpy())
    latest = directory.latest()
    if not (latest and latest.endswith(f"ckpt-{at}")):
        latest = _save(state, directory)
    raise Stopped(
        f"{stop.signal_name()}: stopped at {preemption.where(cfg, state)}; saved {latest}; "
        "rerun the same command to resume",
        stop.signum,
    )


def _last_good(directory):
    latest = directory.latest()
    return (
        f"Last good checkpoint: {latest}" if latest else "No checkpoint was saved"
    ) + "; try a lower --learning_rate."


@tf.function
def _all_finite(variables):
    return tf.reduce_all(
        [tf.reduce_all(tf.math.is_finite(tf.cast(v, tf.float32))) for v in variables]
    )


def _finish(cfg, state, directory, history, say) -> TrainResult:
    """Saves model.keras (chief), prints the summary, returns the result."""
    directory.save_model(state.model)
    prelu = networks.prelu_coefficients(state.model)
    if history:
        last = history[-1]
        say(
            f"Final validation: top-1 error {last['val_top1_error']:.2%}, "
            f"top-5 error {last['val_top5_error']:.2%} "
            f"(epoch {last['epoch']}, step {last['step']})"
        )
    if prelu:
        say(prelu_table(prelu, cfg))
    say("Wrote:\n" + "\n".join(f"  {name:<12} {path}" for name, path in directory.paths.items()))
    step_, epoch = int(state.step.numpy()), int(state.epoch.numpy())
    return TrainResult(cfg, step_, epoch, history, prelu, directory.paths, state.model)


def prelu_table(coefficients, cfg):
    """The learned PReLU slopes laid out like the paper's Table 1."""
    shared = cfg.activation == "prelu_shared"
    kind = "channel-shared" if shared else "channel-wise"
    with_paper = cfg.model == paper.TABLES_MODEL
    lines = [
        f"Learned PReLU coefficients ({kind}, mean slope per layer; "
        f"initial {networks.PRELU_INIT_SLOPE})"
    ]
    lines.append(f"  {'layer':<10} {'ours':>8}" + (f" {'Table 1':>8}" if with_paper else ""))
    for name, slope in coefficients.items():
        layer = name.removesuffix("_prelu")
        line = f"  {layer:<10} {slope:8.3f}"
        if with_paper and layer in paper.TABLE1:
            line += f" {paper.TABLE1[layer][0 if shared else 1]:8.3f}"
        lines.append(line)
    return "\n".join(lines)
