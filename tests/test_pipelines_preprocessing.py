"""Preprocessing: every function eagerly and inside Dataset.map, same result."""

import numpy as np
import pytest
import tensorflow as tf

from pipelines import preprocessing as pp
from pipelines.config import LIGHTING_STD
from tests import imaging_testutil

FORMATS = ["jpeg", "png", "gif", "bmp", "cmyk_jpeg", "gray_jpeg", "gray_png", "rgba_png"]


def in_graph(fn, *args):
    """Runs `fn(*args)` inside Dataset.map (graph mode) and returns numpy."""
    ds = tf.data.Dataset.from_tensors(tuple(args)).map(fn)
    return next(iter(ds)).numpy()


@pytest.mark.parametrize("fmt", FORMATS)
def test_decode_rgb_matches_pillow_for_every_format(fmt):
    data = imaging_testutil.image_bytes(fmt, 30, 44, seed=3)
    eager = pp.decode_rgb(tf.constant(data)).numpy()
    assert eager.shape == (30, 44, 3) and eager.dtype == np.uint8
    np.testing.assert_array_equal(eager, in_graph(pp.decode_rgb, data))
    reference = imaging_testutil.decode_pil(data)
    tolerance = 40 if fmt == "cmyk_jpeg" else 6  # Different colour pipelines.
    assert np.abs(eager.astype(int) - reference).mean() < tolerance


@pytest.mark.parametrize("fmt", ["jpeg", "png", "cmyk_jpeg", "gray_jpeg"])
@pytest.mark.parametrize("size", [(9, 5), (60, 90), (375, 500)])
def test_train_eager_equals_graph(fmt, size):
    data = tf.constant(imaging_testutil.image_bytes(fmt, *size, seed=1))
    kwargs = dict(image_size=24, scale_range=(26, 52))
    fn = lambda b, s: pp.preprocess_for_train(b, seed=s, **kwargs)
    eager = fn(data, tf.constant([4, 2])).numpy()
    assert eager.shape == (24, 24, 3) and eager.dtype == np.float32
    np.testing.assert_allclose(eager, in_graph(fn, data, tf.constant([4, 2])), atol=1e-4)
    other = fn(data, tf.constant([4, 3])).numpy()
    assert not np.allclose(eager, other)  # The seed matters.


def test_train_fast_jpeg_path_equals_full_decode_path():
    # The JPEG path decodes only the window; the general path decodes the
    # whole image and slices the same window: same pixels up to the decoder.
    jpeg = imaging_testutil.image_bytes("jpeg", 120, 160, seed=5)
    png = imaging_testutil.encode(imaging_testutil.decode_pil(jpeg), "png")
    for seed in ([0, 1], [0, 2], [7, 7]):
        a = pp.preprocess_for_train(jpeg, image_size=32, scale_range=(40, 80), seed=seed).numpy()
        b = pp.preprocess_for_train(png, image_size=32, scale_range=(40, 80), seed=seed).numpy()
        assert np.abs(a - b).mean() < 3.0


def test_train_crop_covers_the_scaled_window():
    # With no flip / lighting / mean, the crop at scale s == shorter side and
    # image_size == shorter side is the whole (square) image.
    image = imaging_testutil.pattern(48, 48, seed=2)
    data = imaging_testutil.encode(image, "png")
    out = pp.preprocess_for_train(
        data,
        image_size=48,
        scale_range=(48, 48),
        flip=False,
        lighting_std=0,
        mean=None,
        seed=[1, 1],
    ).numpy()
    np.testing.assert_allclose(out, image.astype(np.float32), atol=1e-3)


def test_flip_happens_about_half_the_time():
    data = imaging_testutil.encode(imaging_testutil.pattern(32, 32, seed=2), "png")
    flipped = 0
    for i in range(40):
        out = pp.preprocess_for_train(
            data, image_size=32, scale_range=(32, 32), lighting_std=0, mean=None, seed=[3, i]
        )
        flipped += int(not np.allclose(out.numpy(), imaging_testutil.decode_pil(data)))
    assert 10 <= flipped <= 30


def test_lighting_adds_one_colour_along_the_pca_axes():
    image = tf.zeros([4, 5, 3])
    out = pp.lighting(image, LIGHTING_STD, tf.constant([1, 2])).numpy()
    shift = out[0, 0]
    np.testing.assert_allclose(out, np.broadcast_to(shift, out.shape))
    alpha = tf.random.stateless_normal([3], [1, 2], stddev=LIGHTING_STD).numpy()
    expected = np.array(pp.EIGVEC) @ (alpha * np.array(pp.EIGVAL))
    np.testing.assert_allclose(shift, expected, rtol=1e-5)
    np.testing.assert_allclose(
        in_graph(lambda x: pp.lighting(x, LIGHTING_STD, tf.constant([1, 2])), image), out
    )


