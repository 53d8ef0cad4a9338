"""delving.training.run_dir: a model_dir has one owner, and killed or failed
writes leave nothing that stops the next run.

Real runs: the binary in subprocesses (two trainers, SIGKILL, a full tmpfs)
and the library in-process where only the files matter.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile

import pytest
import tensorflow as tf

from delving.training import run_dir
from tests import train_testutil


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return train_testutil.tiny_data_dir(tmp_path_factory)


def _wait_for(proc, what, condition):
    deadline = time.time() + train_testutil.HANG_GUARD_S
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, f"no {what} appeared"
        time.sleep(0.05)


def test_second_trainer_refused_stale_lock_taken_over_leftovers_removed(data_dir, tmp_path):
    model_dir = tmp_path / "run"
    recipe = dict(
        train_testutil.TINY_RECIPE,
        data_dir=data_dir,
        model_dir=model_dir,
        epochs=1000,  # runs until killed
        checkpoint_every_steps=2,
    )
    first = train_testutil.start("delving.train", train_testutil.as_flags(**recipe))
    checkpoints = str(model_dir / "checkpoints")
    _wait_for(first, "checkpoint", lambda: tf.train.latest_checkpoint(checkpoints))
    config_text = (model_dir / "config.json").read_text()

    # A second trainer on the same directory: refused in one line naming the holder.
    code, _, err = train_testutil.run(
        "delving.train", train_testutil.as_flags(**dict(recipe, seed=1))
    )
    assert code == 1
    lines = train_testutil.error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert f"is in use by pid {first.pid} on " in lines[0], lines[0]
    assert "--force" in lines[0]
    assert first.poll() is None, "the holder keeps running"
    assert (model_dir / "config.json").read_text() == config_text

    # Killed: its lock is stale. Leave what killed writes leave behind.
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert (model_dir / run_dir.LOCK_FILE).exists()
    leftovers = [
        model_dir / "checkpoints" / "ckpt-999_temp" / "part-00000-of-00001.data-00000-of-00001",
        model_dir / "checkpoints" / "checkpoint.tmp0123456789abcdef",
        model_dir / "model.tmp-12345.keras",
        model_dir / "config.json.tmp",
        model_dir / "training_log.csv.tmp",
    ]
    for path in leftovers:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half written")
    (model_dir / "model.keras").write_bytes(b"PK\x03\x04 truncated")  # debris of a non-atomic write

    # The same command, finishing now (epochs=1: the checkpoint is past it).
    code, out, err = train_testutil.run(
        "delving.train", train_testutil.as_flags(**dict(recipe, epochs=1))
    )
    assert code == 0, err[-3000:]
    assert "Resumed from" in out, out[-2000:]
    for path in leftovers:
        assert not path.exists(), path
    assert not (model_dir / "checkpoints" / "ckpt-999_temp").exists()
    assert not (model_dir / run_dir.LOCK_FILE).exists(), "released at the end"
    with zipfile.ZipFile(model_dir / "model.keras") as z:  # replaced whole
        assert z.testzip() is None
    assert not list(model_dir.glob("model.tmp-*"))


@pytest.fixture(scope="module")
def full_disk(data_dir, tmp_path_factory):
    """A small tmpfs (in a private mount namespace) that fills up mid-run: one
    epoch, the next one on the full disk, then again once space is freed.
    Returns the mount point and read(name) of the runs' logs 1.*, 2.*, 3.*."""
    if not shutil.which("unshare"):
        pytest.skip("needs unshare(1)")
    tmp_path = tmp_path_factory.mktemp("full_disk")
    logs = tmp_path / "logs"
    logs.mkdir()
    mount = tmp_path / "small"
    mount.mkdir()
    args = " ".join(
        train_testutil.as_flags(
            **dict(
                train_testutil.TINY_RECIPE,
                data_dir=data_dir,
                model_dir=mount / "run",
                checkpoint_every_steps=1,
            )
        )
    )
    train = f"{sys.executable} -m delving.train {args}"
    script = f"""
set -u
mount -t tmpfs -o size=8m tmpfs {mount} || exit 77
{train} --epochs=1 > {logs}/1.out 2> {logs}/1.err; echo $? > {logs}/1.rc
# Fill all but 64 KiB: the next epoch's first checkpoint cannot be written.
free=$(df -k --output=avail {mount} | tail -1)
fallocate -l $(( (free - 64) * 1024 )) {mount}/filler
{train} --epochs=2 > {logs}/2.out 2> {logs}/2.err; echo $? > {logs}/2.rc
ls -R {mount}/run > {logs}/2.ls
rm {mount}/filler
{train} --epochs=2 > {logs}/3.out 2> {logs}/3.err; echo $? > {logs}/3.rc
"""
    for namespace in (["unshare", "-m"], ["unshare", "-rm"]):  # root, else a user namespace
        proc = subprocess.run(
            [*namespace, "sh", "-c", script],
            cwd=train_testutil.ROOT,
            env=train_testutil.subprocess_env(),
            timeout=train_testutil.HANG_GUARD_S,
            capture_output=True,
        )
        if proc.returncode != 77 and (logs / "1.rc").exists():
            break
    else:
        pytest.skip("no tmpfs can be mounted here: " + proc.stderr.decode()[-300:])
    read = lambda name: (logs / name).read_text()  # noqa: E731
    assert read("1.rc").strip() == "0", read("1.err")[-3000:]
    return mount, read


