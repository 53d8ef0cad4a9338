"""Learning-rate schedules of the paper: /10 on a plateau, or /10 at epochs.

The paper (Sec. 4) starts at 1e-2 and divides by 10 "when the error
plateaus", twice (1e-2, 1e-3, 1e-4). `LearningRateSchedule` keeps the state
of that decision in variables -- number of decays so far, best validation
error, epochs since it improved -- so that it is saved in the training
checkpoint and a resumed run continues the same schedule. The rate itself is
`learning_rate * factor ** decays`, recomputed from the (possibly changed)
base rate of the current command.

The state is updated once per epoch, on the host, from the validation top-1
error; every worker of a multi-worker run sees the same (all-reduced) error
and so takes the same decision.

`WarmupRate` is what the optimizer reads at every step: the epoch's rate,
ramped up linearly over the first `warmup_steps` steps of the run. The paper
has no warm-up; the built-in preset uses a short one because plain SGD on
its small, BN-free nets otherwise diverges in the first steps at the rates
that train them fastest (docs/RECIPE_SWEEPS.md).
"""

import keras
import tensorflow as tf

from delving.training.config import LR_SCHEDULES


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
