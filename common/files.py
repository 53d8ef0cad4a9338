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


def process_identity(pid):
    """(boot id, start time in clock ticks) of process `pid`, from /proc; None
    where unknown. A pid can be reused by a later process (a restarted
    container's entrypoint is pid 1 again): the pair cannot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        with open(f"/proc/{pid}/stat") as f:
            # Field 22 (starttime); the name in parentheses may hold spaces.
            start = int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    return [boot, start]


def process_alive(pid, identity=None):
    """Whether the process that was `pid` (with `process_identity` `identity`,
    when recorded) still runs on this host."""
    if not pid_alive(pid):
        return False
    if identity is None:
        return True
    now = process_identity(pid)
    return now is None or list(now) == list(identity)
