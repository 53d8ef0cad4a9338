"""A small training split held decoded in memory, augmented a batch at a time.

For a dataset that fits in memory (the built-in one: 3000 images, 0.25 GB
here) the streaming pipeline's per-image work, a JPEG decode, a resize and
a dozen small ops in a `tf.data` map (~0.3 ms per image on a 2-core CPU,
a quarter of a training step there), is done once instead of every epoch:

1. `load` decodes the split once, through the checked readers (a bad image
   is named or skipped as in streaming), resizes each image so that its
   shorter side is `side` and keeps it as uint8 on one of two canvases:
   landscape (and square) images on `[N_l, side, W, 3]`, portrait ones on
   `[N_p, H, side, 3]`, each padded to its longest image (transposing the
   portrait images onto one canvas instead costs a transpose of every
   batch, as much as the resampling itself).
2. `augment_batch` draws the paper's augmentation for a whole batch at once
   (scale `s ~ U[lo, hi]`, a random `image_size` crop of the image rescaled
   to shorter side `s`, a horizontal flip, the PCA lighting shift) and
   resamples the crops with one `tf.image.crop_and_resize` call per canvas.

The geometry is the streaming pipeline's (`preprocessing.crop_window`), in
canvas pixels: the crop covers `image_size * side / s` canvas pixels, and
the box puts its bilinear samples where a half-pixel-centred resize of that
window puts them. With `side = 2 * lo` the window never shrinks by more
than 2x, the range in which plain bilinear needs no antialiasing (the rule
`preprocessing._resize` uses); an image is resampled twice (once to `side`,
antialiased where that shrinks more than 2x, then to the crop) where the
streaming path resamples its decoded window once.

Example:
  >>> images = source.resized_images("train", resize_size=128, normalize=False)
  >>> split = load(images, side=128, max_bytes=2**30)
  >>> config = InputConfig(batch_size=64, image_size=64, scale_range=(64, 80), seed=0)
  >>> ds = make_dataset(split, config.replace(repeat=True, normalize=False))
"""

import dataclasses

import numpy as np
import tensorflow as tf

from common import errors
from pipelines import dataset_ops, preprocessing
from pipelines.config import LIGHTING_STD

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True, eq=False)
class DecodedSplit:
    """A split decoded once: two canvases and, per image, where it lies."""

    landscape: tf.Tensor  # uint8 [N_l, side, W, 3]: images at least as wide as tall
    portrait_canvas: tf.Tensor  # uint8 [N_p, H, side, 3]: the taller ones
    portrait: tf.Tensor  # bool [N]: on the portrait canvas
    slots: tf.Tensor  # int32 [N]: the image's index on its canvas
    long_sides: tf.Tensor  # int32 [N]: its longer side
    labels: tf.Tensor  # int32 [N], 0-based

    @property
    def size(self):
        return int(self.labels.shape[0])

    @property
    def side(self):
        return int(self.landscape.shape[1])


def side_for(scale_range):
    """The shorter side to keep: twice the smallest scale, so that no crop
    window shrinks by more than 2x; never below the largest scale."""
    return max(2 * int(scale_range[0]), int(scale_range[1]))


