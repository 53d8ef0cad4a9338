"""Crafted image bytes and requests for the serving tests, generated, never stored.

- `gif(frames, screen=None)`: a GIF of real LZW frames (Pillow's) whose
  logical screen may claim any size.
- `declare_size(data, kind, height, width)`: a real image whose size fields
  say something else (PNG with its CRC fixed, so libpng reads on).
- `crafted_requests(max_images, max_pixels, max_image_pixels)`: over 1,000
  requests (name, signature, inputs)
  a server must survive: every format's size fields lying in every
  direction, multi-frame GIFs, truncated, flipped and empty bytes, formats
  that are not served, and batches over every per-request limit.
"""

import io
import struct
import zlib

import numpy as np
from PIL import Image

from tests import export_testutil

BYTES, IMAGES = "serving_default", "predict_images"
#: Kinds of image crafted, each a Pillow format and its options.
KINDS = {
    "jpeg": ("JPEG", {"quality": 90}),
    "jpeg_progressive": ("JPEG", {"quality": 90, "progressive": True}),
    "png": ("PNG", {}),
    "gif": ("GIF", {}),
    "bmp": ("BMP", {}),
    "webp_lossy": ("WEBP", {"quality": 80}),
    "webp_lossless": ("WEBP", {"lossless": True}),
    "webp_extended": ("WEBP", {"quality": 80, "exif": b"Exif\0\0MM\0*\0\0\0\x08\0\0"}),
}


def image(kind, height=24, width=32, seed=0):
    fmt, options = KINDS[kind]
    return export_testutil.encode(export_testutil.picture(height, width, seed), fmt, **options)


