"""The run directory: its files, its lock, its checkpoints, write errors in one line.

```
model_dir/
  config.json          the resolved TrainConfig (`save_config` / `load_config`)
  classes.tsv          index<TAB>synset<TAB>name, one line per class, in label order
  lock.json            the live run's owner: host, pid, start time
  checkpoints/         tf.train.CheckpointManager (model, optimizer, step, epoch,
                       epoch_step, epoch_sums, lr_schedule)
  logs/                TensorBoard: the run's hyperparameters (HPARAMS tab);
    train/, validation/  losses, errors, learning rate, PReLU slopes per epoch
                       (`delving.training.summaries` lists the tags)
  training_log.csv     one row per epoch
  model.keras          the final model
```

Training opens the directory once, with `open_run`, after a set-up that wrote
nothing: lock, remove what killed writes left, check again that it holds the
same network, restore the latest checkpoint, and only then write config.json
and classes.tsv. A command that fails before that leaves the run as it was.

The lock is written whole under a temporary name and hard-linked into place,
so only one of two racing trainers gets it. It names its process by host, pid
and the pid's start time (pids are reused: a restarted container's
entrypoint is pid 1 again), and the live run refreshes its time every
`LOCK_REFRESH_S`. A lock is stale, and taken over, when its process is gone
from this host or, from another host, when it was not refreshed for
`LOCK_LEASE_S`; this very process is never its own rival. A live holder
refuses the run in one line; `force` takes over only from another host's
holder (whose process cannot be checked from here), never from a live run on
this one. Remote model_dirs (`gs://...`) have no atomic create-if-absent and
are not locked.

Checkpoints: every worker of a multi-worker run takes part in a save, only the
chief's copy is kept (the others write to a private directory deleted right
after, TF's documented pattern), and every worker restores from the chief's.
The input iterator is not saved (an ImageNet shuffle buffer would add about a
gigabyte per checkpoint): a resumed epoch continues on a fresh shuffle. Only the
chief writes the other files.
"""

import contextlib
import csv
import datetime
import errno
import io
import json
import os
import re
import shutil
import socket
import threading
import time

import tensorflow as tf
from tensorboard.summary import v2 as tb_summary

from common import files
from delving.training import config as config_lib

LOCK_FILE = "lock.json"
LOCK_REFRESH_S = 60
LOCK_LEASE_S = 10 * LOCK_REFRESH_S
HISTORY_FIELDS = (
    "epoch",
    "step",
    "learning_rate",
    "train_loss",
    "train_top1_error",
    "train_top5_error",
    "val_loss",
    "val_top1_error",
    "val_top5_error",
    "images_per_sec",
)


class ConfigMismatch(ValueError):
    """model_dir holds a run of a different network."""


class RunLocked(RuntimeError):
    """model_dir is held by another run; the message is one line."""


class WriteFailed(RuntimeError):
    """A disk full or a permission error while writing; the message is one line."""


def paths(model_dir):
    j = lambda name: os.path.join(model_dir, name)  # noqa: E731
    return {
        "config": j("config.json"),
        "classes": j("classes.tsv"),
        "checkpoints": j("checkpoints"),
        "tensorboard": j("logs"),
        "csv_log": j("training_log.csv"),
        "model": j("model.keras"),
    }


# ------------------------------------------------------------- config and classes
def save_config(cfg, path):
    files.atomic_write(path, config_lib.to_json(cfg))


def load_config(path):
    with tf.io.gfile.GFile(path) as f:
        return config_lib.from_json(f.read())


