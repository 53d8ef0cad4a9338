"""A small built-in image classification set, so everything runs offline.

Ten classes of shapes and textures (`CLASS_NAMES`), drawn procedurally with a
numpy RNG seeded by `(seed, split, index)`: every image varies in size
(96-160 px), position, scale, rotation, foreground and background colours,
background gradient, clutter and noise. Colours are random for every class,
so no colour statistic separates the classes (a linear model on the mean
colour stays near chance); a small CNN learns the shapes.

Written as real JPEG records in the standard ImageNet schema (labels 1..10,
synsets `b00000001`.., names `circle`..) plus `labels.txt`, so it goes
through exactly the reader, augmentation and training path that ImageNet
does.

Example:
  >>> data_dir = ensure_dataset()          # generated once, ~10 s
  >>> ds = imagenet.make_dataset(data_dir, "train", InputConfig(batch_size=32),
  ...     is_training=True, num_classes=NUM_CLASSES)
"""

import io
import json
import os
import shutil
import socket
import time
import uuid

import numpy as np
from absl import logging
from PIL import Image

from common import errors, files

VERSION = 1
CLASS_NAMES = (
    "circle",
    "ring",
    "square",
    "frame",
    "triangle",
    "star",
    "cross",
    "crescent",
    "stripes",
    "checkerboard",
)
NUM_CLASSES = len(CLASS_NAMES)
SYNSETS = tuple(f"b{i + 1:08d}" for i in range(NUM_CLASSES))
# (split, number of images, number of shards): the defaults training uses.
SPLITS = (("train", 3000, 8), ("validation", 500, 2))
SIZE_RANGE = (96, 160)
INFO_FILE = "dataset_info.json"
_SPLIT_IDS = {"train": 1, "validation": 2}


def default_dir(seed=0):
    """`$DELVING_DATA_DIR/builtin-v1-seed<seed>`, else under ~/.cache/delving."""
    root = os.environ.get("DELVING_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "delving"
    )
    return os.path.join(root, f"builtin-v{VERSION}-seed{seed}")


def _polygon(r, phi, sides):
    sector = 2 * np.pi / sides
    edge = np.cos(np.pi / sides) / np.cos(np.mod(phi, sector) - np.pi / sides)
    return r < 0.95 * edge


def _star(r, phi, points=5, inner=0.45):
    t = np.abs(np.mod(phi, 2 * np.pi / points) * points / np.pi - 1)
    return r < inner + (1 - inner) * t


def shape_mask(label, u, v):
    """The class's region in rotated, scaled coordinates (unit size)."""
    r, phi = np.hypot(u, v), np.arctan2(v, u) + np.pi
    box = np.maximum(np.abs(u), np.abs(v))
    name = CLASS_NAMES[label]
    if name == "circle":
        return r < 1
    if name == "ring":
        return (r < 1) & (r > 0.6)
    if name == "square":
        return box < 0.8
    if name == "frame":
        return (box < 0.85) & (box > 0.52)
    if name == "triangle":
        return _polygon(r, phi, 3)
    if name == "star":
        return _star(r, phi)
    if name == "cross":
        return ((np.abs(u) < 0.3) & (np.abs(v) < 0.95)) | ((np.abs(v) < 0.3) & (np.abs(u) < 0.95))
    if name == "crescent":
        return (r < 1) & (np.hypot(u - 0.5, v) > 0.8)
    if name == "stripes":
        return (r < 1) & (np.sin(u * 3.5 * np.pi) > 0)
    return (box < 0.8) & (np.sin(u * 2.5 * np.pi) * np.sin(v * 2.5 * np.pi) > 0)


def _colour(rng, away_from=None):
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3)
        if away_from is None or np.linalg.norm(colour - away_from) > 110:
            break
    return colour


def render(label, rng, size_range=SIZE_RANGE):
    """One image of class `label`: (uint8 [H, W, 3], bbox (x0, y0, x1, y1))."""
    h, w = rng.integers(size_range[0], size_range[1] + 1, size=2)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    background = _colour(rng)
    ramp = rng.normal(size=3) * 40
    direction = rng.normal(size=2)
    gradient = (direction[0] * y / h + direction[1] * x / w)[..., None]
    image = background + gradient * ramp
    for _ in range(rng.integers(3, 9)):  # Clutter: small blobs and lines.
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        if rng.random() < 0.5:
            ry, rx = rng.uniform(2, 0.09 * min(h, w), size=2)
            blob = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1
        else:
            angle = rng.uniform(0, np.pi)
            dist = np.abs((y - cy) * np.cos(angle) - (x - cx) * np.sin(angle))
            along = np.abs((y - cy) * np.sin(angle) + (x - cx) * np.cos(angle))
            blob = (dist < rng.uniform(0.8, 2.5)) & (along < 0.3 * min(h, w))
        image[blob] = _colour(rng)
    radius = rng.uniform(0.22, 0.42) * min(h, w)
    cy = rng.uniform(radius, h - radius)
    cx = rng.uniform(radius, w - radius)
    angle = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(angle), np.sin(angle)
    u = (c * (x - cx) + s * (y - cy)) / radius
    v = (-s * (x - cx) + c * (y - cy)) / radius
    mask = shape_mask(label, u, v)
    image[mask] = _colour(rng, away_from=background)
    image += rng.normal(scale=rng.uniform(3, 15), size=image.shape)
    ys, xs = np.nonzero(mask)
    bbox = (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)
    return np.clip(image, 0, 255).astype(np.uint8), bbox


