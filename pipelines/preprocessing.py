"""The paper's image preprocessing as pure TensorFlow functions.

Every function works eagerly and inside `tf.data.Dataset.map` (graph mode),
and all randomness is stateless: the same `seed` gives the same image in both.

Training (docs/PAPER.md, "Training recipe"): shorter side rescaled to `s ~ U[256, 512]`,
random 224x224 crop, horizontal flip with probability 1/2, AlexNet PCA
lighting noise, per-channel mean subtraction (optional std division).

Speed: for JPEG input the crop is chosen *before* decoding. A crop of
`image_size` pixels at scale `s` covers `image_size * shorter / s` pixels of
the original image, so only that window is decoded
(`tf.io.decode_and_crop_jpeg`) and then resized to `image_size`. Other formats
(PNG, GIF, BMP, grayscale or CMYK files) take the general path: full decode to
3-channel RGB, the same window, the same resize.

Each preprocessing is split into a per-image half that returns uint8
(`augment_for_train`, `crop_for_eval`) and `normalize`, which the pipelines
apply once per batch; `preprocess_for_train` / `preprocess_for_eval` compose
the two for one image and give the same numbers.
"""

import tensorflow as tf

from pipelines import config

# The ImageNet statistics, kept with the rest of the recipe in pipelines.config
# (which imports no TensorFlow); named here too for `normalize`'s callers.
MEAN_RGB = config.MEAN_RGB
STD_RGB = config.STD_RGB
# AlexNet PCA lighting: eigenvalues of the RGB covariance, on the 0-255 scale
# (the [0, 1]-scale values 0.2175, 0.0188, 0.0045 times 255); eigenvectors
# are the *columns* of EIGVEC.
EIGVAL = (0.2175 * 255.0, 0.0188 * 255.0, 0.0045 * 255.0)
EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))


def _resize(image, size):
    """Bilinear resize to `size` (float32), antialiased when shrinking > 2x.

    Training and evaluation share it, so the network sees the same resampling
    at test time. Plain bilinear already averages 2x2 neighbours, enough for
    shrinking up to 2x (the common case: ImageNet windows are 164-328 px for a
    224 crop); antialiasing costs as much as the JPEG decode, so it is used
    only when the image shrinks by more than that. The image is cast to
    float32 first: ResizeBilinear converts uint8 pixels more slowly than a
    separate Cast does (about half the resize's time).
    """
    image = tf.cast(image, tf.float32)
    ratio = tf.reduce_max(
        tf.cast(tf.shape(image)[-3:-1], tf.float32)
        / tf.cast(tf.convert_to_tensor(size), tf.float32)
    )
    return tf.cond(
        ratio > 2.0,
        lambda: tf.image.resize(image, size, method="bilinear", antialias=True),
        lambda: tf.image.resize(image, size, method="bilinear"),
    )


def decode_rgb(image_bytes):
    """Decodes JPEG, PNG, GIF (first frame), BMP or WebP bytes to RGB.

    Grayscale and CMYK images come out as 3-channel RGB, RGBA loses its alpha.

    Args:
      image_bytes: scalar string tensor, the encoded image.

    Returns:
      uint8 tensor `[H, W, 3]`.
    """
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def decode_crop(image_bytes, window_fn):
    """Decodes only the window `window_fn(shape)` of the image, as RGB uint8.

    Args:
      image_bytes: scalar string tensor.
      window_fn: maps the int32 `[height, width]` of the original image to an
        int32 window `[y, x, h, w]` in original coordinates.

    Returns:
      uint8 `[h, w, 3]`. JPEG decodes just the window (the header gives the
      shape without decoding); other formats decode once, then slice.
    """

    def jpeg():
        window = window_fn(tf.io.extract_jpeg_shape(image_bytes)[:2])
        return tf.io.decode_and_crop_jpeg(image_bytes, window, channels=3)

    def general():
        image = decode_rgb(image_bytes)
        y, x, h, w = tf.unstack(window_fn(tf.shape(image)[:2]))
        return image[y : y + h, x : x + w, :]

    image = tf.cond(tf.io.is_jpeg(image_bytes), jpeg, general)
    image.set_shape([None, None, 3])
    return image


def resize_shorter_side(image, size):
    """Resizes `image [H, W, C]` (or a batch `[B, H, W, C]` of same-sized
    images) so its shorter side is `size`, keeping aspect.

    Small images are upscaled. Returns float32 on the input's value scale.
    """
    shape = tf.cast(tf.shape(image)[-3:-1], tf.float32)
    scale = tf.cast(size, tf.float32) / tf.reduce_min(shape)
    new_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), 1)
    return _resize(image, new_shape)


