"""Generated images with ImageNet's shape, for dry runs of the full recipe.

Nothing is downloaded: `write_images` draws JPEGs into an ImageNet-style
folder, `<image_dir>/<split>/<synset>/<synset>_<n>.JPEG`, plus a
`synsets.txt` labels file (`synset<TAB>name`, ImageNet's sorted synset
order); `generate` then converts that folder with the project's own builder
(`pipelines.tfrecord_builder`) into standard ImageNet TFRecords, so the
records are made exactly as real ImageNet's would be.

What is drawn like ImageNet's train set (ILSVRC-2012):
  * `NUM_CLASSES` (1000) classes named by synsets `n0xxxxxxx`;
  * the shorter side uniform in `SHORT_SIDE` (300-500 px), the longer side
    `ASPECTS` times it (1:1 to 16:9), a quarter of the images portrait;
  * JPEG quality in `QUALITY` and content (smooth gradients, blurred
    multi-scale texture, a few shapes, sensor-like noise) that compress to
    ~100 kB a file, as ImageNet's ~110 kB mean does;
  * a few grayscale JPEGs and a few CMYK JPEGs (ImageNet's train set has
    both; the builder keeps grayscale bytes and re-encodes CMYK as RGB).

The content does not depend on the class: these sets measure the cost of
the recipe at full size, not what it learns.

Example:
  >>> generate("/tmp/shaped", "train", images_per_class=2)
  BuildResult(num_images=2000, ...)
"""

import io
import json
import os
import zlib

import numpy as np
from absl import logging
from PIL import Image

from common import errors

NUM_CLASSES = 1000
SHORT_SIDE = (300, 500)
# Longer side over shorter side, and how often each comes up.
ASPECTS = ((1.0, 0.1), (4 / 3, 0.6), (3 / 2, 0.2), (16 / 9, 0.1))
PORTRAIT_FRACTION = 0.25
QUALITY = (85, 95)
# Per-pixel noise (std, 8-bit levels): what sets the file size.
GRAIN = (10.0, 16.0)
GRAYSCALE_FRACTION = 0.02
CMYK_FRACTION = 0.01
LABELS_FILE = "synsets.txt"
SPLITS = ("train", "validation")


def synsets(num_classes=NUM_CLASSES, seed=0):
    """`num_classes` distinct, sorted synset ids `n0xxxxxxx` (ImageNet's range)."""
    rng = np.random.default_rng([seed, 0])
    numbers = rng.choice(np.arange(1_000_000, 10_000_000), size=num_classes, replace=False)
    return [f"n{n:08d}" for n in sorted(numbers)]


def image_size(rng):
    """(height, width) drawn like ImageNet's."""
    short = int(rng.integers(SHORT_SIDE[0], SHORT_SIDE[1] + 1))
    ratios, weights = zip(*ASPECTS)
    long = int(round(short * ratios[rng.choice(len(ratios), p=weights)]))
    return (long, short) if rng.random() < PORTRAIT_FRACTION else (short, long)


