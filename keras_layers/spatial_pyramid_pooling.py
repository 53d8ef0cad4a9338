"""Spatial pyramid pooling (SPP-net, He et al. 2014), used by the paper's models."""

import keras
from keras import ops

from keras_layers.prelu import _standardize_data_format


def bin_edges(length, num_bins):
    """Start/end of the `num_bins` pooling bins over an axis of `length`.

    Bin `i` covers `[floor(i * a / n), ceil((i + 1) * a / n))`. Every bin is
    non-empty, there are always exactly `n` of them (neighbours overlap when
    `a < n`), and at `a = 13` they equal SPP-net's sliding window of size
    `ceil(a / n)` and stride `floor(a / n)`.

    Works on Python ints (static shapes: exact, no graph ops) and on scalar
    integer tensors (shapes only known at run time, e.g. a SavedModel served
    with variable image sizes), since it uses only `*`, `+` and `//`.

    Args:
        length: int or scalar int tensor, the axis length `a` (>= 1).
        num_bins: Python int `n`.

    Returns:
        List of `n` `(start, end)` pairs, of the same kind as `length`.
    """
    # ceil(p / n) == (p + n - 1) // n for p >= 0: integer-only, so no float
    # rounding at large sizes and no casts of symbolic shapes.
    return [
        ((i * length) // num_bins, ((i + 1) * length + num_bins - 1) // num_bins)
        for i in range(num_bins)
    ]


@keras.saving.register_keras_serializable(package="keras_layers")
class SpatialPyramidPooling(keras.layers.Layer):
    """Max-pools a feature map into a fixed-length vector (SPP-net).

    For each pyramid level `n` the map is divided into `n x n` bins (see
    `bin_edges`) and each bin is max-pooled per channel. The result has
    `channels * sum(n * n)` features whatever the input height and width, so
    the fully connected layers of the paper's models (Table 1: levels
    {6, 3, 2, 1}, 50 bins; Table 3: {7, 3, 2, 1}, 63 bins) accept any image
    size -- used for multi-scale training and dense testing (Sec. 4).

    Output order: the levels in the given order; within a level the bins
    row-major and the channels fastest, i.e. the NHWC flattening of each
    level's `n x n x C` map, for both data formats (so weights trained in one
    format load in the other).

    Bins are computed from the run-time shape (`keras.ops.shape`), so one
    traced graph handles every input size. Max pooling is separable: each
    level first reduces `n` row bands (over height), then `n` column bands of
    that result (over width), i.e. `2n` slice+max ops instead of `n^2`
    windows, with no loop over run-time sizes.

    Args:
        bins: sequence of positive ints, the pyramid levels `n`.
        data_format: `"channels_last"` (input `(batch, H, W, C)`) or
            `"channels_first"` (`(batch, C, H, W)`); default
            `keras.config.image_data_format()`.
        **kwargs: base `keras.layers.Layer` arguments.

    Input shape: rank 4; H and W may be unknown; C must be known.
    Output shape: `(batch, C * sum(n * n for n in bins))`.

    Example:

    >>> x = keras.Input((None, None, 256))
    >>> v = SpatialPyramidPooling(bins=(6, 3, 2, 1))(x)   # (None, 12800)
    >>> logits = keras.layers.Dense(1000)(v)
    """

    def __init__(self, bins=(6, 3, 2, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        bins = tuple(bins)
        if not bins or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in bins):
            raise ValueError(f"bins must be a non-empty sequence of positive ints, got {bins!r}.")
        self.bins = bins
        self.data_format = _standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _axes(self):
        """(height axis, width axis, channel axis) of the input."""
        return (1, 2, 3) if self.data_format == "channels_last" else (2, 3, 1)

    def build(self, input_shape):
        channel_axis = self._axes()[2]
        if input_shape[channel_axis] is None:
            raise ValueError(
                "SpatialPyramidPooling needs the channel dimension to be known "
                f"(data_format={self.data_format!r}); got input shape {tuple(input_shape)}."
            )
        self.input_spec = keras.layers.InputSpec(
            ndim=4, axes={channel_axis: input_shape[channel_axis]}
        )

    def call(self, inputs):
        h_axis, w_axis, _ = self._axes()
        shape = ops.shape(inputs)
        height, width = shape[h_axis], shape[w_axis]
        batch = shape[0]
        outputs = []
        for n in self.bins:
            rows = [
                ops.max(_slice(inputs, h_axis, start, end), axis=h_axis, keepdims=True)
                for start, end in bin_edges(height, n)
            ]
            rows = ops.concatenate(rows, axis=h_axis) if n > 1 else rows[0]
            cells = [
                ops.max(_slice(rows, w_axis, start, end), axis=w_axis, keepdims=True)
                for start, end in bin_edges(width, n)
            ]
            level = ops.concatenate(cells, axis=w_axis) if n > 1 else cells[0]
            if self.data_format == "channels_first":
                # Transposing the small pooled map (not the input) keeps the
                # NHWC output order for both formats.
                level = ops.transpose(level, (0, 2, 3, 1))
            outputs.append(ops.reshape(level, (batch, -1)))
        return ops.concatenate(outputs, axis=-1) if len(outputs) > 1 else outputs[0]

    def compute_output_shape(self, input_shape):
        channels = input_shape[self._axes()[2]]
        features = None if channels is None else channels * sum(n * n for n in self.bins)
        return (input_shape[0], features)

    def get_config(self):
        config = super().get_config()
        config.update({"bins": list(self.bins), "data_format": self.data_format})
        return config


def _slice(x, axis, start, end):
    """`x[..., start:end, ...]` along `axis` (1, 2 or 3 of a rank-4 tensor).

    Native basic indexing, which every backend supports with run-time
    (tensor) bounds, e.g. a TF strided slice inside `tf.function`.
    """
    index = [slice(None)] * 4
    index[axis] = slice(start, end)
    return x[tuple(index)]
