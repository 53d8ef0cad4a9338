"""The built-in recipe's pieces: the learning-rate warm-up and per-model preset values."""

import csv
import os

import pytest
import tensorflow as tf

from delving.training import config, loop
from delving.training.optimizer import WarmupRate
from tests import train_testutil as util


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return util.tiny_data_dir(tmp_path_factory)


def test_warmup_ramps_linearly_then_holds_the_epoch_rate():
    epoch_rate = tf.Variable(0.08)
    ramp = WarmupRate(epoch_rate, warmup_steps=4)
    got = [float(ramp(tf.constant(step, tf.int64))) for step in range(6)]
    assert got == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.08, 0.08])
    epoch_rate.assign(0.008)  # a decay takes effect at once, ramp or not
    assert float(ramp(tf.constant(1, tf.int64))) == pytest.approx(0.004)
    assert float(ramp(tf.constant(9, tf.int64))) == pytest.approx(0.008)
    assert float(WarmupRate(epoch_rate, 0)(tf.constant(0, tf.int64))) == pytest.approx(0.008)


def _logged_rates(model_dir):
    with open(os.path.join(model_dir, "training_log.csv")) as f:
        return [float(row["learning_rate"]) for row in csv.DictReader(f)]


def test_training_follows_the_ramp_across_a_resume(data_dir, tmp_path):
    """3 steps an epoch, warm-up over 2 epochs (6 steps); the log holds the rate after each."""
    recipe = dict(util.TINY_RECIPE, data_dir=data_dir, model_dir=str(tmp_path), warmup_epochs=2)
    loop.train(config.resolve_config(**recipe), verbose=0)
    # After 3 steps the optimizer's next rate is the 4th of 6: 4/6 of the base rate.
    assert _logged_rates(tmp_path) == pytest.approx([0.01 * 4 / 6])
    # Resumed for a second and third epoch: the ramp continues from the checkpoint, then holds.
    loop.train(config.resolve_config(**dict(recipe, epochs=3)), verbose=0)
    assert _logged_rates(tmp_path) == pytest.approx([0.01 * 4 / 6, 0.01, 0.01])


def test_per_model_preset_values_apply_unless_given(monkeypatch):
    monkeypatch.setitem(
        config.MODEL_OVERRIDES, "builtin", {"small_30": dict(learning_rate=0.123, epochs=7)}
    )
    deep = config.resolve_config(model="small_30")
    assert (deep.learning_rate, deep.epochs) == (0.123, 7)
    assert config.resolve_config(model="small_30", epochs=3).epochs == 3  # given wins
    assert config.resolve_config().learning_rate == config.PRESETS["builtin"]["learning_rate"]
    # Another preset's runs are untouched.
    assert config.resolve_config(data_dir="/d", model="small_30").learning_rate == 1e-2


def test_warmup_is_validated():
    with pytest.raises(ValueError, match="--warmup_epochs=-1"):
        config.resolve_config(warmup_epochs=-1.0)
