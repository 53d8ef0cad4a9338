"""tf.data stages shared by the ImageNet-TFRecord and the tfds readers.

`preprocess_and_batch` turns a reader's records into batches of uint8 crops
(or normalised float batches) with the paper's train or eval geometry.
`input_plan` and `cache_shuffle_repeat` are the readers' common set-up;
`finish` sets the tf.data options and prefetches. Bad input (an undecodable
image, a missing feature, a label out of range) is named in a one-line error
or skipped by the bookkeeping around the decoding map, in
`pipelines/bad_input.py`.

Speed (benchmarks/input_pipeline.py): a tf.data stage that calls a function
costs ~20 us per element on a 2-core CPU, while batch and unbatch move
strings without copying them (measured: 32-record batch + unbatch of 88 KB
records adds ~1 us per record). So the decoding map is the only function
called per image; the bookkeeping runs on batches.
"""

import dataclasses
import random

import tensorflow as tf

from pipelines import bad_input, preprocessing

AUTOTUNE = tf.data.AUTOTUNE
# The keys of un-normalised batches (`normalize=False`): the uint8 crops and
# the per-image lighting shifts, for `preprocessing.normalize` on the device.
PIXELS, LIGHTING = "pixels", "lighting"


def base_seed(seed):
    """The seed used for shuffling and augmentation: given, or a fresh one."""
    return random.SystemRandom().randrange(2**31 - 1) if seed is None else seed


@dataclasses.dataclass(frozen=True)
class InputPlan:
    """What both readers derive from their arguments before reading."""

    num_pipelines: int
    pipeline_id: int
    batch_size: int  # per input pipeline (per replica with an InputContext)
    drop_remainder: bool
    deterministic: bool
    seed: int
    manual_shard: bool  # sharded here: tf.distribute must not shard again


def input_plan(
    input_context, *, batch_size, is_training, seed, deterministic=None, drop_remainder=None
):
    """Sharding, batch size and defaults: `drop_remainder` and ordered output
    for training are `is_training` and "seeded", and a missing seed is drawn."""
    return InputPlan(
        num_pipelines=input_context.num_input_pipelines if input_context else 1,
        pipeline_id=input_context.input_pipeline_id if input_context else 0,
        batch_size=(
            input_context.get_per_replica_batch_size(batch_size) if input_context else batch_size
        ),
        drop_remainder=is_training if drop_remainder is None else drop_remainder,
        deterministic=(
            (not is_training) or seed is not None if deterministic is None else deterministic
        ),
        seed=base_seed(seed),
        manual_shard=input_context is not None,
    )


def cache_shuffle_repeat(ds, plan, *, is_training, cache, shuffle_buffer, repeat):
    """The readers' record-level tail before preprocessing."""
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if is_training and shuffle_buffer:
        ds = ds.shuffle(
            shuffle_buffer, seed=plan.seed + plan.pipeline_id, reshuffle_each_iteration=True
        )
    return ds.repeat() if repeat else ds


def make_preprocess_fn(
    *, is_training, image_size, scale_range, resize_size, crop=True, flip=True, lighting_std=0.1
):
    """`fn(image_bytes, seed) -> (image, shift [3])`: the per-image half.

    `image` is the uint8 crop (float32 for whole-image evaluation) and `shift`
    the lighting shift; `preprocessing.normalize` on the batch finishes it.
    """
    if is_training:
        return lambda image_bytes, seed: preprocessing.augment_for_train(
            image_bytes,
            image_size=image_size,
            scale_range=scale_range,
            flip=flip,
            lighting_std=lighting_std,
            seed=seed,
        )
    if crop:
        return lambda image_bytes, seed: (
            preprocessing.crop_for_eval(
                image_bytes, image_size=image_size, resize_size=resize_size
            ),
            tf.zeros([3]),
        )
    return lambda image_bytes, seed: (
        preprocessing.resize_shorter_side(preprocessing.decode_rgb(image_bytes), resize_size),
        tf.zeros([3]),
    )