def _examples(split, count, first, seed, size_range):
    from pipelines import records  # TensorFlow: only when generating

    for index in range(first, first + count):
        rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
        label = index % NUM_CLASSES
        image, bbox = render(label, rng, size_range)
        out = io.BytesIO()
        Image.fromarray(image).save(out, "JPEG", quality=90)
        yield records.make_example(
            out.getvalue(),
            label + 1,
            synset=SYNSETS[label],
            text=CLASS_NAMES[label],
            height=image.shape[0],
            width=image.shape[1],
            filename=f"{split}_{index:05d}.JPEG",
            bboxes=[bbox],
        )


def write_labels_file(path, synsets, names):
    with open(path, "w") as f:
        f.writelines("{}\t{}\n".format(*pair) for pair in zip(synsets, names))


def _generate(directory, seed, splits, size_range):
    from pipelines import records  # TensorFlow: only when generating

    os.makedirs(directory)
    for split, count, num_shards in splits:
        per_shard = -(-count // num_shards)
        for shard in range(num_shards):
            first = shard * per_shard
            records.write_shard(
                os.path.join(directory, records.shard_name(split, shard, num_shards)),
                _examples(split, min(per_shard, count - first), first, seed, size_range),
            )
    write_labels_file(os.path.join(directory, "labels.txt"), SYNSETS, CLASS_NAMES)
    info = dict(
        version=VERSION,
        seed=seed,
        num_classes=NUM_CLASSES,
        classes=list(CLASS_NAMES),
        size_range=list(size_range),
        splits={name: count for name, count, _ in splits},
    )
    with open(os.path.join(directory, INFO_FILE), "w") as f:
        json.dump(info, f, indent=1)  # Written last: marks the set complete.


def ensure_dataset(output_dir=None, *, seed=0, splits=SPLITS, size_range=SIZE_RANGE):
    """Returns a directory holding the built-in dataset, generating it once.

    Generation writes to a temporary sibling directory and renames it when
    complete, so an interrupted run never leaves a half dataset behind, and
    two processes generating at once both end up with the same result.

    Args:
      output_dir: where the dataset lives; default `default_dir(seed)`.
      seed: the generator's seed; the same seed gives the same bytes.
      splits: `((split, num_images, num_shards), ...)`; smaller values make
        small test sets (keep the default for training).
      size_range: `(min, max)` image height and width in pixels.

    Returns:
      The directory, with `train-*`, `validation-*` shards and `labels.txt`.

    Raises:
      DataError: `output_dir` exists, is not empty and holds no built-in set.
    """
    output_dir = os.path.abspath(output_dir or default_dir(seed))
    there = output_dir
    while not os.path.exists(there):
        there = os.path.dirname(there)
    if not os.path.isdir(there):
        raise errors.DataError(
            f"cannot keep the built-in dataset in {output_dir}: {there} is a file, not a "
            "directory (set $DELVING_DATA_DIR to a directory)"
        )
    _remove_dead_generations(output_dir)
    if os.path.exists(os.path.join(output_dir, INFO_FILE)):
        return output_dir
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise errors.DataError(
            f"{output_dir} exists but holds no complete built-in dataset (no {INFO_FILE}); pass an "
            "empty or new directory"
        )
    try:
        os.makedirs(os.path.dirname(output_dir), exist_ok=True)
    except PermissionError:
        raise errors.DataError(
            f"cannot create {os.path.dirname(output_dir)} for the built-in dataset: permission "
            "denied (set $DELVING_DATA_DIR to a writable directory)"
        ) from None
    # Host and pid in the name: a killed generation's directory is removed at
    # the next start (`_remove_dead_generations`), a live one's left alone.
    tmp = f"{output_dir}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    logging.info("Generating the built-in dataset into %s ...", output_dir)
    start = time.time()
    try:
        _generate(tmp, seed, splits, size_range)
        if os.path.isdir(output_dir):
            os.rmdir(output_dir)  # Empty (checked above).
        os.rename(tmp, output_dir)
    except OSError:
        if not os.path.exists(os.path.join(output_dir, INFO_FILE)):
            raise
        # Another process finished first: its copy is identical.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logging.info("Built-in dataset ready in %.1f s: %s", time.time() - start, output_dir)
    return output_dir


def _remove_dead_generations(output_dir):
    """Removes the temporary directories of generations killed on this host."""
    parent, name = os.path.split(output_dir)
    if not os.path.isdir(parent):
        return
    prefix = f"{name}.tmp-{socket.gethostname()}-"
    for entry in os.listdir(parent):
        pid = entry[len(prefix) :].split("-")[0] if entry.startswith(prefix) else ""
        if pid.isdigit() and not files.pid_alive(int(pid)):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
