"""image_decoding: the size checked is the size decoded, in every format."""

import time

import crafted_testutil as crafted
import export_testutil as fx
import numpy as np
import pytest
import tensorflow as tf

from export import image_decoding

# Traced once for every string: a thousand images in seconds.
_header_size = tf.function(image_decoding.header_size)
_decode_shape = tf.function(lambda data: tf.shape(image_decoding.decode_image(data)))


def _size(data):
    return tuple(int(v) for v in _header_size(tf.constant(data)))


def _decoded_shape(data):
    """The size `decode_image` gives `data` without a cap, or None."""
    try:
        return tuple(int(v) for v in _decode_shape(tf.constant(data))[:2])
    except tf.errors.InvalidArgumentError:
        return None


def test_every_crafted_image_decodes_to_its_checked_size():
    """Each crafted single image that decodes at all (size fields lying in
    every direction, cut, flipped, multi-frame) has the size inspected."""
    checked = 0
    for name, signature, inputs in crafted.crafted_requests(16, 500_000, 250_000):
        if signature != crafted.BYTES or len(inputs) != 1 or not inputs[0]:
            continue
        try:
            height, width = _size(inputs[0])
        except tf.errors.InvalidArgumentError:  # a JPEG header libjpeg refuses
            continue
        if height * width > 4_000_000:  # refused before decoding by any sane limit
            continue
        shape = _decoded_shape(inputs[0])
        if shape is not None:
            assert shape == (height, width), name
            checked += 1
    assert checked > 200


def test_gif_size_is_the_first_frames_not_the_logical_screen():
    data = crafted.gif([(600, 700, 9)], screen=(1, 1))  # a few KB
    assert _size(data) == (600, 700)
    with pytest.raises(tf.errors.InvalidArgumentError, match="too large"):
        image_decoding.decode_image(data, max_pixels=250_000)


def test_gif_later_larger_frames_are_not_decoded():
    data = crafted.gif([(20, 30, 50), (3000, 3000, 200)])
    assert _size(data) == (20, 30)
    image = image_decoding.decode_image(data, max_pixels=600).numpy()
    np.testing.assert_array_equal(image, np.full((20, 30, 3), 50, np.uint8))


def test_animated_gif_decodes_its_first_frame_only():
    """60 frames of 1000x1000: the decoder gets the first alone (giflib
    reads every frame it is given, 60 MB of raster here)."""
    data = crafted.gif([(1000, 1000, v) for v in range(60)])
    decode = tf.function(lambda b: tf.reduce_max(image_decoding.decode_image(b)))
    reference = tf.function(
        lambda b: tf.reduce_max(tf.io.decode_image(b, channels=3, expand_animations=False))
    )
    decode(tf.constant(data)), reference(tf.constant(data))  # traced
    seconds = {}
    for name, fn in (("first frame", decode), ("every frame", reference)):
        start = time.perf_counter()
        for _ in range(3):
            fn(tf.constant(data))
        seconds[name] = (time.perf_counter() - start) / 3
    print(f"60-frame GIF of {len(data)} bytes: {seconds}")
    assert seconds["first frame"] * 5 < seconds["every frame"], seconds
    first = image_decoding.decode_image(data).numpy()
    np.testing.assert_array_equal(first, np.zeros((1000, 1000, 3), np.uint8))


def test_gif_sub_blocks_of_one_byte_are_walked_in_linear_time():
    """1 MB of one-byte sub-blocks (a step per two bytes for a walk link by
    link): the header is read in well under a second."""
    head = crafted.gif([(10, 10, 1)])
    head_end, _ = fx.gif_blocks(head)
    descriptor = b"\x2c" + (0).to_bytes(4, "little") + b"\x0a\x00\x0a\x00\x00\x08"
    data = head[:head_end] + descriptor + b"\x01\x00" * 500_000 + b"\x00;"
    inspect = tf.function(image_decoding.inspect)
    inspect(tf.constant(head))
    start = time.perf_counter()
    header = inspect(tf.constant(data))
    assert (int(header.height), int(header.width), int(header.length)) == (10, 10, len(data) - 1)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("kind", ["webp_lossless", "webp_lossy"])
def test_webp_without_a_chunk_header_is_refused(kind):
    """libwebp decodes a raw bitstream after `RIFF....WEBP` from whatever
    sizes it holds; no header field says them, so it is not served."""
    data = crafted.raw_webp(kind)
    assert tf.io.decode_image(data, channels=3, expand_animations=False).shape == (24, 32, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        image_decoding.decode_image(data, max_pixels=10**8)


def test_jpeg_xl_is_refused_before_decoding():
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        image_decoding.decode_image(crafted.jpeg_xl_header(60000, 60000), max_pixels=10**8)
