"""Shared pieces of the training/evaluation tests: tiny data, tiny recipes.

The tiny dataset is the real built-in generator at a toy size (real JPEG
records in the ImageNet schema), generated once per pytest session under its
base temporary directory. The tiny recipe keeps every network small enough
that a training step takes milliseconds on a CPU.
"""

import contextlib
import fcntl
import json
import os
import pty
import socket
import subprocess
import sys

from pipelines import builtin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Every wait on a subprocess: only a guard against a hung process, never a
#: limit that TensorFlow's start-up on a loaded machine (minutes) can reach.
HANG_GUARD_S = 1800

# 2 train shards (one per worker in the multi-worker test), 2 validation.
TINY_SPLITS = (("train", 96, 2), ("validation", 40, 2))

TINY_RECIPE = dict(
    preset="builtin",
    model="small_14",
    width_multiplier=0.125,
    fc_units=16,
    image_size=32,
    scale_range=(36, 48),
    eval_resize=36,
    batch_size=8,
    learning_rate=0.01,
    epochs=1,
    steps_per_epoch=3,
    eval_steps=2,
    log_every_steps=1,
)


@contextlib.contextmanager
def once_per_run(tmp_path_factory, name):
    """A directory `name` that this run's pytest-xdist workers share, held under a lock.

    Session fixtures run once per xdist worker (pytest-dev/pytest-xdist#271);
    a fixture that fills this directory and writes a marker last is built by
    the first worker, the others wait on the lock and read it.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this run's own base directory, one per run
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield root / name


def tiny_data_dir(tmp_path_factory):
    """The session's tiny built-in dataset (generated on first use)."""
    return builtin.ensure_dataset(
        str(tmp_path_factory.getbasetemp() / "tiny_builtin"),
        splits=TINY_SPLITS,
        size_range=(40, 56),
    )


def as_flags(**values):
    """`--name=value` arguments; tuples become comma-separated lists."""
    out = []
    for name, value in values.items():
        if isinstance(value, (tuple, list)):
            value = ",".join(map(str, value))
        elif isinstance(value, bool):
            out.append(f"--{name}" if value else f"--no{name}")
            continue
        out.append(f"--{name}={value}")
    return out


def subprocess_env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env


def start(module, args, **env):
    """Starts `python -m module args...` in the repo root; returns the Popen."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=subprocess_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(module, args, timeout=HANG_GUARD_S, **env):
    """Runs to completion: (returncode, stdout, stderr)."""
    proc = start(module, args, **env)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def tf_config(ports, index):
    return json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


def error_lines(stderr):
    """Non-empty stderr lines but absl's flag-error hint. TensorFlow's start-up
    notices are not filtered here: the binaries must not print them at all
    (`common.quiet_start`)."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("Pass --helpshort")
    ]


def run_on_terminal(args):
    """(exit status, output) of `python args...` with stdout and stderr on one
    pseudo-terminal, as a user at a shell sees it."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    code = proc.wait(timeout=HANG_GUARD_S)
    return code, b"".join(chunks).decode(errors="replace")
