"""A model_dir has one owner, a failed command never damages it, and killed
or failed writes leave nothing that stops the next run (issue 16).

Real runs: the binary in subprocesses (two trainers, SIGKILL, a full tmpfs)
and the library in-process where only the files matter.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from delving.training import config, loop, run_dir
from tests import train_testutil as util


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return util.tiny_data_dir(tmp_path_factory)


def _wait_for(proc, what, condition):
    deadline = time.time() + util.HANG_GUARD_S
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, f"no {what} appeared"
        time.sleep(0.05)


def test_second_trainer_refused_stale_lock_taken_over_leftovers_removed(data_dir, tmp_path):
    model_dir = tmp_path / "run"
    recipe = dict(
        util.TINY_RECIPE,
        data_dir=data_dir,
        model_dir=model_dir,
        epochs=1000,  # runs until killed
        checkpoint_every_steps=2,
    )
    first = util.start("delving.train", util.as_flags(**recipe))
    checkpoints = str(model_dir / "checkpoints")
    _wait_for(first, "checkpoint", lambda: tf.train.latest_checkpoint(checkpoints))
    config_text = (model_dir / "config.json").read_text()

    # A second trainer on the same directory: refused in one line naming the holder.
    code, _, err = util.run("delving.train", util.as_flags(**dict(recipe, seed=1)))
    assert code == 1
    lines = util.error_lines(err)
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
    (model_dir / "model.keras").write_bytes(b"PK\x03\x04 truncated")  # pre-issue-16 debris

    # The same command, finishing now (epochs=1: the checkpoint is past it).
    code, out, err = util.run("delving.train", util.as_flags(**dict(recipe, epochs=1)))
    assert code == 0, err[-3000:]
    assert "Resumed from" in out, out[-2000:]
    for path in leftovers:
        assert not path.exists(), path
    assert not (model_dir / "checkpoints" / "ckpt-999_temp").exists()
    assert not (model_dir / run_dir.LOCK_FILE).exists(), "released at the end"
    with zipfile.ZipFile(model_dir / "model.keras") as z:  # replaced whole
        assert z.testzip() is None
    assert not list(model_dir.glob("model.tmp-*"))


def test_failed_command_leaves_the_run_intact(data_dir, tmp_path):
    model_dir = tmp_path / "run"
    recipe = dict(util.TINY_RECIPE, data_dir=data_dir, model_dir=str(model_dir))
    loop.train(config.resolve_config(**recipe), verbose=0)
    classes = (model_dir / "classes.tsv").read_text()
    (model_dir / "config.json").unlink()
    before = sorted(p.name for p in model_dir.rglob("*"))

    # Another network's flags, with no config.json to catch them: the
    # checkpoint restore does, and nothing has been written yet.
    other = config.resolve_config(**dict(recipe, model="small_30"))
    with pytest.raises(loop.ConfigMismatch, match=r"holds checkpoints of a different network"):
        loop.train(other, verbose=0)
    assert sorted(p.name for p in model_dir.rglob("*")) == before
    assert (model_dir / "classes.tsv").read_text() == classes

    # A fresh directory that a failed command created is removed again.
    fresh = tmp_path / "fresh"
    with pytest.raises(loop.BatchSizeError):
        loop.train(
            config.resolve_config(**dict(recipe, model_dir=str(fresh), batch_size=3)),
            strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
            verbose=0,
        )
    assert not fresh.exists()

    # The original command still works.
    result = loop.train(config.resolve_config(**recipe), verbose=0)
    assert result.epoch == 1
    assert run_dir.load_config(str(model_dir / "config.json")).model == "small_14"


def test_resumed_epoch_carries_its_running_sums(data_dir, tmp_path):
    model_dir = tmp_path / "run"
    recipe = dict(
        util.TINY_RECIPE,
        data_dir=data_dir,
        model_dir=str(model_dir),
        steps_per_epoch=4,
        checkpoint_every_steps=2,
    )
    result = loop.train(config.resolve_config(**recipe), verbose=0)
    ckpt = model_dir / "checkpoints"
    mid, end = f"{ckpt}/ckpt-2", f"{ckpt}/ckpt-4"
    sums = tf.train.load_variable(mid, "epoch_sums/.ATTRIBUTES/VARIABLE_VALUE")
    batch = recipe["batch_size"]
    assert sums[3] == 2 * batch, sums  # two steps' images
    assert 0 < sums[0] / sums[3] < 20 and 0 <= sums[1] <= sums[3]
    np.testing.assert_array_equal(
        tf.train.load_variable(end, "epoch_sums/.ATTRIBUTES/VARIABLE_VALUE"), 0
    )

    # Resume from the mid-epoch checkpoint: the row averages all 4 steps, so
    # it holds the first two steps' sums (loss * images) exactly.
    index = "model_checkpoint_path"
    (ckpt / "checkpoint").write_text(f'{index}: "ckpt-2"\nall_{index}s: "ckpt-2"\n')
    for name in os.listdir(ckpt):
        if name.startswith("ckpt-4"):
            os.remove(ckpt / name)
    (model_dir / "training_log.csv").unlink()
    resumed = loop.train(config.resolve_config(**recipe), verbose=0)
    row = resumed.history[-1]
    final = tf.train.latest_checkpoint(str(ckpt))
    assert final.endswith("ckpt-4") and resumed.step == result.step == 4
    # The resumed steps' own mean is what is left after taking out ckpt-2's sums.
    own = (row["train_loss"] * 4 * batch - sums[0]) / (2 * batch)
    assert 0 < own < 20, (row, sums)
    assert row["train_loss"] == pytest.approx((sums[0] + own * 2 * batch) / (4 * batch))
    hits = (1 - row["train_top1_error"]) * 4 * batch
    assert hits >= sums[1] - 1e-6  # the first two steps' hits are counted


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare(1)")
def test_full_disk_is_one_line_and_the_run_resumes_after_freeing_space(data_dir, tmp_path):
    """A small tmpfs (in a private mount namespace) that fills up mid-run."""
    logs = tmp_path / "logs"
    logs.mkdir()
    mount = tmp_path / "small"
    mount.mkdir()
    args = " ".join(
        util.as_flags(
            **dict(
                util.TINY_RECIPE,
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
            cwd=util.ROOT,
            env=util.subprocess_env(),
            timeout=util.HANG_GUARD_S,
            capture_output=True,
        )
        if proc.returncode != 77 and (logs / "1.rc").exists():
            break
    else:
        pytest.skip("no tmpfs can be mounted here: " + proc.stderr.decode()[-300:])
    read = lambda name: (logs / name).read_text()  # noqa: E731
    assert read("1.rc").strip() == "0", read("1.err")[-3000:]
    assert read("2.rc").strip() == "1", read("2.err")[-3000:] + read("2.out")[-1000:]
    lines = util.error_lines(read("2.err"))
    assert len(lines) == 1 and "Traceback" not in read("2.err"), read("2.err")[-3000:]
    assert re.match(
        rf"delving\.train: error: cannot write {mount}/run\S*: no space left on device\. "
        rf"Last good checkpoint: {mount}/run/checkpoints/ckpt-3;",
        lines[0],
    ), lines[0]
    assert read("3.rc").strip() == "0", read("3.err")[-3000:]
    assert "Resumed from" in read("3.out") and "Epoch 2: train loss" in read("3.out")


def _kill_when(proc, condition, poll_s=0.002):
    """SIGKILLs `proc` as soon as `condition()` holds; False if it ended first."""
    deadline = time.time() + util.HANG_GUARD_S
    while proc.poll() is None and time.time() < deadline:
        if condition():
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            return True
        time.sleep(poll_s)
    proc.communicate()
    return False


# delving.train, killed by SIGKILL inside the final model.keras save: once
# Keras has written the temporary zip and before it is renamed into place.
# Deterministic, where polling for the temporary file from outside can miss
# a save of a few tens of milliseconds on a loaded machine.
_KILLED_IN_MODEL_SAVE = """
import os, runpy, signal, sys
import tensorflow as tf
rename = tf.io.gfile.rename
def killing_rename(src, dst, *args, **kwargs):
    if os.path.basename(src).startswith("model.keras.tmp-"):
        os.kill(os.getpid(), signal.SIGKILL)
    return rename(src, dst, *args, **kwargs)