def load(images, *, side, max_bytes=None, where="the training split"):
    """Decodes `images` (`(float [h, w, 3] with min(h, w) == side, label)`
    elements, e.g. `DataSource.resized_images`) onto the two uint8 canvases.

    Args:
      images: the dataset of whole images, shorter side `side`, 0-based labels.
      side: their shorter side.
      max_bytes: refuse (a one-line `DataError`) once the canvas would need
        more; None: no limit.
      where: names the data in that error.
    """

    stored, labels, total = [], [], 0
    for image, label in images.map(
        lambda image, label: (preprocessing.to_uint8(image), tf.cast(label, tf.int32)),
        num_parallel_calls=AUTOTUNE,
    ).prefetch(AUTOTUNE):
        stored.append(image.numpy())
        labels.append(int(label))
        total += stored[-1].nbytes
        if max_bytes is not None and total > max_bytes:
            raise errors.DataError(
                f"{where} does not fit in memory decoded at shorter side {side}: more than "
                f"{max_bytes / 2**30:.1f} GiB after {len(stored)} images; train without "
                "--in_memory (stream it)"
            )
    if not stored:
        raise errors.DataError(f"{where} has no images")
    portrait = np.array([image.shape[0] > image.shape[1] for image in stored])
    long_sides = np.array([max(image.shape[:2]) for image in stored], np.int32)
    slots = np.zeros(len(stored), np.int32)
    canvases = []
    for tall in (False, True):
        members = np.flatnonzero(portrait == tall)
        slots[members] = np.arange(len(members))
        longest = int(long_sides[members].max()) if len(members) else side
        shape = (longest, side) if tall else (side, longest)
        # An empty canvas still needs one image for crop_and_resize's checks.
        canvas = np.zeros((max(1, len(members)), *shape, 3), np.uint8)
        for slot, i in enumerate(members):
            image = stored[i][:side] if not tall else stored[i][:, :side]
            canvas[slot, : image.shape[0], : image.shape[1]] = image
        canvases.append(tf.constant(canvas))
    return DecodedSplit(
        landscape=canvases[0],
        portrait_canvas=canvases[1],
        portrait=tf.constant(portrait, tf.bool),
        slots=tf.constant(slots),
        long_sides=tf.constant(long_sides),
        labels=tf.constant(labels, tf.int32),
    )


def augment_batch(
    split, indices, seed, *, image_size, scale_range, flip=True, lighting_std=LIGHTING_STD
):
    """The paper's training augmentation of the images `indices` of `split`.

    Args:
      split: a `DecodedSplit`.
      indices: int `[B]`, images of the split.
      seed: int32 `[2]` stateless seed; the same seed gives the same batch
        eagerly and inside `Dataset.map`.
      image_size, scale_range, flip, lighting_std: as
        `preprocessing.augment_for_train`; `scale_range[0] >= image_size`.

    Returns:
      `(images uint8 [B, S, S, 3], shifts float32 [B, 3], labels int32 [B])`,
      what `preprocessing.normalize(images, shift=shifts)` finishes.
    """
    indices = tf.cast(indices, tf.int32)
    n = tf.size(indices)
    draw = tf.random.stateless_uniform(tf.stack([n, 4]), seed)
    low, high = float(scale_range[0]), float(scale_range[1])
    scale = low + (high - low) * draw[:, 0]
    side = float(split.side)
    window = image_size * side / scale  # canvas pixels covered by the crop
    portrait = tf.gather(split.portrait, indices)
    long_side = tf.cast(tf.gather(split.long_sides, indices), tf.float32)
    height = tf.where(portrait, long_side, side)
    width = tf.where(portrait, side, long_side)
    # Whole pixels, as `crop_window`: floor(room * f + 0.5).
    top = tf.floor((height - window) * draw[:, 1] + 0.5)
    left = tf.floor((width - window) * draw[:, 2] + 0.5)
    # A half-pixel-centred resize of the window [top, top + window) to
    # image_size samples at top + (i + 0.5) * step - 0.5; crop_and_resize
    # wants those positions as fractions of its canvas's (size - 1).
    step = window / image_size
    first, last = 0.5 * step - 0.5, (image_size - 0.5) * step - 0.5
    canvas_h = tf.where(portrait, float(split.portrait_canvas.shape[1] - 1), side - 1)
    canvas_w = tf.where(portrait, side - 1, float(split.landscape.shape[2] - 1))
    y1, y2 = (top + first) / canvas_h, (top + last) / canvas_h
    x1, x2 = (left + first) / canvas_w, (left + last) / canvas_w
    if flip:  # A box whose ends are swapped samples the crop mirrored.
        mirror = draw[:, 3] < 0.5
        x1, x2 = tf.where(mirror, x2, x1), tf.where(mirror, x1, x2)
    boxes = tf.stack([y1, x1, y2, x2], axis=1)
    slots = tf.gather(split.slots, indices)
    parts = tf.dynamic_partition(tf.range(n), tf.cast(portrait, tf.int32), 2)
    crops = [
        preprocessing.to_uint8(
            tf.image.crop_and_resize(
                canvas, tf.gather(boxes, part), tf.gather(slots, part), [image_size, image_size]
            )
        )
        for canvas, part in zip((split.landscape, split.portrait_canvas), parts)
    ]
    images = tf.dynamic_stitch(parts, crops)
    images.set_shape([None, image_size, image_size, 3])
    if lighting_std:
        alpha = tf.random.stateless_normal(
            tf.stack([n, 3]),
            tf.random.experimental.stateless_fold_in(seed, 1),
            stddev=lighting_std,
        )
        shifts = tf.linalg.matmul(
            alpha * tf.constant(preprocessing.EIGVAL, tf.float32),
            tf.constant(preprocessing.EIGVEC, tf.float32),
            transpose_b=True,
        )
    else:
        shifts = tf.zeros(tf.stack([n, 3]))
    return images, shifts, tf.gather(split.labels, indices)


