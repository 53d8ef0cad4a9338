"""Keep weight decay off the PReLU slopes (He et al. 2015, Sec. 2.1)."""

import keras

from keras_layers.prelu import PReLU


def _prelu_slopes(model):
    """Every PReLU slope variable in `model`, nested models and layers included."""
    slopes, seen = [], set()
    # `_flatten_layers` walks nested models *and* layers tracked as attributes
    # of subclassed layers, which `model.layers` (top level only) misses.
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, (PReLU, keras.layers.PReLU)) and layer.built:
            for variable in layer.trainable_variables:
                if id(variable) not in seen:
                    seen.add(id(variable))
                    slopes.append(variable)
    return slopes


def exclude_prelu_from_weight_decay(optimizer, model):
    """Excludes every PReLU slope of `model` from the optimizer's weight decay.

    The paper never decays the PReLU coefficients: decay pulls them to 0, i.e.
    back to ReLU (Sec. 2.1). Keras 3 optimizers apply `weight_decay` to every
    variable unless told otherwise; this tells them, through
    `optimizer.exclude_from_weight_decay(var_list=...)`. Both
    `keras_layers.PReLU` and `keras.layers.PReLU` slopes are excluded.

    Call it after the model is built and before the optimizer is (i.e. before
    the first training step or `optimizer.build`). Exclusions made earlier on
    the same optimizer (variables or name patterns) are kept. A
    `LossScaleOptimizer` (mixed precision) is handled through its inner
    optimizer. With no `weight_decay` set, nothing needs excluding.

    Args:
        optimizer: a `keras.optimizers.Optimizer`.
        model: a built `keras.Model` (or layer) containing PReLU layers.

    Returns:
        The list of excluded slope variables (empty if the optimizer has no
        weight decay).

    Raises:
        ValueError: if the model is not built or the optimizer already is.

    Example:

    >>> opt = keras.optimizers.SGD(0.01, momentum=0.9, weight_decay=5e-4)
    >>> exclude_prelu_from_weight_decay(opt, model)
    >>> model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    """
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:  # LossScaleOptimizer delegates the update, decay included.
        return exclude_prelu_from_weight_decay(inner, model)
    if not getattr(optimizer, "weight_decay", None):
        return []
    if not model.built:
        raise ValueError(
            "exclude_prelu_from_weight_decay: build the model first (call it on "
            "data or an Input) so that its PReLU slopes exist."
        )
    if getattr(optimizer, "built", False):
        raise ValueError(
            "exclude_prelu_from_weight_decay: the optimizer is already built; call "
            "this before the first training step (or before optimizer.build)."
        )
    slopes = _prelu_slopes(model)
    # exclude_from_weight_decay() replaces earlier exclusions; keep them.
    previous = set(getattr(optimizer, "_exclude_from_weight_decay", set()))
    pattern = getattr(optimizer, "_exclude_from_weight_decay_pattern", None)
    optimizer.exclude_from_weight_decay(var_list=slopes)
    optimizer._exclude_from_weight_decay |= previous
    optimizer._exclude_from_weight_decay_pattern = pattern
    return slopes
