"""tf.data stages shared by the readers, each driven by the `InputConfig`.

`preprocess_and_batch` turns a TFRecord or tfds reader's records into
batches of uint8 crops (or normalised float batches) with the paper's train
or eval geometry. `input_plan` and `cache_shuffle_repeat` are the readers'
common set-up; `finish` (the in-memory input's end too) normalises or not,
sets the tf.data options and prefetches. Bad input (an undecodable
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
    """What every reader derives from its `InputConfig` before reading."""

    num_pipelines: int
    pipeline_id: int
    batch_size: int  # per input pipeline (per replica with an InputContext)
    drop_remainder: bool
    deterministic: bool
    seed: int
    manual_shard: bool  # sharded here: tf.distribute must not shard again


def input_plan(input_context, config, *, is_training):
    """Sharding, batch size and defaults: `drop_remainder` and ordered output
    for training are `is_training` and "seeded", and a missing seed is drawn."""
    deterministic, drop_remainder = config.deterministic, config.drop_remainder
    return InputPlan(
        num_pipelines=input_context.num_input_pipelines if input_context else 1,
        pipeline_id=input_context.input_pipeline_id if input_context else 0,
        batch_size=(
            input_context.get_per_replica_batch_size(config.batch_size)
            if input_context
            else config.batch_size
        ),
        drop_remainder=is_training if drop_remainder is None else drop_remainder,
        deterministic=(
            (not is_training) or config.seed is not None if deterministic is None else deterministic
        ),
        seed=base_seed(config.seed),
        manual_shard=input_context is not None,
    )


def cache_shuffle_repeat(ds, plan, config, *, is_training):
    """The readers' record-level tail before preprocessing."""
    if config.cache:
        ds = ds.cache(config.cache if isinstance(config.cache, str) else "")
    if is_training and config.shuffle_buffer:
        ds = ds.shuffle(
            config.shuffle_buffer, seed=plan.seed + plan.pipeline_id, reshuffle_each_iteration=True
        )
    return ds.repeat() if config.repeat else ds


def make_preprocess_fn(config, *, is_training):
    """`fn(image_bytes, seed) -> (image, shift [3])`: the per-image half.

    `image` is the uint8 crop (float32 for whole-image evaluation) and `shift`
    the lighting shift; `preprocessing.normalize` on the batch finishes it.
    """
    if is_training:
        return lambda image_bytes, seed: preprocessing.augment_for_train(
            image_bytes,
            image_size=config.image_size,
            scale_range=config.scale_range,
            flip=config.flip,
            lighting_std=config.lighting_std,
            seed=seed,
        )
    if config.crop:
        return lambda image_bytes, seed: (
            preprocessing.crop_for_eval(
                image_bytes, image_size=config.image_size, resize_size=config.resize_size
            ),
            tf.zeros([3]),
        )
    return lambda image_bytes, seed: (
        preprocessing.resize_shorter_side(
            preprocessing.decode_rgb(image_bytes), config.resize_size
        ),
        tf.zeros([3]),
    )


def preprocess_and_batch(
    ds, plan, config, *, is_training, parse_fn, num_classes, label_offset, checks=()
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
      config: the `pipelines.config.InputConfig`.
      parse_fn: `fn(*raw) -> (image_bytes, label, oks)`, run in the decoding
        map; `oks` a bool vector, one flag per entry of `checks`.
      num_classes, label_offset: labels must lie in
        `[label_offset, label_offset + num_classes)`; they come out 0-based.
      checks: one `fn(index, source, label) -> message parts` per flag in `oks`,
        the error raised when that flag is False.
    """
    books = bad_input.Bookkeeping(
        plan=plan,
        checks=tuple(checks),
        label_offset=label_offset,
        num_classes=num_classes,
        skip_corrupt=config.skip_corrupt,
        check_images=config.check_images,
        finite=not config.repeat,
        seed_per_worker=config.seed_per_worker,
    )
    ds = books.number(ds)
    # In order when checking: a failed image must leave a gap where it was.
    ds = ds.map(
        books.decoder(parse_fn, make_preprocess_fn(config, is_training=is_training)),
        num_parallel_calls=AUTOTUNE,
        deterministic=True if config.check_images else None,
    )
    if config.check_images:
        ds = ds.ignore_errors()
    return finish(books.batch_and_check(ds), plan, config)


def finish(ds, plan, config):
    """Batches `(images uint8, shifts [B, 3], labels)` -> what `config` asks
    for, with the tf.data options set and prefetching.

    Whole uint8 batches are normalised in one op, cheaper than per image and
    the same numbers; cheaper still is not normalising on the host at all
    (`normalize=False`): the batches stay uint8, a quarter of the bytes, and
    the training step normalises them on the accelerator, as Keras advises
    for normalisation layers when training on a GPU.
    """
    if config.normalize:
        ds = ds.map(
            lambda images, shifts, labels: (
                tf.cast(
                    preprocessing.normalize(images, config.mean, config.std, shift=shifts),
                    tf.as_dtype(config.dtype),
                ),
                labels,
            ),
            num_parallel_calls=AUTOTUNE,
            deterministic=plan.deterministic,
        )
    else:
        ds = ds.map(lambda images, shifts, labels: ({PIXELS: images, LIGHTING: shifts}, labels))
    options = tf.data.Options()
    if plan.deterministic is not None:
        options.deterministic = plan.deterministic
    if plan.manual_shard:
        # Already sharded per input pipeline: tf.distribute must not shard again.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options).prefetch(AUTOTUNE)
