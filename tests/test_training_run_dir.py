"""delving.training.run_dir: a model_dir has one owner, and killed or failed
writes leave nothing that stops the next run.

Real runs: the binary in subprocesses (two trainers, SIGKILL, a full tmpfs)
and the library in-process where only the files matter.

The lock against what clusters and users really do (reused pids, a lock left
by this very process, another host's stale lock, --force against a live run,
user files in --model_dir); runs made by earlier versions resume (the run
directory is a stable format: tests/data/run_made_before_regrouping is a
2-step run of the tiny recipe written by the last version with the flat
`delving` package); a resume with another --mixed_precision is refused."""

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

import numpy as np
import pytest
import tensorflow as tf

from common import files
from delving.training import config, loop, run_dir
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


def _write_lock(model_dir, **holder):
    model_dir.mkdir(parents=True, exist_ok=True)
    info = {"host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00", **holder}
    (model_dir / run_dir.LOCK_FILE).write_text(json.dumps(info))


def test_a_reused_pid_does_not_keep_a_dead_runs_lock(tmp_path):
    # The lock's pid is alive (this test), but it started another process then.
    boot, start = files.process_identity(os.getpid())
    _write_lock(tmp_path, pid=os.getpid(), process=[boot, start + 1])
    with run_dir.acquire(str(tmp_path)) as lock:
        assert lock.info["pid"] == os.getpid()


def test_a_lock_this_process_left_is_not_a_rival(tmp_path):
    # A restarted container's entrypoint: same pid as the lock's holder, and
    # no live Lock of its own on the directory.
    _write_lock(tmp_path, pid=os.getpid(), process=files.process_identity(os.getpid()))
    with run_dir.acquire(str(tmp_path)):
        pass


def test_a_held_lock_refuses_a_second_acquire_in_the_same_process(tmp_path):
    with run_dir.acquire(str(tmp_path)), pytest.raises(run_dir.RunLocked, match="still running"):
        run_dir.acquire(str(tmp_path))


def test_another_hosts_lock_is_taken_over_once_its_lease_expired(tmp_path):
    _write_lock(tmp_path, host="elsewhere", pid=1)
    lock_path = tmp_path / run_dir.LOCK_FILE
    with pytest.raises(run_dir.RunLocked, match=r"refreshed \d+ s ago"):
        run_dir.acquire(str(tmp_path))
    old = time.time() - run_dir.LOCK_LEASE_S - 60
    os.utime(lock_path, (old, old))
    with run_dir.acquire(str(tmp_path)) as lock:
        assert lock.info["host"] == socket.gethostname()


def test_the_live_holder_refreshes_its_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(run_dir, "LOCK_REFRESH_S", 0.05)
    with run_dir.acquire(str(tmp_path)):
        old = time.time() - 3600
        os.utime(tmp_path / run_dir.LOCK_FILE, (old, old))
        deadline = time.monotonic() + 600  # a guard only: the refresh comes in 0.05 s
        while run_dir._refreshed_s_ago(str(tmp_path / run_dir.LOCK_FILE)) > 60:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_cleanup_removes_only_what_the_project_wrote(tmp_path):
    ours = [
        "config.json.tmp-7-0123abcd",
        "model.keras.tmp-7-0123abcd.keras",
        "checkpoints/ckpt-3_temp/part-00000-of-00001.data-00000-of-00001",
        "checkpoints/checkpoint.tmp0123456789abcdef",
    ]
    users = ["notes.tmp", "report.tmpl", "project_temp/data.csv", "checkpoints/mine_temp/x"]
    for name in ours + users:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    run_dir.remove_leftovers(str(tmp_path))
    assert [n for n in ours if (tmp_path / n).exists()] == []
    assert [n for n in users if not (tmp_path / n).exists()] == []


