"""The paper's dense multi-view testing (Sec. 4, after SPP-net and OverFeat).

For each scale `s` the image is resized so its shorter side is `s`, the conv
trunk runs once on it (and once on its horizontal flip), and every
`window x window` window of the last conv map (stride 1; `window` is
`delving.models.networks.head_window(name, image_size)`, what the head saw on the
training crops: 14 for models A/B/C at 224x224) is pooled by the SPP and
classified by the fc head.
The softmax scores of all windows, both flips and all scales are averaged.

Computed densely, never by cropping windows and re-running layers:

- SPP of every window at once: bin `(i, j)` of level `n` covers rows
  `[p + start_i, p + end_i)` of the window at row `p` (`bin_edges` of the
  window, the same as the layer's), so for each distinct bin size one
  stride-1 max pool over the whole map gives that bin for every window, and
  a strided slice at the bin's offset picks it out. Concatenating the slices
  in the layer's output order (levels, bins row-major, channels fastest)
  gives a `[H', W', sum(n^2) * C]` map of window features, `H' = H - w + 1`.
- The fc layers are the head's own layers (its Dense kernels, activation
  and dropout layers in inference mode) applied to those features as one
  batched matmul per layer: no copy of any weight, so a checkpoint restored
  into the model, an ensemble or a mixed-precision policy is what runs.

A map smaller than the window along either side is used whole, as one
window: the head on the whole map, as during training on small images.

Everything runs inside `tf.function` on images of unknown size (the exported
SavedModel takes any image size) and returns float32 even for
mixed-precision models.

API: `DenseInference(model, window=..., scales=..., flip=...)` is the
callable the exported SavedModels run (one traced function per scale-step,
reused for every scale); `dense_probabilities` is the one-shot form;
`dense_scores` the work at one scale on already resized, normalized images
(also the `dense` view of `delving.evaluation.validation`); `window_features` the
dense SPP alone.

Example:
  >>> model = build_model("model_a")
  >>> images = tf.zeros([2, 300, 400, 3], tf.uint8)
  >>> probs = dense_probabilities(model, images, window=head_window("model_a"),
  ...                             scales=(256, 384, 480))   # [2, 1000]
"""

import keras
import tensorflow as tf

import keras_layers
from delving.models import networks
from keras_layers.spatial_pyramid_pooling import bin_edges
from pipelines import preprocessing

#: The paper's multi-scale combination (Table 4), for 224-px training crops.
DEFAULT_SCALES = (256, 384, 480)


def default_scales(image_size):
    """The paper's scales for a network trained on `image_size` crops: 256,
    384, 480 times image_size / 224 (the built-in 64-px crops: 73, 110, 137)."""
    return tuple(round(s * image_size / 224) for s in DEFAULT_SCALES)


#: Images longer than this many times their shorter side are centre-cropped
#: along the longer side first, so that an extreme panorama (say 1 x 10000
#: pixels, resized to a 480 x 4.8M map) cannot exhaust memory.
DEFAULT_MAX_ASPECT_RATIO = 4.0


