"""The training loop: one `strategy.run` loop for every tf.distribute strategy.

Keras 3's `model.fit` fails under `MultiWorkerMirroredStrategy` on TF 2.21
(keras-team/keras#20585), so, as Model Garden does, the loop is written once
on `strategy.run` and serves OneDevice, Mirrored, MultiWorkerMirrored and TPU
strategies alike. Keras still provides the model, the SGD optimizer (its
`apply_gradients` all-reduces the gradients across replicas), mixed
precision with loss scaling, and the progress bar.

The objective is the paper's (Sec. 4): softmax cross-entropy averaged over
the *global* batch (`tf.nn.compute_average_loss`), plus Caffe-style weight
decay `0.5 * wd * sum ||W||^2` over conv and fc kernels. Its gradient
`wd * W` enters the momentum update with the data gradient, as in Caffe's SGD
(Keras' `weight_decay` argument would instead decay the weights outside the
momentum, AdamW style). Not decayed: PReLU slopes (decay pulls them to 0,
back to ReLU, Sec. 2.1) and biases (as in the Caffe model definitions of the
time, `decay_mult: 0`). Each replica adds `1 / num_replicas` of the decay term,
so the all-reduced gradient holds it exactly once.

Fault tolerance: checkpoints (model, optimizer slots, global step, epoch,
step within the epoch, learning-rate schedule) every
`checkpoint_every_steps` and at each epoch end; a restarted run continues
from the last one, running only the steps its epoch has left. Weights are
checked to be finite before every save, and a non-finite loss stops the run
with `TrainingDiverged`, so the latest checkpoint is always a good one.
"""

import dataclasses
import math
import time

import keras
import numpy as np
import tensorflow as tf

from delving import checkpointing, distribute, evaluation, inputs, models, run_files
from delving import config as config_lib
from delving.schedules import LearningRateSchedule
from pipelines import dataset_ops, preprocessing

_POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message is one line."""


class ConfigMismatch(ValueError):
    """model_dir holds a run of a different network."""


@dataclasses.dataclass
class TrainResult:
    config: config_lib.TrainConfig
    step: int
    epoch: int
    history: list  # one dict per epoch, as in training_log.csv
    prelu: dict  # layer -> mean learned slope
    files: dict  # what was written where
    model: keras.Model


class _Trainer:
    """Holds the state of one run; `train()` is the public entry point."""

    def __init__(self, cfg, strategy, verbose):
        self.cfg, self.strategy, self.verbose = cfg, strategy, verbose
        self.replicas = strategy.num_replicas_in_sync
        if cfg.batch_size % self.replicas:
            raise ValueError(
                f"batch_size={cfg.batch_size}: not divisible by the "
                f"{self.replicas} replicas of --strategy={cfg.strategy}"
            )
        self.chief = distribute.is_chief(strategy)
        self.source = inputs.source_from_config(cfg)
        # Resolved config: the data actually read and the epoch length.
        self.cfg = cfg = self._resolve_steps(
            dataclasses.replace(cfg, data_dir=self.source.data_dir)
        )
        run_files.check_compatible(cfg, ConfigMismatch)
        self.files = run_files.paths(cfg.model_dir)
        if self.chief:
            run_files.write_config(cfg)
            run_files.write_classes(cfg, self.source.class_list(cfg.labels_file))
        keras.utils.set_random_seed(cfg.seed)
        with strategy.scope():
            self.model = models.build_model(
                cfg.model,
                num_classes=cfg.num_classes,
                activation=cfg.activation,
                init=cfg.init,
                dropout=cfg.dropout,
                width_multiplier=cfg.width_multiplier,
                fc_units=cfg.fc_units,
                seed=cfg.seed,
            )
            optimizer = keras.optimizers.SGD(cfg.learning_rate, momentum=cfg.momentum)
            if cfg.mixed_precision == "float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
            # Slots exist before restore, so their values come back too.
            optimizer.build(self.model.trainable_variables)
        # Caffe-style decay on conv/fc kernels only (never PReLU alpha, bias).
        self.decayed = [
            v for v in self.model.trainable_variables if v.path.split("/")[-1] == "kernel"
        ]
        self.schedule = LearningRateSchedule(
            cfg.learning_rate,
            kind=cfg.lr_schedule,
            factor=cfg.lr_decay_factor,
            max_decays=cfg.lr_max_decays,
            patience=cfg.lr_plateau_patience,
            min_delta=cfg.lr_plateau_min_delta,
            decay_epochs=cfg.lr_decay_epochs,
        )
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.epoch_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_step")
        self.checkpointer = checkpointing.Checkpointer(
            cfg.model_dir,
            strategy,
            keep=cfg.keep_checkpoints,
            model=self.model,
            optimizer=self.optimizer,
            step=self.step,
            epoch=self.epoch,
            epoch_step=self.epoch_step,
            lr_schedule=self.schedule,
        )
        self.evaluator = evaluation.Evaluator(
            self.model,
            self.source,
            view="center",
            scales=(cfg.eval_resize,),
            image_size=cfg.image_size,
            batch_size=cfg.batch_size,
            steps=cfg.eval_steps,
            strategy=strategy,
            dtype=self._input_dtype(),
        )
        self.train_step = self._make_train_step()

    # ----------------------------------------------------------------- setup
    def _resolve_steps(self, cfg):
        if cfg.steps_per_epoch is None:
            n = self.source.num_examples("train")
            cfg = dataclasses.replace(cfg, steps_per_epoch=config_lib.steps_for(n, cfg.batch_size))
        return cfg

    def _input_dtype(self):
        return keras.mixed_precision.global_policy().compute_dtype

    def _train_dataset(self, seed):
        cfg = self.cfg

        def dataset_fn(context):
            # uint8 crops and lighting shifts: normalised on the device by
            # `gradients`, which keeps the host's CPUs on decoding
            # (benchmarks/input_pipeline.py).
            return self.source.dataset(
                "train",
                is_training=True,
                input_context=context,
                batch_size=cfg.batch_size,  # global: the reader divides it
                image_size=cfg.image_size,
                scale_range=cfg.scale_range,
                lighting_std=cfg.lighting_std,
                cache=cfg.cache_data,
                seed=seed,
                repeat=True,
                normalize=False,
            )

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def _make_train_step(self):
        cfg, model, optimizer = self.cfg, self.model, self.optimizer
        decay_scale = 0.5 * cfg.weight_decay / self.replicas
        loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        topk = min(5, cfg.num_classes)

        mean, std, dtype = preprocessing.MEAN_RGB, self.source.std, self._input_dtype()

        @tf.function(jit_compile=cfg.jit_compile)
        def gradients(batch, labels):
            """Forward and backward pass of one replica (XLA-compilable)."""
            images = tf.cast(
                preprocessing.normalize(
                    batch[dataset_ops.PIXELS], mean, std, shift=batch[dataset_ops.LIGHTING]
                ),
                dtype,
            )
            with tf.GradientTape() as tape:
                logits = tf.cast(model(images, training=True), tf.float32)
                per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=labels, logits=logits
                )
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=cfg.batch_size)
                total = loss
                if cfg.weight_decay:
                    total += decay_scale * tf.add_n(
                        [tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in self.decayed]
                    )
                if loss_scaled:
                    total = optimizer.scale_loss(total)
            grads = tape.gradient(total, model.trainable_variables)
            return grads, loss, _correct(logits, labels, topk)

        def replica_step(batch, labels):
            grads, loss, (top1, top5) = gradients(batch, labels)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss, top1, top5, tf.shape(labels)[0]

        @tf.function
        def train_step(iterator):
            out = self.strategy.run(replica_step, args=next(iterator))
            return [self.strategy.reduce("SUM", x, axis=None) for x in out]

        return train_step

    # ------------------------------------------------------------------ loop
    def _save(self):
        """Checkpoint, unless the weights are no longer finite."""
        if not _all_finite(self.model.trainable_variables):
            raise TrainingDiverged(
                f"weights became NaN/Inf at step {int(self.step.numpy())}; "
                f"stopped before saving. {self._last_good()}"
            )
        return self.checkpointer.save(int(self.step.numpy()))

    def _last_good(self):
        latest = self.checkpointer.latest()
        return (
            f"Last good checkpoint: {latest}" if latest else "No checkpoint was saved"
        ) + "; try a lower --learning_rate."

    def _say(self, text):
        if self.verbose and self.chief:
            print(text, flush=True)

    def run(self):
        cfg = self.cfg
        restored = self.checkpointer.restore()
        step, epoch = int(self.step.numpy()), int(self.epoch.numpy())
        self._say(
            f"Training {cfg.model} ({cfg.activation}) on {cfg.dataset_name}"
            f" with --strategy={cfg.strategy} ({type(self.strategy).__name__},"
            f" {self.replicas} replicas): "
            f"{cfg.epochs} epochs of {cfg.steps_per_epoch} steps, "
            f"global batch {cfg.batch_size}; model_dir {cfg.model_dir}"
        )
        if restored:
            self._say(
                f"Resumed from {restored}: step {step}, epoch {epoch + 1}, "
                f"{int(self.epoch_step.numpy())} steps into the epoch"
            )
        writers = run_files.summary_writers(cfg.model_dir, self.chief)
        history = run_files.read_history(cfg.model_dir)
        # A fresh shuffle per (re)start: resuming does not replay the order.
        iterator = iter(self._train_dataset(seed=cfg.seed + step))
        while int(self.epoch.numpy()) < cfg.epochs:
            row = self._run_epoch(iterator, writers)
            history = [r for r in history if r["epoch"] < row["epoch"]] + [row]
            if self.chief:
                run_files.write_history(cfg.model_dir, history)
            self.epoch.assign_add(1)
            self.epoch_step.assign(0)
            self._save()
        return self._finish(history)

    def _run_epoch(self, iterator, writers):
        cfg = self.cfg
        epoch = int(self.epoch.numpy())
        self.optimizer.learning_rate = self.schedule.rate()
        self._say(f"Epoch {epoch + 1}/{cfg.epochs}  lr={self.schedule.rate():g}")
        done = int(self.epoch_step.numpy())
        progbar = keras.utils.Progbar(
            cfg.steps_per_epoch,
            verbose=1 if (self.verbose and self.chief) else 0,
            stateful_metrics=["loss", "top1_err", "top5_err", "img/s"],
        )
        if done:
            progbar.update(done)
        sums = np.zeros(4)
        started = time.perf_counter()
        while done < cfg.steps_per_epoch:
            loss, top1, top5, count = [x.numpy() for x in self.train_step(iterator)]
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss} at step {int(self.step.numpy()) + 1} "
                    f"(epoch {epoch + 1}); training stopped. {self._last_good()}"
                )
            self.step.assign_add(1)
            self.epoch_step.assign_add(1)
            done += 1
            sums += (loss * count, top1, top5, count)
            images_per_sec = sums[3] / (time.perf_counter() - started)
            logs = {
                "loss": sums[0] / sums[3],
                "top1_err": 1 - sums[1] / sums[3],
                "top5_err": 1 - sums[2] / sums[3],
                "img/s": images_per_sec,
            }
            progbar.update(done, list(logs.items()))
            step = int(self.step.numpy())
            if step % cfg.log_every_steps == 0:
                run_files.write_scalars(
                    writers["train"], step, dict(logs, learning_rate=self.schedule.rate())
                )
            if step % cfg.checkpoint_every_steps == 0 and done < cfg.steps_per_epoch:
                self._save()
        val = self.evaluator.run()
        self.schedule.end_epoch(epoch, val["top1_error"])
        step = int(self.step.numpy())
        run_files.write_scalars(
            writers["validation"],
            step,
            {"loss": val["loss"], "top1_err": val["top1_error"], "top5_err": val["top5_error"]},
        )
        row = {
            "epoch": epoch + 1,
            "step": step,
            "learning_rate": float(self.optimizer.learning_rate.numpy()),
            "train_loss": logs_or_nan(sums, 0),
            "train_top1_error": 1 - logs_or_nan(sums, 1),
            "train_top5_error": 1 - logs_or_nan(sums, 2),
            "val_loss": val["loss"],
            "val_top1_error": val["top1_error"],
            "val_top5_error": val["top5_error"],
            "images_per_sec": sums[3] / max(time.perf_counter() - started, 1e-9),
        }
        self._say(
            f"Epoch {epoch + 1}: train loss {row['train_loss']:.4f} "
            f"top-1 err {row['train_top1_error']:.2%} top-5 err "
            f"{row['train_top5_error']:.2%} | val loss {val['loss']:.4f} "
            f"top-1 err {val['top1_error']:.2%} top-5 err "
            f"{val['top5_error']:.2%}"
        )
        return row

    def _finish(self, history):
        cfg = self.cfg
        if self.chief:
            self.model.save(self.files["model"])
        prelu = models.prelu_coefficients(self.model)
        if history:
            last = history[-1]
            self._say(
                f"Final validation: top-1 error {last['val_top1_error']:.2%}, "
                f"top-5 error {last['val_top5_error']:.2%} "
                f"(epoch {last['epoch']}, step {last['step']})"
            )
        if prelu:
            self._say(run_files.prelu_table(prelu, cfg))
        self._say(
            "Wrote:\n" + "\n".join(f"  {name:<12} {path}" for name, path in self.files.items())
        )
        return TrainResult(
            cfg,
            int(self.step.numpy()),
            int(self.epoch.numpy()),
            history,
            prelu,
            self.files,
            self.model,
        )


def logs_or_nan(sums, i):
    return float(sums[i] / sums[3]) if sums[3] else float("nan")


def _correct(logits, labels, k):
    """Number of top-1 and top-k hits in a batch (float32)."""
    labels = tf.cast(labels, tf.int32)
    top1 = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, 1), tf.float32))
    topk = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, k), tf.float32))
    return top1, topk


@tf.function
def _all_finite(variables):
    return tf.reduce_all(
        [tf.reduce_all(tf.math.is_finite(tf.cast(v, tf.float32))) for v in variables]
    )


def train(cfg: config_lib.TrainConfig, *, strategy=None, verbose=1) -> TrainResult:
    """Trains (or resumes) the run described by `cfg` in `cfg.model_dir`.

    Args:
      cfg: a resolved `TrainConfig` (see `delving.config.resolve_config`).
      strategy: a `tf.distribute.Strategy`; default `cfg.strategy`.
      verbose: 0 for silence, 1 for progress bars and per-epoch lines.

    Returns:
      A `TrainResult`.

    Raises:
      TrainingDiverged: the loss became NaN/Inf (latest checkpoint is good).
      ConfigMismatch: model_dir holds a run of a different network.
      pipelines.errors.DataError: the data is missing or broken.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(_POLICIES[cfg.mixed_precision])
    try:
        strategy = strategy or distribute.make_strategy(cfg.strategy, tpu=cfg.tpu)
        return _Trainer(cfg, strategy, verbose).run()
    finally:
        keras.mixed_precision.set_global_policy(previous)
