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


def uniform_window(length, num_bins):
    """`(size, stride)` of the one sliding window whose valid positions are
    exactly the bins of `bin_edges(length, num_bins)`, or None where no
    window is (bins of different sizes or spacing, e.g. 14 into 3: sizes 5,
    6, 5; 2 into 6: repeated bins) or `length` is known only at run time.

    Most training sizes qualify: 6 into {6, 3, 2, 1}, 13 and 19 into
    {6, 3, 2, 1}, 14 into 7.
    """
    if not isinstance(length, int):
        return None
    edges = bin_edges(length, num_bins)
    size = edges[0][1] - edges[0][0]
    stride = edges[1][0] if num_bins > 1 else size
    # Stride 0 (length < num_bins: repeated bins) is no pooling window.
    if stride > 0 and all((i * stride, i * stride + size) == e for i, e in enumerate(edges)):
        return size, stride
    return None


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

    Where the input size is known when the layer is traced (training at a
    fixed crop) and a level's bins are one sliding window (`uniform_window`),
    the level is a single max-pooling op. Otherwise bins are computed from
    the run-time shape (`keras.ops.shape`), so one traced graph handles every
    input size, and max pooling is separable: each level first reduces `n`
    row bands (over height), then `n` column bands of that result (over
    width), i.e. `2n` slice+max ops instead of `n^2` windows, with no loop
    over run-time sizes. Both give the same values; their gradients differ
    only where a bin's maximum is tied (the pooling op routes it to one
    input, the slices split it).

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
            window = uniform_window(height, n), uniform_window(width, n)
            if None not in window:
                # One pooling op: ~10x faster to train than 2n slices + max
                # (each slice's gradient is a zero-filled copy of the input).
                level = ops.max_pool(
                    inputs,
                    pool_size=(window[0][0], window[1][0]),
                    strides=(window[0][1], window[1][1]),
                    padding="valid",
                    data_format=self.data_format,
                )
                if self.data_format == "channels_first":
                    level = ops.transpose(level, (0, 2, 3, 1))
                outputs.append(ops.reshape(level, (batch, -1)))
                continue
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
