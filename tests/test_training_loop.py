"""The trainer runs several steps per tf.function call, up to the next log or
checkpoint boundary: checkpoints, step counts, metrics and the NaN stop are
those of a step-by-step loop."""

import re

import numpy as np
import pytest
import tensorflow as tf

from delving.training import config, loop
from tests import train_testutil as util


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return util.tiny_data_dir(tmp_path_factory)


def test_boundaries_split_the_epoch_into_calls():
    # From step 0, 7 steps left, log every 5, checkpoint every 3: 3, 2, 1, 1.
    calls, step, left = [], 0, 7
    while left:
        n = loop._steps_to_boundary(step, left, 5, 3)
        calls.append(n)
        step, left = step + n, left - n
    assert calls == [3, 2, 1, 1]


def test_checkpoints_and_metrics_with_several_steps_per_call(data_dir, tmp_path):
    model_dir = tmp_path / "run"
    recipe = dict(
        util.TINY_RECIPE,
        data_dir=data_dir,
        model_dir=str(model_dir),
        steps_per_epoch=7,
        log_every_steps=5,
        checkpoint_every_steps=3,
        keep_checkpoints=10,
    )
    result = loop.train(config.resolve_config(**recipe), verbose=0)
    assert result.step == 7 and result.epoch == 1
    state = tf.train.get_checkpoint_state(str(model_dir / "checkpoints"))
    steps = [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths]
    assert steps == [3, 6, 7]  # every 3 steps mid-epoch, then the epoch's end
    for path in state.all_model_checkpoint_paths:
        iterations = [
            tf.train.load_variable(path, n)
            for n, _ in tf.train.list_variables(path)
            if n.startswith("optimizer/") and "iterations" in n
        ]
        assert int(iterations[0]) == int(path.rsplit("-", 1)[1])
    row = result.history[-1]
    assert np.isfinite(row["train_loss"]) and 0 <= row["train_top1_error"] <= 1
    assert row["images_per_sec"] > 0


def test_nan_inside_a_call_names_its_step_and_saves_nothing(data_dir, tmp_path):
    recipe = dict(
        util.TINY_RECIPE,
        data_dir=data_dir,
        model_dir=str(tmp_path / "run"),
        steps_per_epoch=6,
        log_every_steps=100,
        checkpoint_every_steps=100,
        learning_rate=1e9,
    )
    with pytest.raises(loop.TrainingDiverged) as error:
        loop.train(config.resolve_config(**recipe), verbose=0)
    # One call of 6 steps; step 1's loss is finite (taken before any update).
    match = re.match(r"loss became (nan|inf) at step (\d+) \(epoch 1\)", str(error.value))
    assert match and 2 <= int(match.group(2)) <= 6, str(error.value)
    assert "No checkpoint was saved" in str(error.value)
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")) is None