def preprocess_and_batch(
    ds,
    plan,
    *,
    parse_fn,
    is_training,
    image_size,
    scale_range,
    resize_size,
    mean,
    std,
    crop,
    flip,
    lighting_std,
    skip_corrupt,
    dtype,
    num_classes,
    label_offset,
    check_images,
    normalize,
    finite,
    checks=(),
):
    """Records -> batches `(images, labels)`, bad input named or skipped.

    Both `imagenet.make_dataset` and `tfds.make_dataset` end here, so the two
    sources give identical images for identical bytes and seeds.

    Bad records are named (or skipped) by `bad_input.Bookkeeping` around the
    decoding map, without a check per image.

    Args:
      ds: elements `(raw, (index, source))`: a reader's record and its origin,
        the int64 index of the record in its file and the file (or dataset)
        name.
      plan: the `InputPlan`. Image `i` of input pipeline `p` is augmented with
        the stateless seed `[plan.seed, p + i * num_pipelines]`, so two
        pipelines (workers) never draw the same augmentation.
      parse_fn: `fn(*raw) -> (image_bytes, label, oks)`, run in the decoding
        map; `oks` a bool vector, one flag per entry of `checks`.
      skip_corrupt: drop undecodable images (logged with a running count)
        instead of failing.
      num_classes, label_offset: labels must lie in
        `[label_offset, label_offset + num_classes)`; they come out 0-based.
      check_images: False decodes without the count check: a bad image then
        fails with TensorFlow's own error, which does not name the file.
      finite: whether the stream ends (False for a repeated one).
      checks: one `fn(index, source, label) -> message parts` per flag in `oks`,
        the error raised when that flag is False.
      Everything else: as `pipelines.imagenet.make_dataset`.
    """
    if skip_corrupt and not check_images:
        raise ValueError("skip_corrupt=True needs check_images=True")
    preprocess_fn = make_preprocess_fn(
        is_training=is_training,
        image_size=image_size,
        scale_range=scale_range,
        resize_size=resize_size,
        crop=crop,
        flip=flip,
        lighting_std=lighting_std,
    )
    books = bad_input.Bookkeeping(
        plan=plan,
        checks=tuple(checks),
        label_offset=label_offset,
        num_classes=num_classes,
        skip_corrupt=skip_corrupt,
        check_images=check_images,
        finite=finite,
    )
    ds = books.number(ds)
    # In order when checking: a failed image must leave a gap where it was.
    ds = ds.map(
        books.decoder(parse_fn, preprocess_fn),
        num_parallel_calls=AUTOTUNE,
        deterministic=True if check_images else None,
    )
    if check_images:
        ds = ds.ignore_errors()
    ds = books.batch_and_check(ds)
    # Whole uint8 batches are normalised in one op, cheaper than per image and
    # the same numbers; cheaper still is not normalising on the host at all
    # (`normalize=False`): the batches stay uint8, a quarter of the bytes, and
    # the training step normalises them on the accelerator, as Keras advises
    # for normalisation layers when training on a GPU.
    if normalize:
        ds = ds.map(
            lambda images, shifts, labels: (
                tf.cast(
                    preprocessing.normalize(images, mean, std, shift=shifts), tf.as_dtype(dtype)
                ),
                labels,
            ),
            num_parallel_calls=AUTOTUNE,
            deterministic=plan.deterministic,
        )
    else:
        ds = ds.map(lambda images, shifts, labels: ({PIXELS: images, LIGHTING: shifts}, labels))
    return finish(ds, plan)


def finish(dataset, plan):
    """Sets the tf.data options and prefetches."""
    options = tf.data.Options()
    if plan.deterministic is not None:
        options.deterministic = plan.deterministic
    if plan.manual_shard:
        # Already sharded per input pipeline: tf.distribute must not shard again.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options).prefetch(AUTOTUNE)