@pytest.mark.slow
def test_force_never_takes_a_live_local_runs_directory(data_dir, tmp_path):
    model_dir = tmp_path / "run"
    recipe = dict(
        train_testutil.TINY_RECIPE, data_dir=data_dir, model_dir=model_dir, steps_per_epoch=100000
    )
    holder = train_testutil.start("delving.train", train_testutil.as_flags(**recipe))
    try:
        lock_path = model_dir / run_dir.LOCK_FILE
        while not lock_path.exists():  # the holder is up once its lock is
            assert holder.poll() is None, holder.communicate()[1][-3000:]
            time.sleep(0.2)
        code, _, err = train_testutil.run(
            "delving.train", train_testutil.as_flags(**recipe) + ["--force"]
        )
        lines = train_testutil.error_lines(err)
        assert code == 1 and len(lines) == 1, err[-3000:]
        assert f"pid {holder.pid}" in lines[0] and "still running" in lines[0], lines[0]
        assert holder.poll() is None, "the holder keeps running"
        assert json.loads(lock_path.read_text())["pid"] == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()


def test_user_files_in_model_dir_survive_a_run(data_dir, tmp_path):
    model_dir = tmp_path / "run"
    users = ["notes.tmp", "report.tmpl", "project_temp/data.csv"]
    for name in users:
        (model_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / name).write_text("mine")
    code, _, err = train_testutil.run(
        "delving.train",
        train_testutil.as_flags(
            **train_testutil.TINY_RECIPE, data_dir=data_dir, model_dir=model_dir
        ),
    )
    assert code == 0, err[-3000:]
    assert all((model_dir / n).read_text() == "mine" for n in users)


OLD_RUN = os.path.join(train_testutil.ROOT, "tests", "data", "run_made_before_regrouping")


def _old_run(tmp_path):
    model_dir = tmp_path / "run"
    shutil.copytree(OLD_RUN, model_dir)
    return str(model_dir)


def _recipe(model_dir, data_dir):
    old = run_dir.load_config(os.path.join(model_dir, "config.json"))
    fields = {k: getattr(old, k) for k in train_testutil.TINY_RECIPE if k != "preset"}
    fields.update(
        epochs=2, checkpoint_every_steps=1, keep_checkpoints=1, in_memory=False, cache_data=False
    )
    return config.resolve_config(preset="builtin", data_dir=data_dir, model_dir=model_dir, **fields)


def test_old_config_json_loads(tmp_path):
    cfg = run_dir.load_config(os.path.join(_old_run(tmp_path), "config.json"))
    assert (cfg.model, cfg.width_multiplier, cfg.steps_per_epoch) == ("small_14", 0.125, 2)


def test_old_run_resumes_from_its_last_step(tmp_path, tmp_path_factory):
    model_dir = _old_run(tmp_path)
    before = run_dir.read_history(model_dir)
    result = loop.train(
        _recipe(model_dir, train_testutil.tiny_data_dir(tmp_path_factory)), verbose=0
    )
    assert (result.step, result.epoch) == (4, 2)  # 2 old steps + the 2 of epoch 2
    history = run_dir.read_history(model_dir)
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[0] == before[0]


def test_old_checkpoint_restores_its_weights(tmp_path, tmp_path_factory):
    model_dir = _old_run(tmp_path)
    cfg = _recipe(model_dir, train_testutil.tiny_data_dir(tmp_path_factory))
    result = loop.train(config.resolve_config(**{**vars(cfg), "epochs": 1}), verbose=0)
    assert result.step == 2  # nothing left to train: the state is the restored one
    reader = tf.train.load_checkpoint(os.path.join(OLD_RUN, "checkpoints", "ckpt-2"))
    stored = [reader.get_tensor(k) for k in reader.get_variable_to_shape_map()]
    kernel = next(w for w in result.model.weights if w.path.endswith("conv1/kernel")).numpy()
    assert any(np.shape(t) == kernel.shape and np.array_equal(t, kernel) for t in stored)


def test_resuming_with_another_mixed_precision_is_refused(tmp_path, tmp_path_factory):
    model_dir = tmp_path / "run"
    recipe = dict(
        train_testutil.TINY_RECIPE,
        data_dir=train_testutil.tiny_data_dir(tmp_path_factory),
        model_dir=str(model_dir),
    )
    loop.train(config.resolve_config(**recipe), verbose=0)
    before = sorted(p.name for p in model_dir.rglob("*"))
    other = config.resolve_config(**dict(recipe, epochs=2, mixed_precision="float16"))
    with pytest.raises(run_dir.ConfigMismatch, match=r"--mixed_precision=none \(asked float16\)"):
        loop.train(other, verbose=0)
    assert sorted(p.name for p in model_dir.rglob("*")) == before