tf.io.gfile.rename = killing_rename
sys.argv = ["delving.train", *sys.argv[1:]]
runpy.run_module("delving.train", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_kills_during_checkpoint_and_model_writes_lose_nothing(data_dir, tmp_path):
    model_dir = tmp_path / "run"
    args = util.as_flags(
        **dict(
            util.TINY_RECIPE,
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

    first = _kill_when(util.start("delving.train", args), checkpointing)
    assert first, "the run ended before any checkpoint was written"
    second = subprocess.run(
        [sys.executable, "-c", _KILLED_IN_MODEL_SAVE, *args],
        cwd=util.ROOT,
        env=util.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=util.HANG_GUARD_S,
    )
    assert second.returncode == -signal.SIGKILL, second.stderr[-3000:]
    assert list(model_dir.glob("model.keras.tmp-*.keras")), "killed inside the save"
    assert not (model_dir / "model.keras").exists(), "no half-written model.keras in place"
    latest = tf.train.latest_checkpoint(str(checkpoints))
    assert latest and latest.endswith(f"ckpt-{2 * 12}"), latest

    code, out, err = util.run("delving.train", args)
    assert code == 0, err[-3000:]
    assert "all 2 epochs already done" in out
    assert not run_dir.leftover_temporaries(str(model_dir))
    from delving.evaluation import validation

    model, _ = validation.load_model(str(model_dir))  # what evaluate and export read
    assert model.count_params() > 0


def test_lock_of_another_host_needs_force_a_dead_local_one_does_not(tmp_path):
    import json
    import socket

    model_dir = tmp_path / "run"
    model_dir.mkdir()
    lock_path = model_dir / run_dir.LOCK_FILE
    foreign = {"host": "elsewhere", "pid": os.getpid(), "started": "2026-01-01T00:00:00+00:00"}
    lock_path.write_text(json.dumps(foreign))
    with pytest.raises(run_dir.RunLocked, match=r"in use by pid \d+ on elsewhere since 2026"):
        run_dir.acquire(str(model_dir))
    with run_dir.acquire(str(model_dir), force=True):
        assert json.loads(lock_path.read_text())["pid"] == os.getpid()
    assert not lock_path.exists()

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