def test_normalize_is_the_per_channel_affine_map():
    image = tf.fill([2, 2, 3], 128.0)
    out = pp.normalize(image, pp.MEAN_RGB, pp.STD_RGB).numpy()
    np.testing.assert_allclose(
        out[0, 0], (128 - np.array(pp.MEAN_RGB)) / np.array(pp.STD_RGB), rtol=1e-5
    )
    shifted = pp.normalize(image, pp.MEAN_RGB, shift=[1.0, 2.0, 3.0]).numpy()
    np.testing.assert_allclose(
        shifted[1, 1], 128 + np.array([1, 2, 3]) - np.array(pp.MEAN_RGB), rtol=1e-5
    )
    np.testing.assert_allclose(pp.normalize(image, None).numpy(), 128.0)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
@pytest.mark.parametrize("size", [(7, 12), (100, 60), (375, 500)])
def test_eval_centre_crop_eager_equals_graph(fmt, size):
    data = imaging_testutil.image_bytes(fmt, *size, seed=4)
    fn = lambda b: pp.preprocess_for_eval(b, image_size=28, resize_size=32)
    eager = fn(tf.constant(data)).numpy()
    assert eager.shape == (28, 28, 3)
    np.testing.assert_allclose(eager, in_graph(fn, data), atol=1e-4)
    if min(size) < 32:
        return  # Window rounding on a 7-px image: no close reference.
    # Same as resizing the whole image and taking the centre crop.
    full = pp.resize_shorter_side(pp.decode_rgb(data), 32)
    h, w = full.shape[:2]
    top, left = (h - 28 + 1) // 2, (w - 28 + 1) // 2
    reference = pp.normalize(full[top : top + 28, left : left + 28])
    assert np.abs(eager - reference.numpy()).mean() < 6.0


@pytest.mark.parametrize(
    "size,expected", [((30, 40), (32, 43)), ((50, 20), (80, 32)), ((5, 5), (32, 32))]
)
def test_eval_whole_image_has_the_resized_shorter_side(size, expected):
    data = imaging_testutil.image_bytes("jpeg", *size)
    fn = lambda b: pp.preprocess_for_eval(b, resize_size=32, crop=False)
    out = fn(tf.constant(data)).numpy()
    assert out.shape == expected + (3,)
    np.testing.assert_allclose(out, in_graph(fn, data), atol=1e-4)


def test_ten_crop_gives_the_papers_ten_views():
    image = tf.reshape(tf.range(6 * 8 * 1, dtype=tf.float32), [6, 8, 1])
    views = pp.ten_crop(image, 4).numpy()
    assert views.shape == (10, 4, 4, 1)
    x = image.numpy()
    expected = [x[:4, :4], x[:4, 4:], x[2:, :4], x[2:, 4:], x[1:5, 2:6]]
    for i, view in enumerate(expected):
        np.testing.assert_array_equal(views[i], view)
        np.testing.assert_array_equal(views[i + 5], view[:, ::-1])
    np.testing.assert_array_equal(views, in_graph(lambda t: pp.ten_crop(t, 4), image))


def test_ten_crop_rejects_small_images():
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller"):
        pp.ten_crop(tf.zeros([3, 8, 3]), 4)


def test_undecodable_bytes_raise():
    with pytest.raises(tf.errors.InvalidArgumentError):
        pp.preprocess_for_train(tf.constant(b"not an image"), seed=[0, 0])


def test_resize_shorter_side_takes_batches():
    batch = tf.stack(
        [tf.cast(imaging_testutil.pattern(20, 30, seed=i), tf.float32) for i in range(2)]
    )
    out = pp.resize_shorter_side(batch, 10)
    assert out.shape == (2, 10, 15, 3)
    np.testing.assert_allclose(out[1], pp.resize_shorter_side(batch[1], 10), atol=1e-4)


def test_normalize_a_batch_equals_normalizing_each_image():
    images = tf.cast(tf.random.stateless_uniform([3, 5, 4, 3], [1, 1], 0, 255), tf.uint8)
    shifts = tf.random.stateless_normal([3, 3], [2, 2])
    batch = pp.normalize(images, pp.MEAN_RGB, pp.STD_RGB, shift=shifts).numpy()
    for i in range(3):
        np.testing.assert_array_equal(
            batch[i], pp.normalize(images[i], pp.MEAN_RGB, pp.STD_RGB, shift=shifts[i]).numpy()
        )


def test_augment_then_normalize_is_preprocess_for_train():
    data = tf.constant(imaging_testutil.image_bytes("jpeg", 50, 70, seed=6))
    kwargs = dict(image_size=24, scale_range=(26, 52), seed=[3, 9])
    image, shift = pp.augment_for_train(data, **kwargs)
    assert image.dtype == tf.uint8 and image.shape == (24, 24, 3)
    np.testing.assert_array_equal(
        pp.normalize(image, shift=shift).numpy(), pp.preprocess_for_train(data, **kwargs).numpy()
    )
