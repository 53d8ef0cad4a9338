"""Shared by the export tests: tiny trained-model dirs and real image bytes."""

import io
import os
import struct

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from delving.models import networks
from delving.training import config as config_lib
from delving.training import run_dir
from pipelines.labels import ClassInfo

NUM_CLASSES = 5
CLASSES = [ClassInfo(i, f"n0000000{i}", f"class {i}") for i in range(NUM_CLASSES)]
TINY = dict(num_classes=NUM_CLASSES, width_multiplier=1 / 32, fc_units=16)


def write_model_dir(
    model_dir, *, model="model_a", activation="prelu", seed=0, mixed_precision="none", **config
):
    """A model_dir as `delving.train` leaves it, written by its own writers
    (`run_files`) around an untrained tiny network; `config`: more
    TrainConfig fields."""
    cfg = config_lib.TrainConfig(
        model=model,
        activation=activation,
        seed=seed,
        model_dir=str(model_dir),
        mixed_precision=mixed_precision,
        **TINY,
        **config,
    )
    policy = {"none": "float32", "float16": "mixed_float16"}[mixed_precision]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        net = networks.build_model(model, activation=activation, seed=seed, **TINY)
    finally:
        keras.config.set_dtype_policy(previous)
    run_dir.save_config(cfg, run_dir.paths(cfg.model_dir)["config"])
    run_dir.write_classes(cfg.model_dir, CLASSES)
    net.save(run_dir.paths(str(model_dir))["model"])
    return str(model_dir)


def stored_values(saved_model_dir):
    """How many variable values the SavedModel's checkpoint holds."""
    checkpoint = os.path.join(saved_model_dir, "variables", "variables")
    return sum(
        int(np.prod(shape))
        for name, shape in tf.train.list_variables(checkpoint)
        if name.endswith("VARIABLE_VALUE")
    )


def picture(height, width, seed=0):
    """A smooth synthetic RGB picture (gradients and a disc), uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width, 2)
    cy, cx, r = rng.uniform(0.2, 0.8, 3) * [1, 1, 0.5]
    disc = (y - cy) ** 2 + (x - cx) ** 2 < r * r
    rgb = np.stack([x, y, disc * 0.8 + 0.1 * x], -1)
    return (255 * np.clip(rgb + rng.normal(0, 0.02, rgb.shape), 0, 1)).astype(np.uint8)


def encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def animated_gif(height, width):
    frames = [Image.fromarray(picture(height, width, seed)) for seed in (1, 2)]
    buffer = io.BytesIO()
    frames[0].save(
        buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0
    )
    return buffer.getvalue()


def png_header_only(height, width):
    """The first bytes of a PNG that claims `height x width`: a decompression
    bomb's header (the server must refuse it before decoding)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = (
        struct.pack(">I", len(ihdr))
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\0" * 64


def gif_blocks(data):
    """`(end of header and colour table, [(kind byte, start, end), ...])`:
    the blocks of a GIF as giflib reads them, up to a byte that is none."""
    packed = data[10]
    position = head = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    blocks = []
    while position < len(data) and data[position] in (0x21, 0x2C):
        start, kind = position, data[position]
        if kind == 0x21:
            position += 2
        else:
            flags = data[position + 9]
            position += 11 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
        while position < len(data) and data[position]:
            position += 1 + data[position]
        position += 1
        blocks.append((kind, start, position))
    return head, blocks


def _declare_size(data, fmt, height, width):
    """`data` (a real image of `fmt`) with its header claiming height x width."""
    data = bytearray(data)
    if fmt == "PNG":
        data[16:24] = struct.pack(">II", width, height)
    elif fmt == "GIF":  # the first frame's: the size giflib allocates
        _, blocks = gif_blocks(bytes(data))
        start = next(s for kind, s, _ in blocks if kind == 0x2C)
        data[start + 5 : start + 9] = struct.pack("<HH", width, height)
    elif fmt == "BMP":
        data[18:26] = struct.pack("<ii", width, height)
    elif fmt == "WEBP":  # lossless: 14-bit sizes minus one
        bits = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)
        data[21:25] = (bits | (height - 1) << 14 | (width - 1)).to_bytes(4, "little")
    else:  # JPEG: the baseline frame header (SOF0) holds height, width
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


#: Formats the served model decodes, as Pillow names them (WebP lossless).
SERVED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")


def malformed_corpus(seed=0):
    """1,000 request payloads a server must survive, by kind (name -> bytes):
    random bytes, real images cut short or with a flipped byte, the formats'
    magic followed by junk, and headers declaring up to 16383^2..60000^2
    pixels (the sizes each format can declare)."""
    rng = np.random.default_rng(seed)
    seeds = {
        fmt: encode(picture(24, 32, i), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
        for i, fmt in enumerate(SERVED_FORMATS)
    }
    magic = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"RIFF\0\0\0\0WEBPVP8L"]
    corpus = {}
    for i in range(200):
        corpus[f"random_{i}"] = rng.bytes(int(rng.integers(1, 400)))
    for i in range(250):
        fmt = SERVED_FORMATS[i % 5]
        data = seeds[fmt]
        corpus[f"cut_{fmt}_{i}"] = data[: int(rng.integers(1, len(data)))]
    for i in range(250):
        fmt = SERVED_FORMATS[i % 5]
        data = bytearray(seeds[fmt])
        data[int(rng.integers(0, min(len(data), 64)))] ^= 1 << int(rng.integers(0, 8))
        corpus[f"flip_{fmt}_{i}"] = bytes(data)
    for i in range(150):
        corpus[f"magic_{i}"] = magic[i % 5] + rng.bytes(int(rng.integers(0, 200)))
    for i in range(150):
        fmt = SERVED_FORMATS[i % 5]
        most = 16383 if fmt == "WEBP" else 65535 if fmt in ("GIF", "JPEG") else 60000
        height, width = (int(v) for v in rng.integers(12000, most + 1, 2))
        corpus[f"bomb_{fmt}_{i}"] = _declare_size(seeds[fmt], fmt, height, width)
    assert len(corpus) == 1000
    return corpus
