"""Shared by the export tests: tiny trained-model dirs and real image bytes."""

import io

import keras
import numpy as np
from PIL import Image

from delving import config as config_lib
from delving import models, run_files
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
        net = models.build_model(model, activation=activation, seed=seed, **TINY)
    finally:
        keras.config.set_dtype_policy(previous)
    run_files.write_config(cfg)
    run_files.write_classes(cfg, CLASSES)
    net.save(run_files.paths(str(model_dir))["model"])
    return str(model_dir)


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
