"""A scheduler's SIGTERM or a Ctrl-C, sent to a real `delving.train` process:
it stops at the next step, checkpoints that step, releases the run directory
and exits 143 / 130 with one line; the rerun resumes from that step and loses
nothing (tests/programs/train_signalled.py sends the signal from inside the
real binary at a chosen point of the run)."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from delving.training import run_dir
from tests import train_testutil

PROGRAM = os.path.join(train_testutil.ROOT, "tests", "programs", "train_signalled.py")
EPOCHS, STEPS = 2, 6


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return train_testutil.tiny_data_dir(tmp_path_factory)


def _args(data_dir, model_dir, **extra):
    recipe = dict(
        train_testutil.TINY_RECIPE,
        data_dir=data_dir,
        model_dir=model_dir,
        epochs=EPOCHS,
        steps_per_epoch=STEPS,
        checkpoint_every_steps=4,
        log_every_steps=1000,
    )
    recipe.update(extra)
    return train_testutil.as_flags(**recipe)


def _signalled(point, signame, args):
    return subprocess.run(
        [sys.executable, PROGRAM, point, signame, *args],
        cwd=train_testutil.ROOT,
        env=train_testutil.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
    )


def _stopped_line(result):
    lines = train_testutil.error_lines(result.stderr)
    assert lines and lines[-1].startswith("delving.train: SIG"), result.stderr[-3000:]
    return lines[-1]


def _resume_and_finish(args, model_dir, stopped_at, steps=STEPS):
    code, out, err = train_testutil.run("delving.train", args)
    assert code == 0, err[-3000:]
    if stopped_at:
        assert f"ckpt-{stopped_at}: step {stopped_at}" in out, out
    history = run_dir.read_history(str(model_dir))
    assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))
    assert history[-1]["step"] == EPOCHS * steps
    assert not (model_dir / run_dir.LOCK_FILE).exists()


@pytest.mark.slow
def test_sigterm_mid_epoch_stops_between_two_steps_of_one_call(data_dir, tmp_path):
    # One call of the compiled step runs a whole epoch here (no log or
    # checkpoint boundary inside it): the stop still lands on a step boundary.
    model_dir = tmp_path / "run"
    args = _args(data_dir, model_dir, steps_per_epoch=4000, checkpoint_every_steps=10000, epochs=1)
    result = _signalled("mid-epoch", "TERM", args)
    assert result.returncode == 143, result.stderr[-3000:]
    line = _stopped_line(result)
    step = int(re.search(r"stopped at step (\d+) \(epoch 1, \d+ of 4000 steps", line).group(1))
    assert 1 < step < 4000, line
    assert line.endswith("rerun the same command to resume"), line
    assert (model_dir / "checkpoints" / f"ckpt-{step}.index").exists()
    assert not (model_dir / run_dir.LOCK_FILE).exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "point", ["start-up", "mid-epoch", "checkpoint", "evaluation", "final-save"]
)
def test_preemption_drill_resumes_from_the_interrupted_step(point, data_dir, tmp_path):
    model_dir = tmp_path / "run"
    # Mid-epoch: an epoch long enough that the timer's signal, 0.5 s into the
    # training (about 10 steps of 50 ms on a quiet 2-core host), lands inside it.
    steps = 120 if point == "mid-epoch" else STEPS
    args = _args(data_dir, model_dir, steps_per_epoch=steps)
    result = _signalled(point, "TERM", args)
    assert not (model_dir / run_dir.LOCK_FILE).exists(), "the lock is released"
    if point == "final-save":  # everything was done: the save completes
        assert result.returncode == 0, result.stderr[-3000:]
        assert (model_dir / "model.keras").exists()
        _resume_and_finish(args, model_dir, None)
        return
    assert result.returncode == 143, result.stderr[-3000:]
    line = _stopped_line(result)
    if point == "start-up":
        assert "nothing written" in line, line
        assert not (model_dir / "checkpoints").exists()
        _resume_and_finish(args, model_dir, None)
        return
    stopped_at = int(re.search(r"stopped at step (\d+)", line).group(1))
    if point == "mid-epoch":
        assert "steps into it" in line, line
    assert re.search(rf"saved \S+ckpt-{stopped_at};", line), line
    _resume_and_finish(args, model_dir, stopped_at, steps)


@pytest.mark.slow
def test_sigint_exits_130(data_dir, tmp_path):
    model_dir = tmp_path / "run"
    result = _signalled("checkpoint", "INT", _args(data_dir, model_dir))
    assert result.returncode == 130, result.stderr[-3000:]
    assert _stopped_line(result).startswith("delving.train: SIGINT: stopped at step")


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_every_worker_at_one_step(data_dir, tmp_path):
    model_dir = tmp_path / "mw"
    ports = train_testutil.free_ports(2)
    args = train_testutil.as_flags(
        **dict(
            train_testutil.TINY_RECIPE,
            data_dir=data_dir,
            model_dir=model_dir,
            strategy="multi_worker",
            steps_per_epoch=100000,
            checkpoint_every_steps=50,
            log_every_steps=10,
        )
    )
    workers = [
        train_testutil.start("delving.train", args, TF_CONFIG=train_testutil.tf_config(ports, i))
        for i in range(2)
    ]
    checkpoints = model_dir / "checkpoints"
    while not (checkpoints.is_dir() and list(checkpoints.glob("*.index"))):
        assert all(w.poll() is None for w in workers), workers[0].communicate()[1][-3000:]
        time.sleep(0.5)
    workers[1].send_signal(signal.SIGTERM)  # the non-chief: the chief hears it through TF
    outputs = [w.communicate(timeout=train_testutil.HANG_GUARD_S) for w in workers]
    lines = []
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 143, err[-3000:]
        # Ours, wherever it is: TensorFlow's coordination service may log its
        # own shutdown after it on a loaded host.
        ours = [l for l in train_testutil.error_lines(err) if "stopped at step" in l]
        assert ours, err[-3000:]
        lines.append(ours[-1])
    steps = {int(re.search(r"stopped at step (\d+)", line).group(1)) for line in lines}
    assert len(steps) == 1, lines
    assert (checkpoints / f"ckpt-{steps.pop()}.index").exists(), lines
    assert not (model_dir / run_dir.LOCK_FILE).exists()
