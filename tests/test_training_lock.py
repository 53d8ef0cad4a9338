"""delving.training.run_dir's lock and clean-up against what clusters and users
really do: reused pids, a lock left by this very process, another host's
stale lock, --force against a live run, and user files in --model_dir."""

import json
import os
import signal
import socket
import time

import pytest

from common import files
from delving.training import run_dir
from tests import train_testutil


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


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return train_testutil.tiny_data_dir(tmp_path_factory)


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