def check_compatible(cfg):
    """A one-line `ConfigMismatch` if model_dir is a file or holds another network."""
    if tf.io.gfile.exists(cfg.model_dir) and not tf.io.gfile.isdir(cfg.model_dir):
        raise ConfigMismatch(f"--model_dir={cfg.model_dir} is a file, not a directory")
    path = paths(cfg.model_dir)["config"]
    if not tf.io.gfile.exists(path):
        return
    old = load_config(path)
    if old.mixed_precision != cfg.mixed_precision:  # float16 checkpoints a loss scale too
        raise ConfigMismatch(
            f"--model_dir={cfg.model_dir} was trained with --mixed_precision="
            f"{old.mixed_precision} (asked {cfg.mixed_precision}); resume with the same "
            "--mixed_precision or use another --model_dir"
        )
    diff = config_lib.architecture_diff(old, cfg)
    if diff:
        what = ", ".join(f"{k}={old!r} (asked {new!r})" for k, (old, new) in diff.items())
        raise ConfigMismatch(
            f"--model_dir={cfg.model_dir} holds a run with {what}; "
            "use another --model_dir or the same flags to resume"
        )


def write_classes(model_dir, classes):
    """classes.tsv: `index<TAB>synset<TAB>name`, one line per class."""
    lines = [f"{c.index}\t{c.synset}\t{c.name}" for c in classes]
    files.atomic_write(paths(model_dir)["classes"], "\n".join(lines) + "\n")


def read_classes(model_dir):
    """[(index, synset, name)] from classes.tsv."""
    with tf.io.gfile.GFile(paths(model_dir)["classes"]) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    return [(int(r[0]), r[1], r[2] if len(r) > 2 else "") for r in rows]


def read_history(model_dir):
    """Rows of training_log.csv as dicts of numbers ([] when absent)."""
    path = paths(model_dir)["csv_log"]
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        rows = list(csv.DictReader(f))
    return [
        {k: (int(v) if k in ("epoch", "step") else float(v)) for k, v in row.items()}
        for row in rows
    ]


# ----------------------------------------------------------------------- the lock
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


def _local_and_alive(holder):
    """(on this host, its process still runs) for a lock's holder."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False, False
    identity = holder.get("process")
    if holder["pid"] == os.getpid() and identity == files.process_identity(os.getpid()):
        # This very process: a rival only while one of its `Lock`s holds it.
        return True, any(lock.info == holder for lock in _HELD)
    return True, files.process_alive(holder["pid"], identity)


def _refreshed_s_ago(path):
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return 0.0


_HELD = set()  # this process's live `Lock`s


class Lock:
    """A held lock, refreshed every `LOCK_REFRESH_S` by a daemon thread;
    `release()` removes it (if it is still this process's)."""

    def __init__(self, path, info, created_dir):
        self.path, self.info, self.created_dir = path, info, created_dir
        self._released = threading.Event()
        if path is not None:
            _HELD.add(self)
            threading.Thread(target=self._refresh, name="lock-refresh", daemon=True).start()

    def _refresh(self):
        while not self._released.wait(LOCK_REFRESH_S):
            if _read(self.path) != self.info:
                return  # taken over: not ours to refresh
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self):
        self._released.set()
        _HELD.discard(self)
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
    """Takes model_dir for this process (created if missing).

    Raises:
      RunLocked: a live run holds it (`force` takes over from another host's).
    """
    if "://" in str(model_dir):
        return Lock(None, None, False)
    created_dir = not os.path.isdir(model_dir)
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, LOCK_FILE)
    info = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process": files.process_identity(os.getpid()),
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
            _check_takeover(model_dir, path, holder, force)
            _take_over(path, holder)
        raise RunLocked(f"--model_dir={model_dir}: could not take the lock {path}")
    finally:
        os.remove(tmp)


