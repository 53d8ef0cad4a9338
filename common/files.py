"""Files that appear whole, and the processes that own temporary ones.

Every file the project writes for a reader that may look at any moment
(TF Serving, a resumed run, TensorBoard) is written under a temporary name
and renamed into place, through `tf.io.gfile` so remote paths work too.
"""

import os


def atomic_write(path, data, *, mode="w"):
    """Writes `data` to `path` whole or not at all (temporary name, then rename).

    Args:
      path: a local or `tf.io.gfile` path (gs://...).
      data: str for mode "w", bytes for "wb".
      mode: "w" or "wb".
    """
    import tensorflow as tf  # gfile: remote paths too; imported late, for fast --help

    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    tmp = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(tmp, mode) as f:
        f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)


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
