"""Step-level checkpoints in `model_dir/checkpoints`, safe under any strategy.

A `tf.train.CheckpointManager` writes each checkpoint to temporary files,
renames them into place and only then rewrites the `checkpoint` index file
(atomically), so a process killed during a save leaves the previous latest
checkpoint as the one `latest_checkpoint` returns.

Under `MultiWorkerMirroredStrategy` every worker must take part in a save,
but only the chief's copy is kept: the others write to a private temporary
directory that is deleted right after (TF's documented pattern). Every worker
restores from the chief's directory, so for multi-worker resume the model_dir
must be storage all workers see (a shared file system or `gs://`).

What is saved: whatever trackables the trainer passes (model, optimizer with
its momentum slots, step/epoch counters, learning-rate schedule state). The
input iterator is not: an ImageNet shuffle buffer would add about a gigabyte
to every checkpoint. A resumed run instead starts the remaining steps of its
epoch on a freshly seeded shuffle (see `delving.training.loop`).
"""

import os

import tensorflow as tf

from delving.training import distribute


class Checkpointer:
    """Save and restore the training state of one model_dir.

    Args:
      model_dir: the run's directory; checkpoints go to `model_dir/checkpoints`.
      strategy: the training strategy (decides who is chief).
      keep: how many recent checkpoints to keep.
      **trackables: what to save, e.g. `model=..., optimizer=..., step=...`.
    """

    def __init__(self, model_dir, strategy, *, keep=3, **trackables):
        self.directory = os.path.join(model_dir, "checkpoints")
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.is_chief = distribute.is_chief(strategy)
        if self.is_chief:
            write_dir = self.directory
        else:
            task_type, task_id = distribute.task_info(strategy)
            write_dir = os.path.join(model_dir, f".tmp_checkpoints_{task_type}_{task_id}")
        self._write_dir = write_dir
        self.manager = tf.train.CheckpointManager(self.checkpoint, write_dir, max_to_keep=keep)

    def latest(self) -> str | None:
        return tf.train.latest_checkpoint(self.directory)

    def restore(self, path: str | None = None) -> str | None:
        """Restore `path` (default: the latest); returns what was restored."""
        path = path or self.latest()
        if path:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        return path

    def save(self, step: int) -> str:
        path = self.manager.save(checkpoint_number=step)
        if not self.is_chief:
            tf.io.gfile.rmtree(self._write_dir)
            path = os.path.join(self.directory, os.path.basename(path))
        return path