def _check_takeover(model_dir, path, holder, force):
    """Returns when `holder`'s lock may be taken over, else raises `RunLocked`."""
    if holder is None:  # unreadable: not ours to judge, unless forced
        if force:
            return
        raise RunLocked(
            f"--model_dir={model_dir} holds an unreadable lock {path}; "
            "pass --force if no run uses it"
        )
    local, alive = _local_and_alive(holder)
    if local and not alive:
        return
    if local:
        raise RunLocked(
            f"--model_dir={model_dir} is in use by {_describe(holder)}, which is still "
            f"running ({path}); wait for it to end or stop it (kill {holder['pid']}): "
            "--force never shares a run directory with a live run on this host"
        )
    age = _refreshed_s_ago(path)
    if force or age > LOCK_LEASE_S:
        return
    raise RunLocked(
        f"--model_dir={model_dir} is in use by {_describe(holder)} ({path}, refreshed "
        f"{age:.0f} s ago); it is taken over once {LOCK_LEASE_S} s pass without a refresh, "
        "or now with --force if that run is gone"
    )


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


# What this project's writers and TensorFlow's checkpoint writer leave when
# killed, by exact name; anything else in model_dir belongs to the user.
_OURS = "|".join(re.escape(name) for name in ("config.json", "classes.tsv", "training_log.csv"))
_LEFTOVERS = {
    "": re.compile(
        rf"(?:{_OURS}|model\.keras)\.tmp-\d+-[0-9a-f]{{8}}(?:\.keras)?"
        rf"|(?:{_OURS})\.tmp|model\.tmp-\d+\.keras"  # earlier versions' names
        rf"|{re.escape(LOCK_FILE)}\.(?:tmp|stale)-(?P<lock_pid>\d+)"
    ),
    "checkpoints": re.compile(r"ckpt-\d+_temp(?:_[0-9a-f]+)?|checkpoint\.tmp[0-9a-f]+"),
}


def leftover_temporaries(model_dir):
    """What killed writes of this project (or of TF's checkpointing) left in
    model_dir, known by name. Call with the lock held: then no other process
    writes these files, but a starter racing for the lock may be making its
    `lock.json.tmp-<pid>`, which stays while that process lives."""
    found = []
    for sub, pattern in _LEFTOVERS.items():
        folder = os.path.join(model_dir, sub) if sub else model_dir
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            match = pattern.fullmatch(name)
            if not match:
                continue
            pid = match.groupdict().get("lock_pid")
            if pid and int(pid) != os.getpid() and files.pid_alive(int(pid)):
                continue
            found.append(os.path.join(folder, name))
    return sorted(found)


def remove_leftovers(model_dir):
    """Removes `leftover_temporaries` (call with the lock held); returns them."""
    found = leftover_temporaries(model_dir)
    for path in found:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    return found


# ------------------------------------------------------------ write errors
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
    if isinstance(e, tf.errors.OpError):
        text = e.message or ""
        match = _NO_SPACE.search(text) or _NO_PERMISSION.search(text)
        if match:
            # TF names the file first: "<path>; No space left on device".
            path = re.search(r"(/[^\s;:'\"]+)[;:'\"]?\s*(?:" + match.group(0) + ")", text)
            return match.group(0).lower(), path.group(1) if path else None
    return None


# ---------------------------------------------------------------- the open run


