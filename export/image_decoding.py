"""Decoding untrusted image bytes inside a served graph, with core ops only.

`decode_image` turns one request's bytes into uint8 `[H, W, 3]` or fails
with `InvalidArgument` naming the problem: an empty string, a format other
than JPEG/PNG/GIF/BMP/WebP, corrupt data, or an image of more pixels than
allowed. The size checked is the size the decoder will allocate, read from
the same fields it reads, before anything is decoded:

- JPEG: the frame header, by `tf.io.extract_jpeg_shape` (libjpeg's own).
- PNG: the IHDR chunk, which libpng requires first.
- BMP: the int32 width and height TensorFlow's decoder reads at 18 and 22
  (it also requires the pixel data to be there, uncompressed).
- WebP: the first chunk after `RIFF....WEBP`: `VP8 ` (key frame), `VP8L`,
  or the `VP8X` canvas, which libwebp holds every frame to. A RIFF WebP
  without one of those chunk headers (libwebp would decode a raw bitstream
  from whatever sizes it holds) is refused as an unknown format.
- GIF: giflib sizes its output by the largest frame, not by the logical
  screen, and reads every frame even when only the first is kept. So the
  blocks are walked up to the end of the first frame (`_gif_first_frame`,
  vectorized: a few passes over the bytes however they are laid out), its
  image descriptor gives the size, and only the bytes up to that point, with
  a trailer, go to the decoder: an animation is decoded as its first frame
  alone, at that frame's size.

Every other format `tf.io.decode_image` knows (JPEG XL, for one) is refused
before decoding, with the decoder's own "Unknown image file format" words.
"""

import collections

import tensorflow as tf

from pipelines import preprocessing

#: The formats served, in the order of `Header.format` codes (-1: none).
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WebP")
_JPEG, _PNG, _GIF, _BMP, _WEBP = range(len(FORMATS))
_HEADER_BYTES = 32
#: The most bytes of GIF sub-blocks followed in one vectorized pass.
_MAX_WINDOW = 1 << 18
#: Memory of that pass at most: a few int32 copies of the window.
SEARCH_BYTES = 32 * _MAX_WINDOW
#: More extension blocks before a GIF's first image: not decoded (real files
#: have a few: graphic control, loop count, comments).
_MAX_GIF_EXTENSIONS = 256
UNKNOWN_FORMAT = "Unknown image file format: expected one of " + ", ".join(FORMATS)
EMPTY = "image_bytes is an empty string, expected JPEG, PNG, GIF, BMP or WebP bytes"


def too_large(max_pixels):
    """The words of the refusal of an image over `max_pixels`."""
    return f"image too large: more than max_image_pixels={max_pixels} pixels; height, width:"


#: What `inspect` reads from an image's bytes, all int64 scalars except
#: `format` (int32): `height` x `width` is what the decoder will allocate;
#: `length`, how many leading bytes it gets (a GIF's end of first frame).
Header = collections.namedtuple("Header", ["format", "height", "width", "length"])


def _unsigned(header, offset, size, big_endian):
    """Unsigned integer of `size` bytes at `offset` of a uint8 header."""
    digits = tf.cast(header[offset : offset + size], tf.int64)
    if not big_endian:
        digits = tf.reverse(digits, [0])
    value = tf.constant(0, tf.int64)
    for i in range(size):
        value = value * 256 + digits[i]
    return value


def _follow(jump):
    """`jump` (int32 `[n]`, `jump[i] >= i`, fixed points where a chain ends)
    iterated to its fixed points, by pointer doubling: log2(chain length)
    vectorized passes instead of one step per link."""

    def body(current, _):
        doubled = tf.gather(current, current)
        return doubled, tf.reduce_any(doubled != current)

    return tf.while_loop(lambda _, changed: changed, body, (jump, tf.constant(True)))[0]


def _bytes_at(image_bytes, n, position, size):
    """int32 `[size]`: the bytes at `position`, zeros past the end `n`."""
    piece = tf.strings.substr(image_bytes, tf.minimum(position, n), size)
    padded = tf.strings.substr(tf.strings.join([piece, b"\0" * size]), 0, size)
    return tf.cast(tf.io.decode_raw(padded, tf.uint8), tf.int32)