def make_dataset(split, config, *, input_context=None):
    """The training stream of `split` as `config` asks (`config.repeat`:
    endless; `config.normalize=False`: `({PIXELS: uint8, LIGHTING: [B, 3]},
    labels)`), the structure `pipelines.dataset_ops.finish` gives every
    reader, so the trainer takes either alike.

    Every pipeline draws the same permutation of the split per pass (the same
    `config.seed`) and takes its own share of it, so workers never train on
    the same image in a pass; the `i`-th share of the global batch that
    pipeline `p` draws is augmented with the seed `[seed, p + i * pipelines]`.
    The whole split is shuffled (no `shuffle_buffer`), every batch is full,
    and the evaluation fields (`resize_size`, `crop`) do not apply.

    Args:
      split: a `DecodedSplit`.
      config: the `pipelines.config.InputConfig`; `seed` must be given and
        `scale_range` start at `image_size` or more (`augment_batch`).
      input_context: a `tf.distribute.InputContext` (divides the batch).
    """
    if config.seed is None:
        raise ValueError("in-memory input needs a seed: every worker must draw the same order")
    if config.scale_range[0] < config.image_size:
        raise ValueError(
            f"scale_range {config.scale_range} must start at image_size {config.image_size} or more"
        )
    plan = dataset_ops.input_plan(input_context, config, is_training=True)
    order = tf.data.Dataset.range(split.size).shuffle(
        split.size, seed=plan.seed, reshuffle_each_iteration=True
    )
    if plan.num_pipelines > 1:
        order = order.shard(plan.num_pipelines, plan.pipeline_id)
    pipelines, pipeline_id = plan.num_pipelines, plan.pipeline_id

    def batch(i, indices):
        seed_i = tf.stack([tf.constant(plan.seed, tf.int64), pipeline_id + i * pipelines])
        return augment_batch(
            split,
            indices,
            tf.cast(seed_i, tf.int32),
            image_size=config.image_size,
            scale_range=config.scale_range,
            flip=config.flip,
            lighting_std=config.lighting_std,
        )

    # Augmented a pipeline's share of the global batch at a time, then split
    # between its replicas: replica r of a mirrored run gets exactly the r-th
    # part of the batch a one-device run draws, as in streaming.
    share = config.batch_size // plan.num_pipelines
    if config.repeat:
        order = order.repeat()
    ds = order.batch(share, drop_remainder=True).enumerate()
    ds = ds.map(batch, num_parallel_calls=AUTOTUNE, deterministic=True)
    if share != plan.batch_size:
        ds = ds.unbatch().batch(plan.batch_size, drop_remainder=True)
    return dataset_ops.finish(ds, plan, config)
