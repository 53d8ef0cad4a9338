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
"""

import tensorflow as tf

from delving.config import LR_SCHEDULES


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
