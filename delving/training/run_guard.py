"""One owner per model_dir, no leftovers, and write errors in one line.

`hold` wraps a training run: the lock, the clean-up of what killed writes
left behind, and disk full / permission errors turned into one line naming
the path and the last good checkpoint.

`model_dir/lock.json` names the owner (host, process id, start time). It is
written whole under a temporary name and hard-linked into place, so it
appears atomically and only one of two racing trainers gets it. A lock whose
process is gone (same host, no such pid) is stale and taken over at the next
start; a live one, or one from another host (whose processes cannot be
checked from here), refuses the run in one line naming the holder, unless
`force` (`delving.train --force`) takes it over.

Only the chief locks: the other workers of a multi-worker run write no
model_dir files but their private temporary checkpoints. Remote model_dirs
(`gs://...`) have no atomic create-if-absent through the file system and are
not locked.
"""

import contextlib
import datetime
import errno
import json
import os
import re
import socket

from common import files

LOCK_FILE = "lock.json"


class RunLocked(RuntimeError):
    """model_dir is held by another run; the message is one line."""


class WriteFailed(RuntimeError):
    """A disk full or a permission error while writing; the message is one line."""


def _read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None  # gone, or not ours: never half-written (linked whole)


def _describe(holder):
    if not holder:
        return "an unreadable lock"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"


def _stale(holder):
    return (
        holder is not None
        and holder.get("host") == socket.gethostname()
        and isinstance(holder.get("pid"), int)
        and not files.pid_alive(holder["pid"])
    )


class Lock:
    """A held lock; `release()` removes it (if it is still this process's)."""

    def __init__(self, path, info, created_dir):
        self.path, self.info, self.created_dir = path, info, created_dir

    def release(self):
        if self.path is None:
            return
        if _read(self.path) == self.info:
            os.remove(self.path)
        if self.created_dir:  # a run that wrote nothing leaves no empty directory
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self.path))
        self.path = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def acquire(model_dir, *, force=False) -> Lock:
    """Takes model_dir for this process.

    Args:
      model_dir: the run's directory (created if missing).
      force: take the lock over even from a live or foreign holder.

    Returns:
      A `Lock`; release it when the run ends.

    Raises:
      RunLocked: another run holds model_dir.
    """
    if "://" in str(model_dir):
        return Lock(None, None, False)
    created_dir = not os.path.isdir(model_dir)
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, LOCK_FILE)
    info = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(info, f)
    try:
        for _ in range(3):
            try:
                os.link(tmp, path)  # atomic, and fails if a lock exists
                return Lock(path, info, created_dir)
            except FileExistsError:
                pass
            holder = _read(path)
            if not (force or _stale(holder)):
                raise RunLocked(
                    f"--model_dir={model_dir} is in use by {_describe(holder)} ({path}); "
                    "wait for that run to end, or pass --force if it is gone"
                )
            _take_over(path, holder)
        raise RunLocked(f"--model_dir={model_dir}: could not take the lock {path}")
    finally:
        os.remove(tmp)


def _take_over(path, holder):
    """Moves the lock judged stale aside; puts it back if it changed meanwhile
    (another starter took it over first)."""
    aside = f"{path}.stale-{os.getpid()}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if _read(aside) != holder:
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    os.remove(aside)


def leftover_temporaries(model_dir):
    """Files and directories that killed writes leave in model_dir: the
    trainer's `*.tmp*` files, Keras saves in progress, TF's checkpoint
    shards (`ckpt-N_temp/`) and index files (`checkpoint.tmp...`)."""
    found = []
    for folder in (model_dir, os.path.join(model_dir, "checkpoints")):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            # A live worker's checkpoints; another starter's lock in the making
            # (`lock.json.tmp-<pid>`, `.stale-<pid>`) unless its process is gone.
            if name.startswith(".tmp_checkpoints_"):
                continue
            if name.startswith(LOCK_FILE):
                pid = name.rsplit("-", 1)[-1]
                if name == LOCK_FILE or not pid.isdigit() or files.pid_alive(int(pid)):
                    continue
                found.append(os.path.join(folder, name))
                continue
            if (
                ".tmp" in name
                or name.endswith("_temp")
                or (name.startswith("model.tmp-") and name.endswith(".keras"))
            ):
                found.append(os.path.join(folder, name))
    return sorted(found)


def remove_leftovers(model_dir):
    """Removes `leftover_temporaries` (call with the lock held); returns them."""
    import shutil

    found = leftover_temporaries(model_dir)
    for path in found:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    return found


_NO_SPACE = re.compile(r"no space left on device|disk quota exceeded", re.I)
_NO_PERMISSION = re.compile(r"permission denied|read-only file system", re.I)
_WRITE_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
}


def _write_error_text(e):
    """(what went wrong, path or None) for a disk full or permission error, else None."""
    if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
        return _WRITE_ERRNOS[e.errno], e.filename
    import tensorflow as tf

    if isinstance(e, tf.errors.OpError):
        text = e.message or ""
        match = _NO_SPACE.search(text) or _NO_PERMISSION.search(text)
        if match:
            # TF names the file first: "<path>; No space left on device".
            path = re.search(r"(/[^\s;:'\"]+)[;:'\"]?\s*(?:" + match.group(0) + ")", text)
            return match.group(0).lower(), path.group(1) if path else None
    return None


@contextlib.contextmanager
def hold(model_dir, *, owner, force=False):
    """The run's hold on model_dir: the owner (the chief) takes the lock and
    removes leftovers; a disk full or permission error becomes a one-line
    `WriteFailed`; the lock is released however the run ends.

    Raises:
      RunLocked: another run holds model_dir.
      WriteFailed: see above.
    """
    import tensorflow as tf

    lock = None
    try:
        if owner:
            lock = acquire(model_dir, force=force)
            remove_leftovers(model_dir)
        yield
    except (OSError, tf.errors.OpError) as e:
        found = _write_error_text(e)
        if found is None:
            raise
        what, path = found
        latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
        verb = "cannot write" if "space" in what or "quota" in what else "cannot access"
        raise WriteFailed(
            f"{verb} {path or model_dir}: {what}. "
            + (f"Last good checkpoint: {latest}" if latest else "No checkpoint was saved")
            + "; make room (or fix the permissions) and rerun the same command to resume"
        ) from None
    finally:
        if lock is not None:
            lock.release()