def test_full_disk_is_a_one_line_error_naming_the_last_good_checkpoint(full_disk):
    mount, read = full_disk
    assert read("2.rc").strip() == "1", read("2.err")[-3000:] + read("2.out")[-1000:]
    lines = train_testutil.error_lines(read("2.err"))
    assert len(lines) == 1 and "Traceback" not in read("2.err"), read("2.err")[-3000:]
    assert re.match(
        rf"delving\.train: error: cannot write {mount}/run\S*: no space left on device\. "
        rf"Last good checkpoint: {mount}/run/checkpoints/ckpt-3;",
        lines[0],
    ), lines[0]


def test_run_resumes_once_space_is_freed(full_disk):
    _, read = full_disk
    assert read("3.rc").strip() == "0", read("3.err")[-3000:]
    assert "Resumed from" in read("3.out") and "Epoch 2: train loss" in read("3.out")


def _kill_when(proc, condition, poll_s=0.002):
    """SIGKILLs `proc` as soon as `condition()` holds; False if it ended first."""
    deadline = time.time() + train_testutil.HANG_GUARD_S
    while proc.poll() is None and time.time() < deadline:
        if condition():
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            return True
        time.sleep(poll_s)
    proc.communicate()
    return False


# delving.train, killed by SIGKILL inside the final model.keras save.
KILLED_IN_MODEL_SAVE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "programs", "train_killed_in_model_save.py"
)


@pytest.mark.slow
def test_writes_killed_midway_lose_nothing(data_dir, tmp_path):
    model_dir = tmp_path / "run"
    args = train_testutil.as_flags(
        **dict(
            train_testutil.TINY_RECIPE,
            data_dir=data_dir,
            model_dir=model_dir,
            epochs=2,
            steps_per_epoch=12,
            checkpoint_every_steps=1,
        )
    )
    checkpoints = model_dir / "checkpoints"

    def checkpointing():
        # Mid-save if a poll sees TF's sharded save at work (ckpt-N_temp/,
        # then a merge); else as soon as the first checkpoint is complete.
        names = os.listdir(checkpoints) if checkpoints.is_dir() else []
        return any(n.endswith("_temp") or ".tmp" in n or n.endswith(".index") for n in names)

    first = _kill_when(train_testutil.start("delving.train", args), checkpointing)
    assert first, "the run ended before any checkpoint was written"
    second = subprocess.run(
        [sys.executable, KILLED_IN_MODEL_SAVE, *args],
        cwd=train_testutil.ROOT,
        env=train_testutil.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
    )
    assert second.returncode == -signal.SIGKILL, second.stderr[-3000:]
    assert list(model_dir.glob("model.keras.tmp-*.keras")), "killed inside the save"
    assert not (model_dir / "model.keras").exists(), "no half-written model.keras in place"
    latest = tf.train.latest_checkpoint(str(checkpoints))
    assert latest and latest.endswith(f"ckpt-{2 * 12}"), latest

    code, out, err = train_testutil.run("delving.train", args)
    assert code == 0, err[-3000:]
    assert "all 2 epochs already done" in out
    assert not run_dir.leftover_temporaries(str(model_dir))
    from delving.evaluation import validation

    model, _ = validation.load_model(str(model_dir))  # what evaluate and export read
    assert model.count_params() > 0


def _foreign_lock(model_dir):
    """A lock.json naming this process's pid on another host: its path and content."""
    lock_path = model_dir / run_dir.LOCK_FILE
    foreign = {"host": "elsewhere", "pid": os.getpid(), "started": "2026-01-01T00:00:00+00:00"}
    lock_path.write_text(json.dumps(foreign))
    return lock_path, foreign


def test_lock_of_another_host_needs_force(tmp_path):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    lock_path, _ = _foreign_lock(model_dir)
    with pytest.raises(run_dir.RunLocked, match=r"in use by pid \d+ on elsewhere since 2026"):
        run_dir.acquire(str(model_dir))
    with run_dir.acquire(str(model_dir), force=True):
        assert json.loads(lock_path.read_text())["pid"] == os.getpid()
    assert not lock_path.exists()


def test_lock_of_a_dead_local_process_is_taken_over(tmp_path):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    lock_path, foreign = _foreign_lock(model_dir)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], stdout=-1)
    stale = dict(foreign, host=socket.gethostname(), pid=int(dead.stdout))
    lock_path.write_text(json.dumps(stale))
    # A starter killed while writing its lock; one still writing (this process).
    killed_tmp = model_dir / f"{run_dir.LOCK_FILE}.tmp-{int(dead.stdout)}"
    live_tmp = model_dir / f"{run_dir.LOCK_FILE}.tmp-{os.getppid()}"
    killed_tmp.write_text("{}")
    live_tmp.write_text("{}")
    assert run_dir.leftover_temporaries(str(model_dir)) == [str(killed_tmp)]
    live_tmp.unlink()
    killed_tmp.unlink()
    with run_dir.acquire(str(model_dir)):  # no --force needed
        assert json.loads(lock_path.read_text())["pid"] == os.getpid()
        # Held by this (live) process now: another taker is refused.
        with pytest.raises(run_dir.RunLocked, match=f"in use by pid {os.getpid()}"):
            run_dir.acquire(str(model_dir))
    assert sorted(os.listdir(model_dir)) == []
