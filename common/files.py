"""Files that appear whole, and the processes that own temporary ones.

Every file the project writes for a reader that may look at any moment
(TF Serving, a resumed run, TensorBoard) is written under a temporary name
and renamed into place, through `tf.io.gfile` so remote paths work too.
"""

import contextlib
import os
import uuid


@contextlib.contextmanager
def atomic_path(path, *, suffix=""):
    """Yields a temporary path next to `path` to write with any writer (a
    TFRecordWriter, Keras' `save`); on success it is renamed to `path`, on
    failure removed, so `path` appears whole or not at all.

    Args:
      path: a local or `tf.io.gfile` path (gs://...).
      suffix: kept at the end of the temporary name, for writers that insist
        on one (Keras: `.keras`).
    """
    import tensorflow as tf  # gfile: remote paths too; imported late, for fast --help

    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    # `.tmp` in the name marks it as ours for the clean-up after a kill.
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"
    try:
        yield tmp
        tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)


def atomic_write(path, data, *, mode="w"):
    """Writes `data` (str for mode "w", bytes for "wb") to `path` whole or not at all."""
    import tensorflow as tf

    with atomic_path(path) as tmp, tf.io.gfile.GFile(tmp, mode) as f:
        f.write(data)


def pid_alive(pid):
    """Whether process `pid` runs on this host: the owners of temporary
    directories and locks named after their process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
