"""delving.training.optimizer.CaffeSGD against Caffe's update rule, written in NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_layers
from delving.training import optimizer as optimizer_lib


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


def test_config_round_trip_and_refusals():
    optimizer = optimizer_lib.CaffeSGD(0.02, momentum=0.8, l2_decay=1e-4)
    clone = optimizer_lib.CaffeSGD.from_config(optimizer.get_config())
    assert (clone.l2_decay, clone.momentum) == (1e-4, 0.8)
    with pytest.raises(ValueError, match="l2_decay"):
        optimizer_lib.CaffeSGD(0.1, weight_decay=5e-4)
    with pytest.raises(ValueError, match="l2_decay"):
        optimizer_lib.CaffeSGD(0.1, l2_decay=-1.0)
