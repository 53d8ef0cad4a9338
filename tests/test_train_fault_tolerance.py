"""Interrupted training resumes mid-epoch; a NaN loss stops with a good checkpoint.

Both with the real binary in a subprocess: a SIGKILL (no chance to clean up)
while it trains, then the same command again.
"""

import csv
import re
import shutil
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

from delving.training import config, loop
from tests import train_testutil as util


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return util.tiny_data_dir(tmp_path_factory)


def _latest_step(checkpoint_dir):
    path = tf.train.latest_checkpoint(str(checkpoint_dir))
    return int(path.rsplit("-", 1)[1]) if path else 0


def _iterations(checkpoint_path):
    """The optimizer's step counter stored in a checkpoint."""
    names = [
        n
        for n, _ in tf.train.list_variables(checkpoint_path)
        if n.startswith("optimizer/") and "iterations" in n
    ]
    assert names, tf.train.list_variables(checkpoint_path)
    return int(tf.train.load_variable(checkpoint_path, names[0]))


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch(data_dir, tmp_path):
    steps, every = 40, 4
    model_dir = tmp_path / "run"
    args = util.as_flags(
        **dict(
            util.TINY_RECIPE,
            data_dir=data_dir,
            model_dir=model_dir,
            epochs=2,
            steps_per_epoch=steps,
            checkpoint_every_steps=every,
        )
    )
    proc = util.start("delving.train", args)
    deadline = time.time() + util.HANG_GUARD_S
    while _latest_step(model_dir / "checkpoints") < 2 * every:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_at = _latest_step(model_dir / "checkpoints")
    assert 2 * every <= killed_at < steps, "the kill should land mid-epoch 1"

    code, out, err = util.run("delving.train", args)
    assert code == 0, err[-3000:]
    resumed = re.search(r"Resumed from \S+: step (\d+), epoch (\d+), (\d+) steps into", out)
    assert resumed, out[-2000:]
    step, epoch, into = map(int, resumed.groups())
    assert step >= killed_at and step % every == 0 and step < steps
    assert (epoch, into) == (1, step)
    # Every step done exactly once more: the counters end at 2 epochs.
    final = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert final.endswith(f"ckpt-{2 * steps}")
    assert _iterations(final) == 2 * steps
    with open(model_dir / "training_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], r["step"]) for r in rows] == [("1", str(steps)), ("2", str(2 * steps))]
    assert (model_dir / "model.keras").exists()


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path):
    model_dir = tmp_path / "run"
    recipe = dict(util.TINY_RECIPE, data_dir=data_dir, model_dir=str(model_dir))
    good = loop.train(config.resolve_config(**recipe), verbose=0)
    good_ckpt = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert good_ckpt.endswith(f"ckpt-{good.step}")

    # Same run, one more epoch, with an absurd learning rate.
    args = util.as_flags(**dict(recipe, epochs=2, learning_rate=1e9))
    code, out, err = util.run("delving.train", args)
    assert code != 0
    lines = util.error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert re.match(
        r"delving\.train: error: (loss became (nan|inf)|weights became "
        r"NaN/Inf) at step \d+",
        lines[0],
    ), lines[0]
    assert good_ckpt in lines[0]
    # The latest checkpoint is still the good one, and it restores finite.
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")) == good_ckpt
    for name, _ in tf.train.list_variables(good_ckpt):
        if name.startswith("lr_schedule/best_error"):
            continue  # inf until a plateau schedule has seen an epoch (the preset steps)
        value = tf.train.load_variable(good_ckpt, name)
        if np.asarray(value).dtype.kind == "f":
            assert np.all(np.isfinite(value)), name
    shutil.rmtree(model_dir)
