"""delving.training.optimizer: CaffeSGD against Caffe's update rule, written in
NumPy; the learning-rate warm-up, alone and in a run resumed across it; the
plateau and step schedules."""

import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_layers
from delving.training import config, loop
from delving.training import optimizer as optimizer_lib
from tests import train_testutil


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return train_testutil.tiny_data_dir(tmp_path_factory)


def _model():
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, bias_initializer="ones"), keras_layers.PReLU()]
    )


def _caffe_reference(weights, grads, lr, momentum, wd, decayed, steps):
    """v <- momentum * v - lr * (g + wd * W); W <- W + v (wd only where decayed)."""
    weights = [w.astype("float64") for w in weights]
    velocity = [np.zeros_like(w) for w in weights]
    for _ in range(steps):
        for i, (w, g) in enumerate(zip(weights, grads)):
            decay = wd * w if decayed[i] else 0.0
            velocity[i] = momentum * velocity[i] - lr * (g + decay)
            weights[i] = w + velocity[i]
    return weights


@pytest.mark.parametrize("momentum, loss_scaled", [(0.9, False), (0.0, False), (0.9, True)])
def test_update_is_caffes_sgd_with_decay_on_kernels_only(momentum, loss_scaled):
    """Also wrapped for float16 training: the decay applies to unscaled gradients."""
    model = _model()
    variables = model.trainable_variables
    assert [v.path.split("/")[-1] for v in variables] == ["kernel", "bias", "alpha"]
    assert [optimizer_lib.is_decayed(v) for v in variables] == [True, False, False]
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(v.shape).astype("float32") for v in variables]
    before = [v.numpy() for v in variables]
    optimizer = optimizer_lib.CaffeSGD(0.1, momentum=momentum, l2_decay=0.05)
    applied = grads
    if loss_scaled:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=1024.0)
        applied = [g * 1024.0 for g in grads]
    optimizer.build(variables)
    step = tf.function(lambda: optimizer.apply_gradients(zip(applied, variables)))
    for _ in range(3):
        step()
    want = _caffe_reference(before, grads, 0.1, momentum, 0.05, [True, False, False], 3)
    for v, w in zip(variables, want):
        np.testing.assert_allclose(v.numpy(), w, rtol=1e-5, atol=1e-6, err_msg=v.path)


def _two_steps(strategy, grads):
    """Weights before and after two updates; `grads(ctx)` gives a replica's."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = _model()
        optimizer = optimizer_lib.CaffeSGD(0.1, momentum=0.9, l2_decay=0.05)
        optimizer.build(model.trainable_variables)
    values = strategy.experimental_distribute_values_from_function(grads)

    @tf.function
    def step():
        strategy.run(
            lambda parts: optimizer.apply_gradients(zip(parts, model.trainable_variables)),
            args=(values,),
        )

    start = [v.numpy() for v in model.trainable_variables]
    step()
    step()
    return start, [v.numpy() for v in model.trainable_variables]


def test_mirrored_update_equals_one_device():
    """Per-replica gradients summed by the all-reduce, decay added once."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2, "conftest.py should set up two logical CPUs"
    rng = np.random.default_rng(1)
    halves = [[rng.standard_normal(s).astype("float32") for s in ((3, 4), (4,), (4,))]]
    halves.append([rng.standard_normal(g.shape).astype("float32") for g in halves[0]])
    summed = [a + b for a, b in zip(*halves)]
    start, one = _two_steps(tf.distribute.OneDeviceStrategy(devices[0]), lambda ctx: summed)
    _, two = _two_steps(
        tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
        ),
        lambda ctx: halves[ctx.replica_id_in_sync_group],
    )
    want = _caffe_reference(start, summed, 0.1, 0.9, 0.05, [True, False, False], 2)
    for a, b, w in zip(one, two, want):
        np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, w, rtol=1e-5, atol=1e-6)


def test_config_round_trip():
    optimizer = optimizer_lib.CaffeSGD(0.02, momentum=0.8, l2_decay=1e-4)
    clone = optimizer_lib.CaffeSGD.from_config(optimizer.get_config())
    assert (clone.l2_decay, clone.momentum) == (1e-4, 0.8)


def test_keras_weight_decay_is_refused_for_l2_decay():
    with pytest.raises(ValueError, match="l2_decay"):
        optimizer_lib.CaffeSGD(0.1, weight_decay=5e-4)


def test_a_negative_l2_decay_is_refused():
    with pytest.raises(ValueError, match="l2_decay"):
        optimizer_lib.CaffeSGD(0.1, l2_decay=-1.0)


# --- Learning-rate schedules


def test_warmup_ramps_linearly_then_holds_the_epoch_rate():
    epoch_rate = tf.Variable(0.08)
    ramp = optimizer_lib.WarmupRate(epoch_rate, warmup_steps=4)
    got = [float(ramp(tf.constant(step, tf.int64))) for step in range(6)]
    assert got == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.08, 0.08])
    epoch_rate.assign(0.008)  # a decay takes effect at once, ramp or not
    assert float(ramp(tf.constant(1, tf.int64))) == pytest.approx(0.004)
    assert float(ramp(tf.constant(9, tf.int64))) == pytest.approx(0.008)
    assert float(
        optimizer_lib.WarmupRate(epoch_rate, 0)(tf.constant(0, tf.int64))
    ) == pytest.approx(0.008)


def _logged_rates(model_dir):
    with open(os.path.join(model_dir, "training_log.csv")) as f:
        return [float(row["learning_rate"]) for row in csv.DictReader(f)]


def test_training_follows_the_ramp_across_a_resume(data_dir, tmp_path):
    """3 steps an epoch, warm-up over 2 epochs (6 steps); the log holds the rate after each."""
    recipe = dict(
        train_testutil.TINY_RECIPE, data_dir=data_dir, model_dir=str(tmp_path), warmup_epochs=2
    )
    loop.train(config.resolve_config(**recipe), verbose=0)
    # After 3 steps the optimizer's next rate is the 4th of 6: 4/6 of the base rate.
    assert _logged_rates(tmp_path) == pytest.approx([0.01 * 4 / 6])
    # Resumed for a second and third epoch: the ramp continues from the checkpoint, then holds.
    loop.train(config.resolve_config(**dict(recipe, epochs=3)), verbose=0)
    assert _logged_rates(tmp_path) == pytest.approx([0.01 * 4 / 6, 0.01, 0.01])


def test_plateau_schedule_divides_by_ten_twice():
    s = optimizer_lib.LearningRateSchedule(0.01, kind="plateau", patience=2, min_delta=0.0)
    errors = [0.9, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    rates = []
    for epoch, err in enumerate(errors):
        s.end_epoch(epoch, err)
        rates.append(round(s.rate(), 8))
    assert rates == [0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.0001, 0.0001, 0.0001, 0.0001, 0.0001]


def test_step_schedule_divides_by_ten_at_its_epochs():
    s = optimizer_lib.LearningRateSchedule(0.1, kind="step", decay_epochs=(2, 4))
    rates = []
    for epoch in range(6):
        rates.append(round(s.rate(), 8))
        s.end_epoch(epoch, None)
    assert rates == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
