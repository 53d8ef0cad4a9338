"""exclude_prelu_from_weight_decay: the paper never decays the PReLU slopes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_layers


def _model():
    inner = keras.Sequential(
        [keras.layers.Dense(3), keras_layers.PReLU(channel_shared=True)], name="inner"
    )
    inputs = keras.Input((6, 6, 2))
    y = keras.layers.Conv2D(4, 3)(inputs)
    y = keras_layers.PReLU()(y)
    y = keras.layers.PReLU(shared_axes=[1, 2])(y)  # Keras' own PReLU is excluded too
    y = keras_layers.SpatialPyramidPooling((2, 1))(y)
    return keras.Model(inputs, inner(y))  # a nested model


def _zero_gradient_step(optimizer, model):
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    grads = [keras.ops.zeros_like(v) for v in model.trainable_variables]
    optimizer.apply(grads, model.trainable_variables)
    return before, {v.path: v.numpy() for v in model.trainable_variables}


OPTIMIZERS = [
    lambda: keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.5),
    lambda: keras.optimizers.AdamW(0.1, weight_decay=0.5),
    lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1, weight_decay=0.5)),
]


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS)
def test_returns_every_prelu_slope(make_optimizer):
    model = _model()
    excluded = keras_layers.exclude_prelu_from_weight_decay(make_optimizer(), model)
    slopes = [v for v in model.trainable_variables if v.name == "alpha"]
    assert len(slopes) == 3 and {id(v) for v in excluded} == {id(v) for v in slopes}


def _excluded_zero_gradient_step(make_optimizer):
    model = _model()
    optimizer = make_optimizer()
    keras_layers.exclude_prelu_from_weight_decay(optimizer, model)
    return _zero_gradient_step(optimizer, model)


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS)
def test_zero_gradient_step_keeps_the_slopes(make_optimizer):
    before, after = _excluded_zero_gradient_step(make_optimizer)
    for path, value in after.items():
        if path.endswith("alpha"):
            np.testing.assert_array_equal(value, before[path])


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS)
def test_zero_gradient_step_still_decays_the_kernels(make_optimizer):
    before, after = _excluded_zero_gradient_step(make_optimizer)
    for path, value in after.items():
        if path.endswith("kernel"):
            # Decoupled decay: w -= lr * wd * w, i.e. a factor 1 - 0.05.
            np.testing.assert_allclose(value, 0.95 * before[path], rtol=1e-5)


def test_without_exclusion_the_slopes_decay():
    model = _model()
    before, after = _zero_gradient_step(keras.optimizers.SGD(0.1, weight_decay=0.5), model)
    alpha = [p for p in after if p.endswith("alpha")][0]
    np.testing.assert_allclose(after[alpha], 0.95 * before[alpha], rtol=1e-5)


def test_earlier_exclusions_are_kept():
    model = _model()
    optimizer = keras.optimizers.SGD(0.1, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    keras_layers.exclude_prelu_from_weight_decay(optimizer, model)
    model.layers[1].bias.assign(np.ones(4, "float32"))
    _, after = _zero_gradient_step(optimizer, model)
    np.testing.assert_array_equal(after[model.layers[1].bias.path], np.ones(4))


def _assert_slopes_kept_kernels_decayed(before, after):
    for path, value in after.items():
        if path.endswith("alpha"):
            np.testing.assert_array_equal(value, before[path])
        elif path.endswith("kernel"):
            np.testing.assert_allclose(value, 0.95 * before[path], rtol=1e-5)


def test_exclusion_works_on_a_reloaded_optimizer(tmp_path):
    """Keras saves no exclusions: the loaded (built) optimizer would decay
    every slope again; excluding them on it works and keeps them."""
    model = _model()
    optimizer = keras.optimizers.SGD(0.1, weight_decay=0.5)
    keras_layers.exclude_prelu_from_weight_decay(optimizer, model)
    model.compile(optimizer, "mse")
    model.fit(np.zeros((2, 6, 6, 2)), np.zeros((2, 3)), verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.optimizer.built
    excluded = keras_layers.exclude_prelu_from_weight_decay(loaded.optimizer, loaded)
    assert len(excluded) == 3
    _assert_slopes_kept_kernels_decayed(*_zero_gradient_step(loaded.optimizer, loaded))


def test_without_weight_decay_nothing_is_excluded():
    model = _model()
    assert keras_layers.exclude_prelu_from_weight_decay(keras.optimizers.SGD(0.1), model) == []


def test_a_built_optimizer_is_accepted():
    model = _model()
    built = keras.optimizers.SGD(0.1, weight_decay=0.5)
    built.build(model.trainable_variables)
    keras_layers.exclude_prelu_from_weight_decay(built, model)
    _assert_slopes_kept_kernels_decayed(*_zero_gradient_step(built, model))


def test_an_unbuilt_model_is_refused():
    unbuilt = keras.Sequential([keras.layers.Dense(2), keras_layers.PReLU()])
    with pytest.raises(ValueError, match="build the model"):
        keras_layers.exclude_prelu_from_weight_decay(
            keras.optimizers.SGD(0.1, weight_decay=0.5), unbuilt
        )


def test_mirrored_slopes_are_excluded():
    # ReductionToOneDevice: no collective ops, whose instance keys can clash
    # with another MirroredStrategy created earlier in the same test process.
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    with strategy.scope():
        model = _model()
        optimizer = keras.optimizers.SGD(0.1, weight_decay=0.5)
        keras_layers.exclude_prelu_from_weight_decay(optimizer, model)
        optimizer.build(model.trainable_variables)
    variables = model.trainable_variables
    assert isinstance(variables[0].value, tf.distribute.DistributedValues)
    before = {v.path: v.numpy().copy() for v in variables}

    @tf.function
    def zero_gradient_step():
        optimizer.apply([tf.zeros_like(v) for v in variables], variables)

    strategy.run(zero_gradient_step)
    _assert_slopes_kept_kernels_decayed(before, {v.path: v.numpy() for v in variables})
