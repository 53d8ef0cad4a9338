"""export.image_decoding: the size checked is the size decoded, in every format;
image sizes read from headers, and decoding that refuses decompression bombs
before it starts."""

import io
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from export import image_decoding
from tests import crafted_testutil, export_testutil

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
    for name, signature, inputs in crafted_testutil.crafted_requests(16, 500_000, 250_000):
        if signature != crafted_testutil.BYTES or len(inputs) != 1 or not inputs[0]:
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
    data = crafted_testutil.gif([(600, 700, 9)], screen=(1, 1))  # a few KB
    assert _size(data) == (600, 700)
    with pytest.raises(tf.errors.InvalidArgumentError, match="too large"):
        image_decoding.decode_image(data, max_pixels=250_000)


def test_gif_later_larger_frames_are_not_decoded():
    data = crafted_testutil.gif([(20, 30, 50), (3000, 3000, 200)])
    assert _size(data) == (20, 30)
    image = image_decoding.decode_image(data, max_pixels=600).numpy()
    np.testing.assert_array_equal(image, np.full((20, 30, 3), 50, np.uint8))


def test_animated_gif_decodes_its_first_frame_only():
    """60 frames of 1000x1000: the decoder gets the first alone (giflib
    reads every frame it is given, 60 MB of raster here)."""
    data = crafted_testutil.gif([(1000, 1000, v) for v in range(60)])
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
    head = crafted_testutil.gif([(10, 10, 1)])
    head_end, _ = export_testutil.gif_blocks(head)
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
    data = crafted_testutil.raw_webp(kind)
    assert tf.io.decode_image(data, channels=3, expand_animations=False).shape == (24, 32, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        image_decoding.decode_image(data, max_pixels=10**8)


def test_jpeg_xl_is_refused_before_decoding():
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        image_decoding.decode_image(crafted_testutil.jpeg_xl_header(60000, 60000), max_pixels=10**8)


@pytest.mark.parametrize(
    "fmt,shape",
    [
        ("JPEG", (37, 51)),
        ("PNG", (23, 70)),
        ("GIF", (64, 9)),
        ("BMP", (31, 40)),
    ],
)
def test_header_size_reads_real_headers(fmt, shape):
    data = export_testutil.encode(export_testutil.picture(*shape), fmt)
    got = image_decoding.header_size(tf.constant(data))
    assert tuple(int(v) for v in got) == shape


def _webp(picture, exif=False, **options):
    image = Image.fromarray(picture)
    if exif:  # metadata makes the extended (VP8X) layout
        tags = Image.Exif()
        tags[0x010E] = "delving"  # ImageDescription
        options["exif"] = tags.tobytes()
    out = io.BytesIO()
    image.save(out, "WEBP", **options)
    return out.getvalue()


# Every WebP kind the decoder takes: lossy, lossless, extended.
WEBP_KINDS = [({"quality": 80}, b"VP8 "), ({"lossless": True}, b"VP8L"), ({"exif": True}, b"VP8X")]


@pytest.mark.parametrize("options,chunk", WEBP_KINDS)
def test_webp_sizes_are_read(options, chunk):
    data = _webp(export_testutil.picture(120, 160), **options)
    assert data[12:16] == chunk
    assert tuple(int(v) for v in image_decoding.header_size(tf.constant(data))) == (120, 160)


@pytest.mark.parametrize("options,chunk", WEBP_KINDS)
def test_webp_decoding_is_capped_at_max_pixels(options, chunk):
    data = _webp(export_testutil.picture(120, 160), **options)
    with pytest.raises(tf.errors.InvalidArgumentError, match="too large"):
        image_decoding.decode_image(data, max_pixels=10000)
    assert image_decoding.decode_image(data, max_pixels=19200).shape == (120, 160, 3)


def test_webp_bomb_refused_before_decoding():
    data = bytearray(_webp(export_testutil.picture(120, 160), lossless=True))
    # 16383 x 16383 declared in the VP8L header of a file of a few KB.
    bits = int.from_bytes(data[21:25], "little")
    bits = (bits & ~((1 << 28) - 1)) | (16382 << 14) | 16382
    data[21:25] = bits.to_bytes(4, "little")
    assert tuple(int(v) for v in image_decoding.header_size(tf.constant(bytes(data)))) == (
        16383,
        16383,
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="too large"):
        image_decoding.decode_image(bytes(data), max_pixels=10**8)


@pytest.mark.parametrize("data", [b"", b"GIF", b"not an image at all"])
def test_header_size_of_short_or_unknown_bytes_is_zero(data):
    assert tuple(int(v) for v in image_decoding.header_size(data)) in {(0, 0)}


def test_decode_image_refuses_a_bomb():
    with pytest.raises(tf.errors.InvalidArgumentError, match="too large"):
        image_decoding.decode_image(export_testutil.png_header_only(20000, 30000), max_pixels=10**8)


def test_decode_image_refuses_an_empty_string():
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty string"):
        image_decoding.decode_image(tf.constant(b""))


def test_decode_image_decodes_an_image_of_max_pixels():
    image = export_testutil.picture(20, 30)
    np.testing.assert_array_equal(
        image_decoding.decode_image(export_testutil.encode(image, "PNG"), max_pixels=600), image
    )
