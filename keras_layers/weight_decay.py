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

    Call it after the model is built and before the first training step is
    traced. The optimizer may already be built: a model loaded from a
    `.keras` file comes back with a built optimizer whose exclusions were not
    saved (Keras does not serialize them), so call this again after
    `keras.saving.load_model`, before training on. Exclusions made earlier on
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
        ValueError: if the model is not built.

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
    slopes = _prelu_slopes(model)
    # What `optimizer.exclude_from_weight_decay(var_list=...)` records, added
    # to earlier exclusions (that call replaces them, and refuses a built
    # optimizer although the set is only read when updates are traced).
    excluded = set(getattr(optimizer, "_exclude_from_weight_decay", None) or ())
    optimizer._exclude_from_weight_decay = excluded | {optimizer._var_key(v) for v in slopes}
    if not hasattr(optimizer, "_exclude_from_weight_decay_pattern"):
        optimizer._exclude_from_weight_decay_pattern = None
    optimizer._exclude_from_weight_decay_cache = {}  # decisions made before: forgotten
    return slopes
