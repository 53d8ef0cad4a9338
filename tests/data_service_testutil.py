"""Real tf.data service servers on localhost, and records whose crops tell
their augmentation.

- `servers(num_workers)`: an in-process dispatcher and workers (stopped,
  workers first, on exit: a dispatcher stopped first leaves its workers
  retrying it for minutes at interpreter exit).
- `ramp_shards(data_dir, ...)`: square JPEGs whose red channel ramps with x
  and green with y, labelled with their record id (1-based), so a crop shows
  its scale (the red range it spans) and its flip (the ramp's direction).
- `crop_geometry(images, side, image_size)`: per crop the scale `s` its red
  range implies and whether it was flipped.
"""

import contextlib
import os

import numpy as np

from pipelines import data_service, records
from tests import imaging_testutil

#: Shorter side of the ramp images; scales must stay in [image_size, ...].
RAMP_SIDE = 64


@contextlib.contextmanager
def servers(num_workers, *, worker_timeout_ms=None):
    """(`grpc://localhost:port` of the dispatcher, [workers])."""
    dispatcher = data_service.start_dispatcher(0, worker_timeout_ms=worker_timeout_ms)
    address = f"localhost:{data_service.bound_port(dispatcher)}"
    workers = [
        data_service.start_worker(address, port=0, host="localhost") for _ in range(num_workers)
    ]
    try:
        yield f"grpc://{address}", workers
    finally:
        for worker in workers:
            worker.stop()
        dispatcher.stop()


def ramp_image(side=RAMP_SIDE):
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    ramp = 255.0 / (side - 1)
    return np.stack([x * ramp, y * ramp, np.full_like(x, 128.0)], axis=-1).astype(np.uint8)


def ramp_shards(data_dir, *, num_shards, per_shard, side=RAMP_SIDE):
    """`train-*` and `validation-*` shards of ramp images; labels are the
    record ids 1..num_shards*per_shard (label_offset 1, one class each)."""
    os.makedirs(data_dir, exist_ok=True)
    encoded = imaging_testutil.encode(ramp_image(side), "jpeg", quality=98)
    for split in ("train", "validation"):
        for shard in range(num_shards):
            first = shard * per_shard
            imaging_testutil.write_records(
                os.path.join(data_dir, records.shard_name(split, shard, num_shards)),
                [
                    records.make_example(
                        encoded, first + i + 1, height=side, width=side, filename=f"{first + i}"
                    )
                    for i in range(per_shard)
                ],
            )
    return data_dir


def crop_geometry(images, *, image_size, side=RAMP_SIDE):
    """`(scales, flipped)` of uint8 crops `[N, S, S, 3]` of ramp images.

    A crop of `image_size` pixels at scale `s` covers `w = image_size * side / s`
    image pixels; its first and last columns' samples lie `w * (S - 1) / S`
    apart, over which red rises by 255 / (side - 1) per pixel.
    """
    red = images[..., 0].astype(np.float64)
    rise = red[:, :, -1].mean(axis=1) - red[:, :, 0].mean(axis=1)
    window = np.abs(rise) * (side - 1) / 255.0 * image_size / (image_size - 1)
    return image_size * side / window, rise < 0
