"""The paper's optimizer: SGD with momentum and Caffe's weight decay.

Caffe (and the paper, Sec. 4) adds the decay gradient `wd * W` to the data
gradient and feeds the sum through the momentum:

    v <- momentum * v - lr * (g + wd * W)
    W <- W + v

i.e. L2 regularisation of the objective `0.5 * wd * ||W||^2`. Keras'
`weight_decay` argument would instead shrink the weights outside the
momentum (AdamW style), a different recipe. Decayed are the conv and fc
kernels only: never the PReLU slopes (decay pulls them to 0, back to ReLU,
Sec. 2.1), nor biases (`decay_mult: 0` in the Caffe model definitions of the
time).

The update of each variable is one fused TensorFlow kernel
(`ResourceApplyKerasMomentum`) plus the decay's multiply-add, added after the
gradients are all-reduced, once, whatever the number of replicas (cost:
docs/BENCHMARKS.md).

The learning rate the optimizer reads at every step is `WarmupRate`: the
epoch's rate from `LearningRateSchedule` (the paper's /10 on a plateau, or
/10 at given epochs), ramped up over a warm-up that the paper does not have
and the built-in preset needs (its small BN-free nets otherwise diverge in the
first steps at the rates that train them fastest, docs/RECIPE_SWEEPS.md).
"""

import keras
import tensorflow as tf

from delving.training.config import LR_SCHEDULES


def is_decayed(variable):
    """Whether Caffe-style decay applies: conv and fc kernels only."""
    return variable.path.split("/")[-1] == "kernel"