class RunDir:
    """An open run directory: checkpoints, TensorBoard and the CSV log.

    Args:
      model_dir: the run's directory.
      chief: whether this process writes the files (the others write only
        their private temporary checkpoints).
      task: (task type, task id) of this worker, for that private directory.
      keep: checkpoints kept.
      state: the `setup.TrainState` a checkpoint holds.
    """

    def __init__(self, model_dir, *, chief, task, keep, state):
        self.model_dir, self.chief = model_dir, chief
        self.paths = paths(model_dir)
        self.history = []  # training_log.csv's rows, read by `open_run`
        # The names every run's checkpoints have used: old runs resume.
        self.checkpoint = tf.train.Checkpoint(
            model=state.model,
            optimizer=state.optimizer,
            lr_schedule=state.schedule,
            step=state.step,
            epoch=state.epoch,
            epoch_step=state.epoch_step,
            epoch_sums=state.epoch_sums,
        )
        directory = self.paths["checkpoints"]
        self._write_dir = (
            directory if chief else os.path.join(model_dir, ".tmp_checkpoints_{}_{}".format(*task))
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, self._write_dir, keep)
        self._writers = {}  # made at the first write: a refused restore writes nothing

    def latest(self):
        return tf.train.latest_checkpoint(self.paths["checkpoints"])

    def restore(self):
        """Restores the latest checkpoint (None if none); one of another network
        is a one-line `ConfigMismatch`."""
        path = self.latest()
        if not path:
            return None
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigMismatch(
                f"--model_dir={self.model_dir} holds checkpoints of a different network "
                f"({first[:200]}); use another --model_dir or the flags that run was trained with"
            ) from None
        return path

    def save(self, step):
        path = self.manager.save(checkpoint_number=step)
        if not self.chief:
            tf.io.gfile.rmtree(self._write_dir)
            path = os.path.join(self.paths["checkpoints"], os.path.basename(path))
        return path

    def writer(self, kind):
        """The TensorBoard writer of logs/<kind> (train, validation; "" for
        logs/ itself); a no-op writer off the chief."""
        if kind not in self._writers:
            self._writers[kind] = (
                tf.summary.create_file_writer(os.path.join(self.paths["tensorboard"], kind))
                if self.chief
                else tf.summary.create_noop_writer()
            )
        return self._writers[kind]

    def write_scalars(self, kind, step, scalars):
        """TensorBoard scalars under logs/<kind> (kind: train or validation)."""
        writer = self.writer(kind)
        with writer.as_default(step=step):
            for name, value in scalars.items():
                tb_summary.scalar(name.replace("/", "_per_"), float(value))
        writer.flush()

    def write_history(self, rows):
        """Rewrites training_log.csv (a resumed epoch replaces its old row)."""
        if not self.chief:
            return
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=HISTORY_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in HISTORY_FIELDS})
        files.atomic_write(self.paths["csv_log"], out.getvalue())

    def save_model(self, model):
        """model.keras, whole (Keras writes the zip in place)."""
        if not self.chief:
            return
        with files.atomic_path(self.paths["model"], suffix=".keras") as tmp:
            model.save(tmp)


@contextlib.contextmanager
def open_run(cfg, classes, state, *, chief, task, force=False):
    """Takes the run directory for this run and yields `(RunDir, restored)`:
    the path of the restored checkpoint or None; `RunDir.history` holds the
    training_log.csv rows so far.

    The chief locks, removes leftovers, checks the network again (now as the
    owner), restores the latest checkpoint (every worker), and only then
    writes config.json and classes.tsv. A disk full or permission error
    inside becomes a one-line `WriteFailed` naming the last good checkpoint;
    the lock is released however the run ends.

    Raises:
      RunLocked, WriteFailed, ConfigMismatch: see above.
    """
    lock = None
    try:
        if chief:
            lock = acquire(cfg.model_dir, force=force)
            remove_leftovers(cfg.model_dir)
            check_compatible(cfg)
        run = RunDir(cfg.model_dir, chief=chief, task=task, keep=cfg.keep_checkpoints, state=state)
        restored = run.restore()
        run.history = read_history(cfg.model_dir)
        if chief:  # every check passed: only now is anything written
            save_config(cfg, run.paths["config"])
            write_classes(cfg.model_dir, classes)
        yield run, restored
    except (OSError, tf.errors.OpError) as e:
        found = _write_error_text(e)
        if found is None:
            raise
        what, path = found
        latest = tf.train.latest_checkpoint(paths(cfg.model_dir)["checkpoints"])
        verb = "cannot write" if "space" in what or "quota" in what else "cannot access"
        raise WriteFailed(
            f"{verb} {path or cfg.model_dir}: {what}. "
            + (f"Last good checkpoint: {latest}" if latest else "No checkpoint was saved")
            + "; make room (or fix the permissions) and rerun the same command to resume"
        ) from None
    finally:
        if lock is not None:
            lock.release()
