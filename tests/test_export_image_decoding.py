"""export.image_decoding: image sizes read from headers, and decoding that
refuses decompression bombs before it starts."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from export import image_decoding
from tests import export_testutil


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