def _texture(rng, height, width):
    """Blurred noise at several scales: PIL's bicubic upsampling is the blur,
    cheap at any size (a numpy filter over 0.4 Mpx would cost seconds)."""
    image = np.zeros((height, width, 3), np.float32)
    for cells, amplitude in ((3, 70), (12, 35), (48, 18)):
        noise = rng.uniform(0, 255, size=(max(2, cells * height // width), cells, 3))
        layer = Image.fromarray(noise.astype(np.uint8)).resize((width, height), Image.BICUBIC)
        image += (np.asarray(layer, np.float32) - 127.5) * (amplitude / 127.5)
    return image


def render(rng):
    """One RGB image: uint8 [H, W, 3]."""
    height, width = image_size(rng)
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    direction = rng.normal(size=2)
    ramp = (direction[0] * y / height + direction[1] * x / width)[..., None]
    colour, slope = rng.uniform(60, 200, size=3), rng.normal(scale=40, size=3)
    image = _texture(rng, height, width) + (colour + ramp * slope).astype(np.float32)
    for _ in range(rng.integers(2, 7)):  # computed inside each shape's box only
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.05, 0.3, size=2) * min(height, width)
        rows = slice(max(0, int(cy - ry)), int(cy + ry) + 1)
        cols = slice(max(0, int(cx - rx)), int(cx + rx) + 1)
        inside = np.ones((1, 1), bool)
        if rng.random() < 0.5:
            inside = ((y[rows] - cy) / ry) ** 2 + ((x[:, cols] - cx) / rx) ** 2 < 1
        patch = image[rows, cols]
        patch[np.broadcast_to(inside, patch.shape[:2])] += rng.uniform(-80, 80, size=3).astype(
            np.float32
        )
    grain = rng.standard_normal(size=(height, width, 1), dtype=np.float32)
    image += grain * np.float32(rng.uniform(*GRAIN))
    return np.clip(image, 0, 255).astype(np.uint8)


def _modes(count, rng):
    """`count` JPEG modes: mostly RGB, at least one grayscale and one CMYK
    where the fractions allow any, as ImageNet's train set has both."""
    modes = np.array(["RGB"] * count, dtype=object)
    order = rng.permutation(count)
    gray = max(1, round(count * GRAYSCALE_FRACTION)) if count >= 3 else 0
    cmyk = max(1, round(count * CMYK_FRACTION)) if count >= 3 else 0
    modes[order[:gray]] = "L"
    modes[order[gray : gray + cmyk]] = "CMYK"
    return modes.tolist()


def encode(image, mode, quality):
    """JPEG bytes of `image` stored in `mode` ("RGB", "L" or "CMYK")."""
    out = io.BytesIO()
    Image.fromarray(image).convert(mode).save(out, "JPEG", quality=quality)
    return out.getvalue()


def write_images(
    image_dir, split, *, images_per_class, num_classes=NUM_CLASSES, class_stride=1, seed=0
):
    """Draws the `split` folder and the labels file (all `num_classes`).

    `class_stride` > 1 draws images of every that-many-th class only (labels
    still range over all classes): a small set that reads as the full one.

    Every image has its own RNG, seeded by (seed, split, class, index), so the
    same arguments write the same bytes.

    Returns:
      (path of the labels file, {mode: number of images}).

    Raises:
      DataError: `split` unknown, `images_per_class` or `num_classes` < 1.
    """
    if split not in SPLITS:
        raise errors.DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if min(images_per_class, num_classes, class_stride) < 1:
        raise errors.DataError("images_per_class, num_classes and class_stride must be at least 1")
    names = synsets(num_classes, seed)
    labels_path = os.path.join(image_dir, LABELS_FILE)
    drawn = list(enumerate(names))[::class_stride]
    _check_same_generation(image_dir, split, images_per_class, num_classes, class_stride, seed)
    with open(labels_path, "w") as f:
        f.writelines(f"{s}\tgenerated class {i + 1:04d}\n" for i, s in enumerate(names))
    split_id = zlib.crc32(split.encode())
    modes = _modes(len(drawn) * images_per_class, np.random.default_rng([seed, split_id]))
    tally = {}
    for n, (c, synset) in enumerate(drawn):
        folder = os.path.join(image_dir, split, synset)
        os.makedirs(folder, exist_ok=True)
        for i in range(images_per_class):
            rng = np.random.default_rng([seed, split_id, c, i])
            mode = modes[n * images_per_class + i]
            data = encode(render(rng), mode, int(rng.integers(QUALITY[0], QUALITY[1] + 1)))
            with open(os.path.join(folder, f"{synset}_{i + 1}.JPEG"), "wb") as f:
                f.write(data)
            tally[mode] = tally.get(mode, 0) + 1
    return labels_path, tally


def _check_same_generation(image_dir, split, images_per_class, num_classes, class_stride, seed):
    """Records what `split`'s folder holds; refuses, before writing anything,
    to add other images to a folder (and then records) of another generation."""
    path = os.path.join(image_dir, f"{split}.generated.json")
    args = dict(
        images_per_class=images_per_class,
        num_classes=num_classes,
        class_stride=class_stride,
        seed=seed,
    )
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old != args:
            changed = ", ".join(
                f"{k}={old.get(k)} (now {v})" for k, v in args.items() if old.get(k) != v
            )
            raise errors.DataError(
                f"{image_dir} holds the {split} images of another generation: {changed}; "
                "pass a new output directory"
            )
    elif os.path.isdir(os.path.join(image_dir, split)):
        raise errors.DataError(
            f"{os.path.join(image_dir, split)} exists but was not generated here; pass a new "
            "output directory"
        )
    os.makedirs(image_dir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(args, f)


def generate(
    output_dir,
    split,
    *,
    images_per_class,
    image_dir=None,
    num_classes=NUM_CLASSES,
    class_stride=1,
    num_shards=None,
    seed=0,
    progress=False,
):
    """Draws `split` into `image_dir` (default `<output_dir>/images`) and
    converts it with `pipelines.tfrecord_builder` into `output_dir`.

    Returns:
      The builder's `BuildResult`.
    """
    from pipelines import tfrecord_builder  # TensorFlow: only when converting

    image_dir = image_dir or os.path.join(output_dir, "images")
    labels_path, tally = write_images(
        image_dir,
        split,
        images_per_class=images_per_class,
        num_classes=num_classes,
        class_stride=class_stride,
        seed=seed,
    )
    logging.info("%s: drew %s JPEGs into %s", split, tally, image_dir)
    return tfrecord_builder.build(
        image_dir,
        output_dir,
        split,
        labels_file=labels_path,
        num_shards=num_shards,
        seed=seed,
        progress=progress,
    )
