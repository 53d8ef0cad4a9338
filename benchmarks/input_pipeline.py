r"""Input pipeline throughput: decode only vs ours vs a naive pipeline.

Writes realistic shards (full-size JPEGs about 500x375 at quality 90 with
textured, photo-like content, so entropy decoding costs what it does on
ImageNet) to a temporary directory, then measures images/second, side by
side in one run, for:

  decode only  parse + full `decode_jpeg` (the floor any pipeline pays)
  ours         the training pipeline as `delving.train` reads it:
               `pipelines.imagenet.make_dataset` with `normalize=False`,
               `is_training=True`: shard reading with truncation checks,
               shuffle, scale jitter, crop-before-decode, flip, lighting
               shift, uint8 batches (normalised on the accelerator), every
               image checked so that a bad one is named (or skipped)
  ours, check_images=False   the same without the checks
  ours, normalised on the host   `normalize=True`: float32 batches,
               normalised on the CPU (what a caller without a device step
               gets by default)
  naive        full decode, resize the shorter side to s, then random crop
               and flip, uint8 batches (what the crop-before-decode avoids)

Each pipeline repeats its data and is measured in steady state, as training
reads it (one iterator for the whole run): `--repeats` times round robin,
each time a fresh iterator timed over `--num_images` images after 8 untimed
batches (its start-up: threads, the shuffle buffer).

  python benchmarks/input_pipeline.py [--num_images=2048] [--repeats=5]
      [--data_dir=DIR]   # existing train-* shards instead of the written ones,
                         # e.g. pipelines.generate_imagenet_shaped's
"""

import argparse
import io
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines import (
    imagenet,  # noqa: E402
    preprocessing,  # noqa: E402
    records,  # noqa: E402
)
from pipelines.config import IMAGE_SIZE, SCALE_RANGE, InputConfig  # noqa: E402

AUTOTUNE = tf.data.AUTOTUNE
BATCH = 32


def photo_like(rng, height=375, width=500):
    """Multi-octave noise, gradients and shapes: decodes like a photo."""
    image = np.zeros((height, width, 3), np.float32)
    for octave in (4, 16, 64, 200):
        noise = rng.uniform(-1, 1, size=(octave * height // width + 2, octave, 3))
        layer = (
            np.asarray(
                Image.fromarray(((noise + 1) * 127.5).astype(np.uint8)).resize(
                    (width, height), Image.BICUBIC
                ),
                np.float32,
            )
            - 127.5
        )
        image += layer * (90.0 / octave**0.5)
    y, x = np.mgrid[0:height, 0:width]
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(20, 120)
        image[(y - cy) ** 2 + (x - cx) ** 2 < r * r] += rng.uniform(-60, 60, 3)
    return np.clip(image + 128, 0, 255).astype(np.uint8)


def write_shards(directory, num_images, num_shards=4, num_unique=32, seed=0):
    """Shards of `num_images` JPEGs (`num_unique` distinct ones, repeated)."""
    rng = np.random.default_rng(seed)
    unique = []
    for i in range(num_unique):
        height, width = (375, 500) if i % 3 else (500, 375)
        buf = io.BytesIO()
        Image.fromarray(photo_like(rng, height, width)).save(buf, "JPEG", quality=90)
        unique.append((buf.getvalue(), height, width))
    per_shard = num_images // num_shards
    for shard in range(num_shards):
        examples = [
            records.make_example(data, 1 + i % 10, height=height, width=width)
            for i in range(per_shard)
            for data, height, width in [unique[(shard * per_shard + i) % num_unique]]
        ]
        records.write_shard(
            os.path.join(directory, records.shard_name("train", shard, num_shards)), examples
        )
    return np.mean([len(u[0]) for u in unique])


def _parsed(data_dir):
    files = imagenet.list_files(data_dir, "train")
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=len(files), num_parallel_calls=AUTOTUNE
    )
    return ds.map(
        lambda r: tf.io.parse_single_example(r, records.REQUIRED_FEATURES),
        num_parallel_calls=AUTOTUNE,
    )


def decode_only(data_dir):
    ds = (
        _parsed(data_dir)
        .repeat()
        .map(
            lambda f: (
                tf.shape(tf.io.decode_jpeg(f[records.ENCODED], channels=3)),
                f[records.LABEL],
            ),
            num_parallel_calls=AUTOTUNE,
        )
    )
    return ds.batch(BATCH).prefetch(AUTOTUNE)


# As the trainer reads it (delving.training.inputs.make_train_dataset).
OURS = InputConfig(batch_size=BATCH, shuffle_buffer=256, seed=0, repeat=True, normalize=False)


def ours(data_dir, **changes):
    """The trainer's stream, with `changes` to its `InputConfig`."""
    return imagenet.make_dataset(data_dir, "train", OURS.replace(**changes), is_training=True)


def naive(data_dir, image_size=IMAGE_SIZE, scale_range=SCALE_RANGE):
    def process(features):
        image = tf.io.decode_jpeg(features[records.ENCODED], channels=3)
        scale = tf.random.uniform([], *scale_range)
        image = preprocessing.resize_shorter_side(image, scale)
        image = tf.image.random_crop(image, [image_size, image_size, 3])
        image = tf.image.random_flip_left_right(image)
        return preprocessing.to_uint8(image), features[records.LABEL]

    ds = _parsed(data_dir).shuffle(256).repeat().map(process, num_parallel_calls=AUTOTUNE)
    return ds.batch(BATCH, drop_remainder=True).prefetch(AUTOTUNE)


def images_per_second(ds, num_images, skip=8):
    """(images per wall second, CPU milliseconds per image) over `num_images`
    of a fresh iterator, after `skip` untimed batches (its start-up)."""
    iterator = iter(ds)
    for _ in range(skip):
        next(iterator)
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while count < num_images:
        count += int(tf.shape(next(iterator)[1])[0])
    return (count / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / count)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_images", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data_dir", help="read these train-* shards instead of writing some")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.data_dir or scratch
        if args.data_dir:
            print(f"reading {data_dir}; {os.cpu_count()} CPUs")
        else:
            start = time.time()
            mean_bytes = write_shards(data_dir, args.num_images)
            print(
                f"wrote {args.num_images} JPEGs (500x375, q90, {mean_bytes / 1024:.0f} KB mean) "
                f"in {time.time() - start:.1f} s; {os.cpu_count()} CPUs"
            )
        pipelines = [
            ("decode only", decode_only(data_dir)),
            ("ours", ours(data_dir)),
            ("ours, check_images=False", ours(data_dir, check_images=False)),
            ("ours, normalised on the host", ours(data_dir, normalize=True)),
            ("naive", naive(data_dir)),
        ]
        for _, ds in pipelines:  # Warm up: tracing, page cache.
            images_per_second(ds, args.num_images)
        rates = {name: [] for name, _ in pipelines}
        for _ in range(args.repeats):  # Round robin: load changes hit all alike.
            for name, ds in pipelines:
                rates[name].append(images_per_second(ds, args.num_images))
        results = [(name, max(r)[0], min(c for _, c in r)) for name, r in rates.items()]
    base, base_cpu = results[0][1], results[0][2]
    print("\n| pipeline | images/s | vs decode only | CPU ms/image | vs decode only (CPU) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, rate, cpu in results:
        print(f"| {name} | {rate:.0f} | {rate / base:.2f}x | {cpu:.2f} | {base_cpu / cpu:.2f}x |")
    print(
        f"\nours / naive: {results[1][1] / results[-1][1]:.2f}x images/s, "
        f"{results[-1][2] / results[1][2]:.2f}x CPU per image"
    )


if __name__ == "__main__":
    main()