def _chain_end(image_bytes, n, start):
    """Offset of the empty sub-block that ends the chain of GIF sub-blocks
    (a size byte, then that many bytes) at `start`; `n` if it runs off the end.

    Walked a window at a time, each by pointer doubling, the window growing
    from 1 KiB to `_MAX_WINDOW` bytes: memory stays small and time linear in
    the bytes however short the sub-blocks are (a walk of one sub-block per
    step would take a step per two bytes of a crafted file)."""

    def body(position, window_size, _):
        piece = tf.strings.substr(image_bytes, tf.minimum(position, n), window_size)
        window = tf.cast(tf.io.decode_raw(piece, tf.uint8), tf.int32)
        size = tf.size(window)
        # Encoders write full sub-blocks (255 bytes) but the last: skip those
        # at once, and follow the rest link by link.
        full = tf.math.cumprod(tf.cast(window[::256] == 255, tf.int32))
        skip = 256 * tf.reduce_sum(full)
        rest = window[skip:]
        index = tf.range(tf.size(rest))
        # Offsets past the window (a sub-block that crosses it) end the pass.
        exits = tf.range(tf.size(rest), tf.size(rest) + 257)
        reached = (
            skip + _follow(tf.concat([tf.where(rest == 0, index, index + 1 + rest), exits], 0))[0]
        )
        done = tf.logical_or(reached < size, size < window_size)
        return (
            tf.where(reached < size, position + reached, tf.minimum(position + reached, n)),
            tf.minimum(window_size * 4, _MAX_WINDOW),
            done,
        )

    return tf.while_loop(
        lambda position, window_size, done: tf.logical_not(done),
        body,
        (tf.minimum(start, n), tf.constant(1024), tf.constant(False)),
    )[0]


def _gif_first_frame(image_bytes):
    """`(height, width, end)` of a GIF's first image as giflib reads it:
    header and global colour table, extension blocks (introducer, label,
    sub-blocks), then the first image descriptor, its local colour table,
    LZW code size and data sub-blocks; `end` is the offset after the data's
    terminating empty sub-block. `(0, 0, offset + 1)` when the first block
    that is no extension is not an image (giflib fails at that byte), or
    more than `_MAX_GIF_EXTENSIONS` blocks come first."""
    n = tf.strings.length(image_bytes)

    def colour_table(packed):
        bits = tf.bitwise.bitwise_and(packed, 7) + 1
        return tf.where(packed >= 0x80, tf.bitwise.left_shift(tf.constant(3), bits), 0)

    def is_extension(position, count):
        return tf.logical_and(
            count < _MAX_GIF_EXTENSIONS, _bytes_at(image_bytes, n, position, 1)[0] == 0x21
        )

    def skip_extension(position, count):  # 0x21, a label byte, then sub-blocks
        return _chain_end(image_bytes, n, position + 2) + 1, count + 1

    first, _ = tf.while_loop(
        is_extension,
        skip_extension,
        (13 + colour_table(_bytes_at(image_bytes, n, 10, 1)[0]), tf.constant(0)),
    )
    descriptor = _bytes_at(image_bytes, n, first, 10)  # 0x2C, left, top, width, height, flags
    is_image = descriptor[0] == 0x2C
    width = descriptor[5] + 256 * descriptor[6]
    height = descriptor[7] + 256 * descriptor[8]
    # After the descriptor: its colour table, the LZW code size byte, the data.
    data_start = first + 11 + colour_table(descriptor[9])
    end = tf.minimum(_chain_end(image_bytes, n, data_start) + 1, n)
    zero = tf.constant(0, tf.int32)
    return tuple(
        tf.cast(v, tf.int64)
        for v in (
            tf.where(is_image, height, zero),
            tf.where(is_image, width, zero),
            tf.where(is_image, end, tf.minimum(first + 1, n)),
        )
    )