def crop_window(shape, image_size, scale, offset_fraction):
    """The square window of the original image that becomes the crop.

    Args:
      shape: int32 `[height, width]` of the original image.
      image_size: side of the crop in the rescaled image.
      scale: the rescaled shorter side `s` (float scalar).
      offset_fraction: float `[2]` in [0, 1]: where the window lies along
        (y, x) within the room left; 0.5 centres it.

    Returns:
      int32 `[y, x, h, w]` in original-image coordinates, never empty and
      never larger than the image.
    """
    shorter = tf.cast(tf.reduce_min(shape), tf.float32)
    side = tf.cast(tf.round(tf.cast(image_size, tf.float32) * shorter / scale), tf.int32)
    side = tf.clip_by_value(side, 1, tf.reduce_min(shape))
    room = tf.cast(shape - side, tf.float32)
    offset = tf.cast(tf.floor(room * offset_fraction + 0.5), tf.int32)
    offset = tf.minimum(offset, shape - side)
    return tf.stack([offset[0], offset[1], side, side])


def lighting_shift(alpha_std, seed, eigval=EIGVAL, eigvec=EIGVEC):
    """AlexNet PCA lighting noise `eigvec @ (alpha * eigval)`, an RGB `[3]`.

    Args:
      alpha_std: standard deviation of `alpha ~ N(0, alpha_std)`.
      seed: int32 `[2]` stateless seed.
    """
    alpha = tf.random.stateless_normal([3], seed, stddev=alpha_std)
    return tf.linalg.matvec(
        tf.constant(eigvec, tf.float32), alpha * tf.constant(eigval, tf.float32)
    )


def lighting(image, alpha_std, seed, eigval=EIGVAL, eigvec=EIGVEC):
    """Adds the PCA lighting noise to float `image [H, W, 3]` (0-255 scale)."""
    return image + lighting_shift(alpha_std, seed, eigval, eigvec)


def normalize(image, mean=MEAN_RGB, std=None, shift=None):
    """`(image + shift - mean) / std`, per channel; each term optional.

    Computed as one multiply-add over the image (`shift`, e.g. the lighting
    noise, is folded into the per-channel offset). Works on one image
    `[H, W, 3]` with `shift [3]`, or on a batch `[B, H, W, 3]` with a shift per
    image `[B, 3]` (or one `[3]` for all); the result for each image is the
    same either way.
    """
    image = tf.cast(image, tf.float32)
    offset = tf.zeros([3]) if shift is None else tf.cast(shift, tf.float32)
    if offset.shape.rank == 2:  # One shift per image of a batch.
        offset = offset[:, tf.newaxis, tf.newaxis, :]
    if mean is not None:
        offset -= tf.constant(mean, tf.float32)
    if std is not None:
        scale = 1.0 / tf.constant(std, tf.float32)
        return image * scale + offset * scale
    if mean is None and shift is None:
        return image
    return image + offset


def _seed_or_random(seed):
    if seed is None:
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    return tf.cast(tf.convert_to_tensor(seed), tf.int32)


def to_uint8(image):
    """Rounds a resized float image (values within 0-255) back to uint8.

    The pipelines hand uint8 crops to the batch and normalise whole batches:
    a quarter of the bytes to copy and one vectorised op per batch instead of
    one per image (benchmarks/input_pipeline.py). Caffe, whose recipe the
    paper follows, also resized in uint8.
    """
    return tf.cast(image + 0.5, tf.uint8)  # Values are >= 0: rounds.


def augment_for_train(
    image_bytes,
    *,
    image_size=config.IMAGE_SIZE,
    scale_range=config.SCALE_RANGE,
    flip=True,
    lighting_std=config.LIGHTING_STD,
    seed=None,
):
    """The per-image half of `preprocess_for_train`: the geometry, in uint8.

    Returns:
      `(image uint8 [S, S, 3], shift float32 [3])`: the scale-jittered, cropped,
      flipped crop and the PCA lighting shift (zeros when `lighting_std` is 0);
      `normalize(image, mean, std, shift=shift)` finishes the preprocessing,
      per image or on a batch with shifts `[B, 3]`.
    """
    seed = _seed_or_random(seed)
    # One draw for the geometry (a handful of ops per image is measurable in
    # a tf.data map): scale, window offset (y, x), flip.
    draw = tf.random.stateless_uniform([4], seed)
    low, high = float(scale_range[0]), float(scale_range[1])
    scale = low + (high - low) * draw[0]
    image = decode_crop(image_bytes, lambda shape: crop_window(shape, image_size, scale, draw[1:3]))
    if flip:  # On the small uint8 window, before resizing: cheaper.
        image = tf.cond(draw[3] < 0.5, lambda: tf.reverse(image, axis=[1]), lambda: image)
    image = to_uint8(_resize(image, [image_size, image_size]))
    image.set_shape([image_size, image_size, 3])
    shift = (
        lighting_shift(lighting_std, tf.random.experimental.stateless_fold_in(seed, 1))
        if lighting_std
        else tf.zeros([3])
    )
    return image, shift


