"""Parametric rectified linear unit (He et al. 2015, Sec. 2.1)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_layers")
class PReLU(keras.layers.Layer):
    """PReLU: `f(y_i) = max(0, y_i) + a_i * min(0, y_i)` (Eq. 1/2).

    Channel-wise by default: one learned slope `a_i` per channel, the paper's
    default; `channel_shared=True` learns one slope for the whole layer. The
    slope gradients are Eq. 4 (channel-wise: summed over the batch and all
    positions of the channel) and Eq. 5 (shared: also summed over channels),
    written out as a custom gradient (`keras.ops.custom_gradient`, on every
    backend; its cost: `_prelu`). At exactly `y = 0`
    the gradient is that of the negative side on every backend, as in
    `torch.nn.PReLU`: `df/dy = a`, `df/da = 0`.

    Differences from `keras.layers.PReLU`: the slopes start at 0.25 (the
    paper) instead of 0, and there is one per channel rather than one per
    element, so the layer accepts inputs whose spatial size is unknown or
    changes between calls (multi-scale training and testing).

    Under a mixed-precision policy (`mixed_float16`, `mixed_bfloat16`) the
    `alpha` variable stays float32 -- the optimizer updates it at full
    precision -- and the output has the compute dtype.

    Do not apply weight decay to `alpha`: decay pulls the slopes to 0, i.e.
    back to ReLU. See `keras_layers.exclude_prelu_from_weight_decay`.

    Args:
        channel_shared: if True, one slope for the layer (Eq. 5 gradient);
            otherwise one per channel (Eq. 4).
        alpha_initializer: initializer of the slopes; default constant 0.25.
        alpha_regularizer: optional regularizer of the slopes (the paper uses
            none).
        alpha_constraint: optional constraint of the slopes (the paper leaves
            them unconstrained, neither positive nor below 1).
        data_format: `"channels_last"` or `"channels_first"`, where the channel
            axis of rank 3..5 inputs is; default
            `keras.config.image_data_format()`. Rank-2 inputs `(batch, units)`
            get one slope per unit either way.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Input shape: rank 2 to 5, channel dimension known.
    Output shape: same as input.

    Example:

    >>> x = keras.Input((None, None, 3))
    >>> y = keras.layers.Conv2D(64, 3, padding="same")(x)
    >>> y = PReLU()(y)                      # 64 slopes, initialised to 0.25
    >>> z = PReLU(channel_shared=True)(y)   # 1 slope
    """

    def __init__(
        self,
        channel_shared=False,
        alpha_initializer=None,
        alpha_regularizer=None,
        alpha_constraint=None,
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channel_shared = bool(channel_shared)
        if alpha_initializer is None:
            alpha_initializer = keras.initializers.Constant(0.25)
        self.alpha_initializer = keras.initializers.get(alpha_initializer)
        self.alpha_regularizer = keras.regularizers.get(alpha_regularizer)
        self.alpha_constraint = keras.constraints.get(alpha_constraint)
        self.data_format = _standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(min_ndim=2, max_ndim=5)
        self.supports_masking = True

    def _channel_axis(self, rank):
        if rank == 2 or self.data_format == "channels_last":
            return rank - 1
        return 1

    def build(self, input_shape):
        rank = len(input_shape)
        if rank < 2 or rank > 5:
            raise ValueError(
                f"PReLU expects an input of rank 2 to 5, got shape {tuple(input_shape)}."
            )
        axis = self._channel_axis(rank)
        channels = input_shape[axis]
        constraint = self.alpha_constraint
        if self.channel_shared:
            # A scalar, as it always was (checkpoints and .keras files of
            # earlier runs hold shape ()); its constraint sees it as shape
            # (1,), which Keras' norm constraints need (MaxNorm, UnitNorm
            # reduce over axis 0).
            shape = ()
            if constraint is not None:
                constraint = _ScalarAsVector(constraint)
        else:
            if channels is None:
                raise ValueError(
                    "PReLU (channel-wise) needs the channel dimension (axis "
                    f"{axis}, data_format={self.data_format!r}) to be known; "
                    f"got input shape {tuple(input_shape)}."
                )
            shape = (channels,)
        self.alpha = self.add_weight(
            name="alpha",
            shape=shape,
            initializer=self.alpha_initializer,
            regularizer=self.alpha_regularizer,
            constraint=constraint,
        )
        # Pin the channel size so that a mismatched later call fails clearly.
        axes = {axis: channels} if channels is not None else None
        self.input_spec = keras.layers.InputSpec(ndim=rank, axes=axes)
        # Channels-first slopes broadcast against (batch, C, d1, ...) only
        # after reshaping to (C, 1, ..., 1); computed once here, not per call.
        self._broadcast_shape = None
        if not self.channel_shared and axis != rank - 1:
            self._broadcast_shape = (channels,) + (1,) * (rank - 2)

    def call(self, inputs):
        alpha = ops.cast(self.alpha, inputs.dtype)
        if self._broadcast_shape is not None:
            alpha = ops.reshape(alpha, self._broadcast_shape)
        return _prelu(inputs, alpha)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channel_shared": self.channel_shared,
                "alpha_initializer": keras.initializers.serialize(self.alpha_initializer),
                "alpha_regularizer": keras.regularizers.serialize(self.alpha_regularizer),
                "alpha_constraint": keras.constraints.serialize(self.alpha_constraint),
                "data_format": self.data_format,
            }
        )
        return config


@ops.custom_gradient
def _prelu(inputs, alpha):
    """Eq. 2 with the gradients of Eq. 4 / Eq. 5, written out.

    `alpha` broadcasts against `inputs` (a scalar, `(C,)` or `(C, 1, ..., 1)`).
    Forward: `y * (1 if y > 0 else a)`, three elementwise passes (compare,
    select, multiply) where `relu(y) + a * min(y, 0)` takes four. Backward:
    `df/dy` is the factor kept from the forward pass (one multiply, the cost
    of ReLU's gradient) and `df/da = sum(g * min(y, 0))` over the axes `a` is
    broadcast along. Autodiff of the same forward pass takes twice the
    backward passes (a zero-filled tensor and a second select for the slope
    gradient; `benchmarks/prelu_overhead.py`). At `y == 0` the negative side
    holds on every backend: `df/dy = a`, `df/da = 0`, as in `torch.nn.PReLU`.
    """
    factor = ops.where(inputs > 0, 1.0, alpha)

    def grad(*args, upstream=None):
        if upstream is None:  # TF and JAX pass it positionally, torch by name
            (upstream,) = args
        lead = len(inputs.shape) - len(alpha.shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, size in enumerate(alpha.shape) if size == 1
        )
        d_alpha = ops.sum(upstream * ops.minimum(inputs, 0.0), axis=axes, keepdims=True)
        return upstream * factor, ops.reshape(d_alpha, ops.shape(alpha))

    return inputs * factor, grad


class _ScalarAsVector(keras.constraints.Constraint):
    """Applies `constraint` to a shape-() slope reshaped to (1,) and back."""

    def __init__(self, constraint):
        self.constraint = constraint

    def __call__(self, w):
        return ops.reshape(self.constraint(ops.reshape(w, (1,))), ())


def _standardize_data_format(data_format):
    """`None` -> the global image data format; anything else must be valid."""
    if data_format is None:
        return keras.config.image_data_format()
    data_format = str(data_format).lower()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}."
        )
    return data_format