def inspect(image_bytes):
    """The `Header` of one encoded image (scalar string), read without
    decoding; format -1 and size 0 x 0 for bytes of no served format."""
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    length = tf.cast(tf.strings.length(image_bytes), tf.int64)
    padded = tf.strings.substr(
        tf.strings.join([tf.strings.substr(image_bytes, 0, _HEADER_BYTES), b"\0" * _HEADER_BYTES]),
        0,
        _HEADER_BYTES,
    )
    header = tf.io.decode_raw(padded, tf.uint8)
    magic = tf.strings.substr(padded, 0, 8)

    def found(code, height, width, end=length):
        return tf.constant(code, tf.int32), height, width, end

    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(image_bytes), tf.int64)
        return found(_JPEG, shape[0], shape[1])

    def png():  # IHDR: width, height as big-endian uint32 at 16 and 20
        return found(_PNG, _unsigned(header, 20, 4, True), _unsigned(header, 16, 4, True))

    def gif():
        return found(_GIF, *_gif_first_frame(image_bytes))

    def bmp():  # int32 width at 18, height at 22 (< 0: rows top-down)
        def signed(offset):
            value = _unsigned(header, offset, 4, False)
            return tf.where(value >= 2**31, 2**32 - value, value)

        return found(_BMP, signed(22), signed(18))

    def webp():  # RIFF....WEBP, then the first chunk's fourcc at 12
        fourcc = tf.strings.substr(padded, 12, 4)

        def lossy():  # VP8 key frame: 14-bit width, height at 26, 28
            return found(
                _WEBP,
                tf.bitwise.bitwise_and(_unsigned(header, 28, 2, False), 0x3FFF),
                tf.bitwise.bitwise_and(_unsigned(header, 26, 2, False), 0x3FFF),
            )

        def lossless():  # VP8L: after the 0x2f at 20, 14-bit width-1 then height-1
            bits = _unsigned(header, 21, 4, False)
            width = tf.bitwise.bitwise_and(bits, 0x3FFF) + 1
            height = tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 14), 0x3FFF) + 1
            return found(_WEBP, height, width)

        def extended():  # VP8X: 24-bit canvas width-1, height-1 at 24, 27
            return found(
                _WEBP, _unsigned(header, 27, 3, False) + 1, _unsigned(header, 24, 3, False) + 1
            )

        return tf.case(
            [
                (tf.equal(fourcc, b"VP8 "), lossy),
                (tf.equal(fourcc, b"VP8L"), lossless),
                (tf.equal(fourcc, b"VP8X"), extended),
            ],
            default=unknown,
            exclusive=True,
        )

    def unknown():
        zero = tf.constant(0, tf.int64)
        return tf.constant(-1, tf.int32), zero, zero, length

    # The signatures `tf.io.decode_image` tells formats apart by.
    return Header(
        *tf.case(
            [
                (tf.io.is_jpeg(image_bytes), jpeg),
                (tf.equal(magic, b"\x89PNG\r\n\x1a\n"), png),
                (tf.equal(tf.strings.substr(magic, 0, 4), b"GIF8"), gif),
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
    )


def header_size(image_bytes):
    """`(height, width)` int64 the decoder would allocate for these bytes;
    `(0, 0)` when they are of no served format."""
    header = inspect(image_bytes)
    return header.height, header.width


def checks(header, *, max_pixels=None):
    """The assertions (InvalidArgument when run) that one image's `Header`
    is of a served format and, with `max_pixels`, not larger."""
    found = [tf.debugging.Assert(header.format >= 0, [UNKNOWN_FORMAT + " (by the first bytes)"])]
    if max_pixels:
        found.append(
            tf.debugging.Assert(
                header.height * header.width <= max_pixels,
                [too_large(max_pixels), header.height, header.width],
            )
        )
    return found


def decode_inspected(image_bytes, header):
    """Decodes bytes whose `header` was checked; a GIF as its bytes up to the
    end of its first frame and a trailer, every other format whole."""

    def first_frame():  # ";": the GIF trailer
        return tf.strings.join(
            [tf.strings.substr(image_bytes, 0, tf.cast(header.length, tf.int32)), b";"]
        )

    return preprocessing.decode_rgb(
        tf.cond(tf.equal(header.format, _GIF), first_frame, lambda: image_bytes)
    )


def decode_image(image_bytes, *, max_pixels=None):
    """One encoded image (scalar string) -> uint8 `[H, W, 3]`.

    Args:
      image_bytes: JPEG, PNG, GIF (first frame), BMP or WebP bytes.
      max_pixels: refuse images that would decode to more pixels; None: no cap.

    Raises (when run):
      InvalidArgumentError: empty, not an image, corrupt, or too large.
    """
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    empty = tf.debugging.assert_greater(tf.strings.length(image_bytes), 0, message=EMPTY)
    with tf.control_dependencies([empty]):
        header = inspect(tf.identity(image_bytes))
    with tf.control_dependencies(checks(header, max_pixels=max_pixels)):
        return decode_inspected(tf.identity(image_bytes), header)