@keras.saving.register_keras_serializable(package="delving")
class CaffeSGD(keras.optimizers.SGD):
    """SGD with momentum and L2 weight decay inside the momentum (module docstring).

    TensorFlow backend only (the training app's backend).

    Args:
        learning_rate: float or a `keras.optimizers.schedules` schedule.
        momentum: the momentum `mu`, 0 <= mu < 1.
        l2_decay: `wd`, the decay added as `wd * W` to the gradient of every
            variable for which `is_decayed` holds.
        **kwargs: the other `keras.optimizers.Optimizer` arguments, except
            `weight_decay` (Keras' decoupled decay) and `nesterov`.

    Example:

    >>> optimizer = CaffeSGD(0.01, momentum=0.9, l2_decay=5e-4)
    >>> optimizer.build(model.trainable_variables)
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, l2_decay=0.0, name="caffe_sgd", **kwargs):
        if kwargs.get("weight_decay") or kwargs.get("nesterov"):
            raise ValueError("CaffeSGD takes l2_decay, not weight_decay or nesterov")
        super().__init__(learning_rate=learning_rate, momentum=momentum, name=name, **kwargs)
        if l2_decay < 0:
            raise ValueError(f"l2_decay must be >= 0, got {l2_decay}")
        self.l2_decay = l2_decay

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._decayed = [is_decayed(v) for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        gradient = tf.cast(gradient, variable.dtype)
        if self.l2_decay and self._decayed[index]:
            gradient += tf.cast(self.l2_decay, variable.dtype) * variable
        if not self.momentums:  # momentum 0: plain SGD, no slot to fuse with
            return super().update_step(gradient, variable, learning_rate)
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle,
            accum=self.momentums[index].value.handle,
            lr=tf.cast(learning_rate, variable.dtype),
            grad=gradient,
            momentum=tf.cast(self.momentum, variable.dtype),
            use_nesterov=False,
        )

    def get_config(self):
        return {**super().get_config(), "l2_decay": self.l2_decay}


class WarmupRate(keras.optimizers.schedules.LearningRateSchedule):
    """The optimizer's per-step rate: `epoch_rate * min(1, (step + 1) / warmup_steps)`.

    Args:
      epoch_rate: a scalar float variable holding the rate of the current epoch
        (the trainer assigns `LearningRateSchedule.rate()` to it at each epoch).
      warmup_steps: steps of the linear ramp from `epoch_rate / warmup_steps`
        up to `epoch_rate`; 0 disables it.

    The step is the optimizer's own iteration counter, which the training
    checkpoint restores, so a resumed run continues the same ramp.
    """

    def __init__(self, epoch_rate, warmup_steps=0):
        self.epoch_rate = epoch_rate
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        rate = tf.convert_to_tensor(self.epoch_rate)
        if not self.warmup_steps:
            return rate
        done = tf.cast(step + 1, rate.dtype) / self.warmup_steps
        return rate * tf.minimum(tf.constant(1.0, rate.dtype), done)

    def get_config(self):
        return {
            "epoch_rate": float(tf.convert_to_tensor(self.epoch_rate)),
            "warmup_steps": self.warmup_steps,
        }


class LearningRateSchedule(tf.Module):
    """Epoch-level step or plateau schedule with checkpointable state.

    The paper (Sec. 4) starts at 1e-2 and divides by 10 "when the error
    plateaus", twice. The decision's state (decays so far, best validation
    error, epochs since it improved) lives in variables saved with the
    training checkpoint, so a resumed run continues the same schedule; the
    rate is recomputed from the (possibly changed) base rate of the current
    command. Updated once per epoch from the all-reduced validation error, so
    every worker takes the same decision.

    Args:
      base_rate: learning rate before any decay.
      kind: 'plateau' (decay when the validation error has not improved by
        `min_delta` for `patience` epochs) or 'step' (decay at the start of
        each epoch listed in `decay_epochs`, 0-based).
      factor: multiplier at each decay (0.1 in the paper).
      max_decays: at most this many decays (2 in the paper).
      patience, min_delta: plateau detection.
      decay_epochs: epochs at which the step schedule decays.

    Example:
      >>> s = LearningRateSchedule(0.01, kind="plateau", patience=1)
      >>> s.end_epoch(epoch=0, val_error=0.5); s.end_epoch(1, 0.5)
      True
      >>> s.rate()  # 0.001
    """

    def __init__(
        self,
        base_rate,
        *,
        kind="plateau",
        factor=0.1,
        max_decays=2,
        patience=3,
        min_delta=1e-3,
        decay_epochs=(),
    ):
        super().__init__(name="lr_schedule")
        if kind not in LR_SCHEDULES:
            raise ValueError(f"unknown lr schedule {kind!r}; choose from {', '.join(LR_SCHEDULES)}")
        self.base_rate, self.kind, self.factor = base_rate, kind, factor
        self.max_decays, self.patience, self.min_delta = max_decays, patience, min_delta
        self.decay_epochs = tuple(sorted(decay_epochs))
        self.decays = tf.Variable(0, dtype=tf.int64, trainable=False, name="decays")
        self.best_error = tf.Variable(
            float("inf"), dtype=tf.float64, trainable=False, name="best_error"
        )
        self.bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_epochs")

    def rate(self) -> float:
        return self.base_rate * self.factor ** int(self.decays.numpy())

    def end_epoch(self, epoch: int, val_error: float | None) -> bool:
        """Update the state after epoch `epoch` (0-based); True if it decayed."""
        if self.kind == "step":
            wanted = min(self.max_decays, sum(1 for e in self.decay_epochs if e <= epoch + 1))
            changed = wanted != int(self.decays.numpy())
            self.decays.assign(wanted)
            return changed
        if val_error is None:
            return False
        if val_error < float(self.best_error.numpy()) - self.min_delta:
            self.best_error.assign(val_error)
            self.bad_epochs.assign(0)
            return False
        self.bad_epochs.assign_add(1)
        if (
            int(self.bad_epochs.numpy()) >= self.patience
            and int(self.decays.numpy()) < self.max_decays
        ):
            self.decays.assign_add(1)
            self.bad_epochs.assign(0)
            return True
        return False


def for_config(cfg, model, steps_per_epoch):
    """The optimizer, its epoch-level schedule and the epoch's rate variable
    (read through the warm-up ramp every step) for `cfg`; built for `model`'s
    variables so that a restore fills their slots too. Call under the
    strategy's scope."""
    epoch_rate = tf.Variable(
        cfg.learning_rate, dtype=tf.float32, trainable=False, name="epoch_rate"
    )
    optimizer = CaffeSGD(
        WarmupRate(epoch_rate, round(cfg.warmup_epochs * steps_per_epoch)),
        momentum=cfg.momentum,
        l2_decay=cfg.weight_decay,
    )
    if cfg.mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    schedule = LearningRateSchedule(
        cfg.learning_rate,
        kind=cfg.lr_schedule,
        factor=cfg.lr_decay_factor,
        max_decays=cfg.lr_max_decays,
        patience=cfg.lr_plateau_patience,
        min_delta=cfg.lr_plateau_min_delta,
        decay_epochs=cfg.lr_decay_epochs,
    )
    return optimizer, schedule, epoch_rate