def preprocess_for_train(
    image_bytes,
    *,
    image_size=config.IMAGE_SIZE,
    scale_range=config.SCALE_RANGE,
    flip=True,
    lighting_std=config.LIGHTING_STD,
    mean=MEAN_RGB,
    std=None,
    seed=None,
):
    """Scale jitter, random crop, flip, PCA lighting, mean subtraction.

    Args:
      image_bytes: scalar string tensor (JPEG fast path, any format works).
      image_size: side `S` of the square crop.
      scale_range: `(low, high)`: the shorter side is rescaled to
        `s ~ U[low, high]` before cropping (the paper: 256 to 512).
      flip: random horizontal flip with probability 1/2.
      lighting_std: std of AlexNet's PCA lighting coefficients; 0 disables.
      mean, std: per-channel statistics for `normalize` (0-255 scale).
      seed: int `[2]` stateless seed; None draws one (not reproducible).

    Returns:
      float32 `[S, S, 3]`: `normalize(*augment_for_train(...))`, which is what
      the pipelines compute, the normalisation once per batch.

    Example:
      >>> image = preprocess_for_train(jpeg_bytes, seed=[0, 7])
    """
    image, shift = augment_for_train(
        image_bytes,
        image_size=image_size,
        scale_range=scale_range,
        flip=flip,
        lighting_std=lighting_std,
        seed=seed,
    )
    return normalize(image, mean, std, shift=shift)


def crop_for_eval(image_bytes, *, image_size=config.IMAGE_SIZE, resize_size=config.RESIZE_SIZE):
    """The per-image half of `preprocess_for_eval`: the uint8 centre crop."""
    image = decode_crop(
        image_bytes,
        lambda shape: crop_window(shape, image_size, float(resize_size), tf.constant([0.5, 0.5])),
    )
    image = to_uint8(_resize(image, [image_size, image_size]))
    image.set_shape([image_size, image_size, 3])
    return image


def preprocess_for_eval(
    image_bytes,
    *,
    image_size=config.IMAGE_SIZE,
    resize_size=config.RESIZE_SIZE,
    crop=True,
    mean=MEAN_RGB,
    std=None,
):
    """Shorter side to `resize_size`, then the centre `image_size` crop.

    Args:
      image_bytes: scalar string tensor.
      image_size: side of the centre crop.
      resize_size: the shorter side after resizing.
      crop: False returns the whole resized image, `[H', W', 3]` with
        `min(H', W') == resize_size` (dense testing, 10-view), unrounded.
      mean, std: per-channel statistics for `normalize`.

    Returns:
      float32 `[image_size, image_size, 3]`, or `[H', W', 3]` when not cropping.
    """
    if not crop:
        return normalize(resize_shorter_side(decode_rgb(image_bytes), resize_size), mean, std)
    return normalize(
        crop_for_eval(image_bytes, image_size=image_size, resize_size=resize_size), mean, std
    )


def ten_crop(image, crop_size):
    """The paper's 10 views: 4 corners and the centre, then their mirrors.

    Args:
      image: `[H, W, C]` with `H, W >= crop_size` (e.g. from
        `preprocess_for_eval(..., crop=False)`).
      crop_size: side of each view.

    Returns:
      `[10, crop_size, crop_size, C]`, in the order top-left, top-right,
      bottom-left, bottom-right, centre, then the same five flipped
      left-right.
    """
    shape = tf.shape(image)
    h, w, c = shape[0], shape[1], crop_size
    tf.debugging.assert_greater_equal(
        tf.minimum(h, w), c, message="ten_crop: image smaller than the crop"
    )
    starts = [(0, 0), (0, w - c), (h - c, 0), (h - c, w - c), ((h - c) // 2, (w - c) // 2)]
    views = tf.stack([image[y : y + c, x : x + c, :] for y, x in starts])
    views = tf.concat([views, tf.reverse(views, axis=[2])], axis=0)
    views.set_shape([10, crop_size, crop_size, image.shape[-1]])
    return views