def _flat_frame(height, width, value):
    """A one-frame GIF of one grey level (LZW packs it to a few KB)."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width), value, np.uint8), "L").save(buffer, "GIF")
    return buffer.getvalue()


def gif(frames, screen=None, declared=None):
    """A GIF of `frames` (height, width, grey level) each encoded by Pillow;
    `screen`: the (height, width) its logical screen claims (default: the
    first frame's); `declared`: {frame index: (height, width)} its image
    descriptor claims instead (a frame too large to encode for real)."""
    encoded = [_flat_frame(*frame) for frame in frames]
    head, _ = export_testutil.gif_blocks(encoded[0])
    images = []
    for i, data in enumerate(encoded):
        _, blocks = export_testutil.gif_blocks(data)
        block = bytearray(next(data[s:e] for kind, s, e in blocks if kind == 0x2C))
        height, width = (declared or {}).get(i, frames[i][:2])
        block[5:9] = struct.pack("<HH", width, height)
        images.append(bytes(block))
    data = bytearray(encoded[0][:head] + b"".join(images) + b";")
    height, width = screen or frames[0][:2]
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def declare_size(data, kind, height, width):
    """`data` (a real image of `kind`) with its size fields claiming
    height x width (for a GIF, its first frame's descriptor)."""
    data = bytearray(data)
    if kind == "png":
        data[16:24] = struct.pack(">II", width, height)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    elif kind == "gif":
        _, blocks = export_testutil.gif_blocks(bytes(data))
        start = next(s for k, s, _ in blocks if k == 0x2C)
        data[start + 5 : start + 9] = struct.pack("<HH", width, height)
    elif kind == "bmp":
        data[18:26] = struct.pack("<ii", width, height)
    elif kind == "webp_lossy":  # 14 bits each, the scale bits kept
        for offset, value in ((26, width), (28, height)):
            old = int.from_bytes(data[offset : offset + 2], "little")
            data[offset : offset + 2] = ((old & 0xC000) | (value & 0x3FFF)).to_bytes(2, "little")
    elif kind == "webp_lossless":  # 14-bit sizes minus one
        bits = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)
        data[21:25] = (bits | ((height - 1) & 0x3FFF) << 14 | ((width - 1) & 0x3FFF)).to_bytes(
            4, "little"
        )
    elif kind == "webp_extended":  # 24-bit canvas sizes minus one
        data[24:27] = ((width - 1) % (1 << 24)).to_bytes(3, "little")
        data[27:30] = ((height - 1) % (1 << 24)).to_bytes(3, "little")
    else:  # JPEG: the frame header (baseline SOF0 or progressive SOF2)
        sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
        data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def jpeg_xl_header(height, width):
    """A JPEG XL codestream's first bytes claiming height x width."""
    fields = [(0, 1), (3, 2), (height - 1, 30), (1, 3), (1, 1)]  # not small, 30-bit, 1:1
    bits = sum(value << sum(w for _, w in fields[:i]) for i, (value, _) in enumerate(fields))
    return b"\xff\x0a" + bits.to_bytes(5, "little") + b"\0" * 32


def raw_webp(kind="webp_lossless"):
    """A RIFF WebP holding its bitstream with no chunk header, which
    libwebp decodes from whatever sizes the bitstream holds."""
    data = image(kind)
    data = data[:12] + data[20:]
    return data[:4] + struct.pack("<I", len(data) - 8) + data[8:]


def _sizes(height, width, limit_side):
    """Declared sizes lying in every direction around a real height x width."""
    return [
        (1, 1),
        (height - 1, width),
        (height, width + 1),
        (height // 2, width // 2),
        (2 * height, 2 * width),
        (width, height),
        (0, width),
        (height, 0),
        (limit_side, limit_side),
        (limit_side + 1, limit_side),
        (4000, 4000),
        (1, 16383),
        (16383, 1),
        (16383, 16383),
        (65535, 65535),
    ]


def crafted_requests(max_images, max_pixels, max_image_pixels, seed=0):
    """[(name, signature, inputs)]: over 1,000 requests, one or many images
    each, around an export's per-request limits (`max_image_pixels`: a
    square's)."""
    rng = np.random.default_rng(seed)
    side = int(max_image_pixels**0.5)
    requests = []

    def add(name, inputs, signature=BYTES):
        requests.append((name, signature, inputs))

    for kind in KINDS:
        for shape_seed, (height, width) in enumerate([(24, 32), (37, 23), (64, 64), (9, 130)]):
            data = image(kind, height, width, shape_seed)
            add(f"real_{kind}_{height}x{width}", [data])
            for h, w in _sizes(height, width, side):
                add(f"lie_{kind}_{height}x{width}_as_{h}x{w}", [declare_size(data, kind, h, w)])
            for i in range(8):
                cut = int(rng.integers(1, len(data)))
                add(f"cut_{kind}_{height}x{width}_{i}", [data[:cut]])
            for i in range(8):
                flipped = bytearray(data)
                flipped[int(rng.integers(0, min(len(data), 80)))] ^= 1 << int(rng.integers(0, 8))
                add(f"flip_{kind}_{height}x{width}_{i}", [bytes(flipped)])
    # GIFs: the logical screen and each frame sized independently.
    for i, (screen, frames) in enumerate(
        [
            ((1, 1), [(side + 8, side + 8, 9)]),
            ((1, 1), [(4000, 4000, 7)]),
            ((side, side), [(20, 30, 1), (4000, 4000, 2)]),
            ((20, 30), [(20, 30, 1), (side, side, 2), (4000, 4000, 3)]),
            ((4000, 4000), [(20, 30, 5)]),
            ((65535, 65535), [(16, 16, 5)]),
            ((16, 16), [(16, 16, 1)] * 40),
            ((16, 16), [(16, 16, 1), (16, 16, 2)]),
        ]
    ):
        # The last: a second frame claiming 65535 x 65535 (4 GB of raster).
        declared = {1: (65535, 65535)} if i == 7 else None
        add(f"gif_frames_{i}", [gif(frames, screen, declared)])
    many = gif([(side, side, v) for v in range(60)])  # each frame at the limit
    add("gif_60_frames_at_the_limit", [many])
    add("gif_second_frame_cut", [many[: len(many) // 3]])
    # Bytes of no served format.
    for i in range(60):
        add(f"random_{i}", [rng.bytes(int(rng.integers(1, 300)))])
    add("jpeg_xl", [jpeg_xl_header(4000, 4000)])
    add("webp_raw_lossless", [raw_webp("webp_lossless")])
    add("webp_raw_lossy", [raw_webp("webp_lossy")])
    add("tiff", [export_testutil.encode(export_testutil.picture(20, 20), "TIFF")])
    add("empty", [b""])
    add("empty_after_an_image", [image("png"), b""])
    add("no_images", [])
    # Batches over and under each per-request limit.
    small = image("png", 8, 8)
    for count in (max_images, max_images + 1, 100, 1000):
        add(f"batch_of_{count}", [small] * count)
    square = export_testutil.encode(
        np.zeros((side, side, 3), np.uint8), "PNG"
    )  # compresses to a few KB
    fits = max_pixels // max_image_pixels
    add("batch_at_the_pixel_limit", [square] * fits)
    add("batch_over_the_pixel_limit", [square] * (fits + 1))
    add("batch_with_a_bad_image", [small, b"junk", small])
    for count, height, width in [
        (1, 1, 1),
        (max_images, 1, 1),
        (max_images + 1, 1, 1),
        (1000, 1, 1),
        (1, side, side),
        (2, side, side + 1),
        (fits + 1, side, side),
        (1, 1, 4 * side),
        (0, 4, 4),
        (1, 0, 0),
    ]:
        pixels = rng.integers(0, 255, (count, height, width, 3), dtype=np.uint8)
        add(f"pixels_{count}x{height}x{width}", pixels, IMAGES)
    return requests
