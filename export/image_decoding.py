"""Decoding untrusted image bytes inside a served graph, with core ops only.

`decode_image` turns one request's bytes into uint8 `[H, W, 3]` or fails
with `InvalidArgument` naming the problem: an empty string, a format other
than JPEG/PNG/GIF/BMP/WebP, corrupt data, or an image whose header claims
more pixels than allowed. The size check reads the header (JPEG via
`tf.io.extract_jpeg_shape`, PNG/GIF/BMP/WebP from their fixed header
fields), so a tiny file that would decode to gigabytes is refused before
decoding. Those are every format `tf.io.decode_image` decodes; bytes of any
other kind have no size to read and fail to decode.
"""

import tensorflow as tf

from pipelines import preprocessing

_HEADER_BYTES = 32


def _unsigned(header, offset, size, big_endian):
    """Unsigned integer of `size` bytes at `offset` of a uint8 header."""
    digits = tf.cast(header[offset : offset + size], tf.int64)
    if not big_endian:
        digits = tf.reverse(digits, [0])
    value = tf.constant(0, tf.int64)
    for i in range(size):
        value = value * 256 + digits[i]
    return value


def header_size(image_bytes):
    """`(height, width)` int64 from an image header; `(0, 0)` when the format
    is none of JPEG, PNG, GIF, BMP and WebP."""
    padded = tf.strings.substr(
        tf.strings.join(
            [tf.strings.substr(image_bytes, 0, _HEADER_BYTES), tf.constant(b"\0" * _HEADER_BYTES)]
        ),
        0,
        _HEADER_BYTES,
    )
    header = tf.io.decode_raw(padded, tf.uint8)
    magic = tf.strings.substr(padded, 0, 8)

    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(image_bytes), tf.int64)
        return shape[0], shape[1]

    def png():  # IHDR: width, height as big-endian uint32 at 16 and 20
        return (_unsigned(header, 20, 4, True), _unsigned(header, 16, 4, True))

    def gif():  # logical screen: little-endian uint16 width, height at 6, 8
        return (_unsigned(header, 8, 2, False), _unsigned(header, 6, 2, False))

    def bmp():  # BITMAPINFOHEADER: int32 width at 18, height at 22 (< 0: top-down)
        def signed(offset):
            value = _unsigned(header, offset, 4, False)
            return tf.where(value >= 2**31, 2**32 - value, value)

        return signed(22), signed(18)

    def webp():  # RIFF....WEBP, then the first chunk's fourcc at 12
        fourcc = tf.strings.substr(padded, 12, 4)

        def lossy():  # VP8 key frame: 14-bit width, height at 26, 28
            return (
                tf.bitwise.bitwise_and(_unsigned(header, 28, 2, False), 0x3FFF),
                tf.bitwise.bitwise_and(_unsigned(header, 26, 2, False), 0x3FFF),
            )

        def lossless():  # VP8L: after the 0x2f at 20, 14-bit width-1 then height-1
            bits = _unsigned(header, 21, 4, False)
            width = tf.bitwise.bitwise_and(bits, 0x3FFF) + 1
            height = tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 14), 0x3FFF) + 1
            return height, width

        def extended():  # VP8X: 24-bit canvas width-1, height-1 at 24, 27
            return _unsigned(header, 27, 3, False) + 1, _unsigned(header, 24, 3, False) + 1

        def other():  # no chunk the decoder knows: it fails on the bytes
            return unknown()

        return tf.case(
            [
                (tf.equal(fourcc, b"VP8 "), lossy),
                (tf.equal(fourcc, b"VP8L"), lossless),
                (tf.equal(fourcc, b"VP8X"), extended),
            ],
            default=other,
            exclusive=True,
        )

    def unknown():
        return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    return tf.case(
        [
            (tf.io.is_jpeg(image_bytes), jpeg),
            (tf.equal(magic, b"\x89PNG\r\n\x1a\n"), png),
            (tf.equal(tf.strings.substr(magic, 0, 3), b"GIF"), gif),
            (tf.equal(tf.strings.substr(magic, 0, 2), b"BM"), bmp),
            (
                tf.logical_and(
                    tf.equal(tf.strings.substr(magic, 0, 4), b"RIFF"),
                    tf.equal(tf.strings.substr(padded, 8, 4), b"WEBP"),
                ),
                webp,
            ),
        ],
        default=unknown,
        exclusive=False,
    )


def decode_image(image_bytes, *, max_pixels=None):
    """One encoded image (scalar string) -> uint8 `[H, W, 3]`.

    Args:
      image_bytes: JPEG, PNG, GIF (first frame), BMP or WebP bytes.
      max_pixels: refuse images whose header claims more pixels; None: no cap.

    Raises (when run):
      InvalidArgumentError: empty, not an image, corrupt, or too large.
    """
    checks = [
        tf.debugging.assert_greater(
            tf.strings.length(image_bytes),
            0,
            message="image_bytes is an empty string, expected JPEG, PNG, GIF, BMP or WebP bytes",
        )
    ]
    if max_pixels:
        height, width = header_size(image_bytes)
        checks.append(
            tf.debugging.Assert(
                height * width <= max_pixels,
                [
                    f"image too large: more than max_image_pixels={max_pixels} "
                    f"pixels; height, width:",
                    height,
                    width,
                ],
            )
        )
    with tf.control_dependencies(checks):
        return preprocessing.decode_rgb(image_bytes)