def split_head(head):
    """`(spp_layer, fc_layers)` of a `build_model` head.

    `fc_layers` are the layers after the SPP in order (Dense, activation,
    Dropout), each applied to rank-2 `[windows, features]` tensors.
    """
    layers = [layer for layer in head.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not layers or not isinstance(layers[0], keras_layers.SpatialPyramidPooling):
        raise ValueError(
            f"head {head.name!r} must start with a "
            f"SpatialPyramidPooling layer, got "
            f"{[layer.name for layer in layers]}"
        )
    return layers[0], layers[1:]


def _to_channels_last(x, data_format):
    return tf.transpose(x, (0, 2, 3, 1)) if data_format == "channels_first" else x


def window_features(feature_map, *, bins, window):
    """SPP features of every `window x window` window of a map, densely.

    Args:
      feature_map: `[B, H, W, C]` (channels last), `H, W >= window`.
      bins: the SPP levels, e.g. `(7, 3, 2, 1)`.
      window: Python int, the window side.

    Returns:
      `[B, H - window + 1, W - window + 1, C * sum(n * n)]`: at `[b, p, q]`
      exactly `SpatialPyramidPooling(bins)` of
      `feature_map[b, p:p + window, q:q + window]`.
    """
    shape = tf.shape(feature_map)
    rows, cols = shape[1] - window + 1, shape[2] - window + 1
    pooled = {}  # (bin height, bin width) -> stride-1 max pool of the map
    features = []
    for n in bins:
        edges = bin_edges(window, n)  # Python ints: static pool sizes
        for top, bottom in edges:
            for left, right in edges:
                size = (bottom - top, right - left)
                if size not in pooled:
                    pooled[size] = tf.nn.max_pool2d(feature_map, size, strides=1, padding="VALID")
                features.append(pooled[size][:, top : top + rows, left : left + cols, :])
    return tf.concat(features, axis=-1)


def _window_probabilities(head, feature_map, *, window):
    """Softmax of the head on every window, averaged: `[B, classes]` float32."""
    spp, fc_layers = split_head(head)
    channels_last = _to_channels_last(feature_map, spp.data_format)
    shape = tf.shape(channels_last)
    big_enough = tf.logical_and(shape[1] >= window, shape[2] >= window)

    def dense():
        return window_features(channels_last, bins=spp.bins, window=window)

    def whole_map():  # one window: what the head sees on the whole map
        return spp(feature_map)[:, None, None, :]

    size = channels_last.shape[-1] * sum(n * n for n in spp.bins)
    static = channels_last.shape[1:3]
    if any(d is not None and d < window for d in static):
        features = whole_map()  # known to be small: no dense branch to trace
    elif all(d is not None for d in static):
        features = dense()
    else:
        features = tf.cond(big_enough, dense, whole_map)
    batch = tf.shape(features)[0]
    x = tf.reshape(features, (-1, size))
    for layer in fc_layers:
        x = layer(x, training=False)
    scores = tf.nn.softmax(tf.cast(x, tf.float32), axis=-1)
    return tf.reduce_mean(tf.reshape(scores, (batch, -1, scores.shape[-1])), 1)


def limit_aspect_ratio(images, max_aspect_ratio=DEFAULT_MAX_ASPECT_RATIO):
    """Centre-crops the longer side of `[H, W, C]` or `[B, H, W, C]` images
    to at most `max_aspect_ratio` times the shorter side (a no-op for usual
    photos)."""
    shape = tf.shape(images)
    height, width = shape[-3], shape[-2]
    limit = tf.cast(
        tf.math.ceil(max_aspect_ratio * tf.cast(tf.minimum(height, width), tf.float32)), tf.int32
    )
    new_height, new_width = tf.minimum(height, limit), tf.minimum(width, limit)
    return tf.image.crop_to_bounding_box(
        images, (height - new_height) // 2, (width - new_width) // 2, new_height, new_width
    )


def dense_scores(model, images, *, window, flip=True):
    """Dense testing at one scale of images already resized and normalized.

    Args:
      model: a `delving.models.networks.build_model` model.
      images: float `[B, H, W, 3]` (channels last), the model's input.
      window: side of the conv-map window.
      flip: also run the horizontal flips (one trunk call for both).

    Returns:
      float32 `[B, classes]`: the mean softmax over windows (and flips).
    """
    head = networks.get_head(model)
    x = images
    if flip:  # [image batch; flipped batch]
        x = tf.concat([x, tf.reverse(x, axis=[2])], axis=0)
    if split_head(head)[0].data_format == "channels_first":
        x = tf.transpose(x, (0, 3, 1, 2))
    probs = _window_probabilities(head, networks.get_trunk(model)(x, training=False), window=window)
    if flip:
        probs = tf.reduce_mean(tf.reshape(probs, (2, tf.shape(images)[0], -1)), axis=0)
    return probs


class DenseInference:
    """Dense multi-scale testing of one model, as a reusable callable.

    The work at one scale is one `tf.function` (per input dtype), traced once
    and called for every scale, so an exported graph holds it once however
    many scales and signatures use it.

    Args:
      model: a `delving.models.networks.build_model` model (nested `trunk`, `head`).
      window: side of the conv-map window (`model_from_config.dense_window(cfg)`).
      scales: shorter sides to test at; the scores are averaged.
      flip: also test the horizontal flip of every image.
      mean, std: the normalization the model was trained with.
      max_aspect_ratio: see `limit_aspect_ratio`; None keeps every image whole.
    """

    def __init__(
        self,
        model,
        *,
        window,
        scales=DEFAULT_SCALES,
        flip=True,
        mean=preprocessing.MEAN_RGB,
        std=None,
        max_aspect_ratio=DEFAULT_MAX_ASPECT_RATIO,
    ):
        if not scales:
            raise ValueError("dense testing needs at least one scale")
        self.model, self.window = model, int(window)
        self.scales, self.flip = tuple(int(s) for s in scales), bool(flip)
        self.mean, self.std = mean, std
        self.max_aspect_ratio = max_aspect_ratio
        self._at_scale = {}  # input dtype -> tf.function

    def probabilities_at_scale(self, images, scale):
        """`[B, H, W, 3]` images, scalar int32 `scale` -> `[B, classes]`."""
        x = preprocessing.normalize(
            preprocessing.resize_shorter_side(images, scale), self.mean, self.std
        )
        return dense_scores(self.model, x, window=self.window, flip=self.flip)

    def _scale_fn(self, dtype):
        if dtype not in self._at_scale:
            self._at_scale[dtype] = tf.function(
                self.probabilities_at_scale,
                autograph=False,
                jit_compile=False,
                input_signature=[
                    tf.TensorSpec([None, None, None, 3], dtype),
                    tf.TensorSpec([], tf.int32),
                ],
            )
        return self._at_scale[dtype]

    def __call__(self, images):
        """`[B, H, W, 3]` same-sized RGB images (uint8, or float in [0, 255],
        any size >= 1x1) -> float32 `[B, classes]`: the mean softmax over
        windows, flips and scales."""
        images = tf.convert_to_tensor(images)
        if self.max_aspect_ratio:
            images = limit_aspect_ratio(images, self.max_aspect_ratio)
        at_scale = self._scale_fn(images.dtype)
        return tf.add_n(
            [at_scale(images, tf.constant(scale, tf.int32)) for scale in self.scales]
        ) / len(self.scales)


def dense_probabilities(model, images, *, window, **kwargs):
    """`DenseInference(model, window=window, **kwargs)(images)`: dense testing
    of a batch `[B, H, W, 3]` of same-sized images -> float32 `[B, classes]`."""
    return DenseInference(model, window=window, **kwargs)(images)


# The `dense` view of `delving.evaluation.validation` (`delving.evaluate --views=dense`).
# The evaluation readers resize and normalize whole images in tf.data with
# the same `pipelines.preprocessing` functions, so the per-scale work is
# `dense_scores`, exactly as in `DenseInference` and the exported model (the
# aspect-ratio limit is applied after resizing there, before it here: the
# two agree exactly up to `DEFAULT_MAX_ASPECT_RATIO`).


def evaluation_dataset(
    source,
    split,
    *,
    scale,
    image_size,
    batch_size,
    input_context,
    dtype,
    max_aspect_ratio=DEFAULT_MAX_ASPECT_RATIO,
):
    """Whole images, shorter side `scale`, normalized; batches of one per
    replica (sizes differ). `image_size`, `batch_size`, `dtype`: unused (the
    window comes from the model; the trunk casts to its compute dtype)."""
    del image_size, batch_size, dtype
    images = source.resized_images(split, resize_size=scale, input_context=input_context)
    if max_aspect_ratio:
        images = images.map(
            lambda image, label: (limit_aspect_ratio(image, max_aspect_ratio), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return images.batch(1).prefetch(tf.data.AUTOTUNE)


def evaluation_scores(model, images, *, image_size, flip=True):
    """`dense_scores` with the window the head saw on `image_size` training crops."""
    window = networks.head_window(model.name, image_size)
    return dense_scores(model, images, window=window, flip=flip)
