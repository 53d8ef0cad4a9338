"""tf.data stages shared by the ImageNet-TFRecord and the tfds readers.

`preprocess_and_batch` turns a reader's records into batches of uint8 crops
(or normalised float batches) with the paper's train or eval geometry, and
deals with bad input: by default a one-line error naming where it came from
("cannot decode the image in record 17 of /data/train-00003-of-01024"), with
`skip_corrupt=True` undecodable images are dropped and a running count is
printed. `input_plan` and `cache_shuffle_repeat` are the readers' common
set-up; `finish` sets the tf.data options and prefetches.

Speed (benchmarks/input_pipeline.py): a tf.data stage that calls a function
costs ~20 us per element on a 2-core CPU, while batch and unbatch move
strings without copying them (measured: 32-record batch + unbatch of 88 KB
records adds ~1 us per record). So the decoding map is the only function
called per image; the bookkeeping runs on batches.
"""

import base64
import dataclasses
import functools
import random
import sys

import tensorflow as tf

from pipelines import errors, preprocessing

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


def origin_parts(index, source):
    """The words naming a record, for messages: `record 17 of <source>`."""
    return ("record ", index, " of ", source)


# A 1x1 PNG: decoded in place of the bytes of a record that is already known
# to be bad (missing feature, truncated shard), so that only images that are
# really undecodable make the guarded map drop an element.
_PLACEHOLDER_IMAGE = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
    "60e6kgAAAABJRU5ErkJggg=="
)
# The origin index of the sentinel appended to a finite stream; dropped
# after the checks.
_NOT_AN_EXAMPLE = -1
# Records per call of the bookkeeping functions before the decoding map (the
# checks after it run on the output batches): see the module docstring.
BOOKKEEPING_BATCH = 32


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

    How undecodable images are named without paying for a guard per image: the
    map that decodes runs in order and is followed by `ignore_errors`, so an
    image that fails to decode leaves a gap in the running element count.
    Elements are numbered before the map and carry the origin of the element
    before them; after it, a scan over the output batches finds the gaps, and
    the survivor after a gap names the image that was dropped. Finite streams
    get a sentinel element appended, so that a failure in the very last image
    is found too. The other checks (a label out of range, a missing feature, a
    truncated shard) travel as flags and are asserted with the gaps, so that
    `ignore_errors` never swallows them. The numbering works on batches of
    `BOOKKEEPING_BATCH` records and the checks on the output batches: the
    decoding map is the only function tf.data calls per image.

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
    seed_start, seed_step = plan.pipeline_id, plan.num_pipelines
    sentinel = check_images and finite
    if sentinel:
        ds = ds.concatenate(tf.data.Dataset.from_tensors(_sentinel(ds.element_spec)))
    ds = (
        ds.batch(BOOKKEEPING_BATCH)
        .scan(
            (tf.constant(0, tf.int64), tf.constant(-1, tf.int64), tf.constant("")),
            functools.partial(_number, seed_start=seed_start, seed_step=seed_step),
        )
        .unbatch()
    )

    def process(raw, count, origin, previous):
        image_bytes, label, oks = parse_fn(*raw)
        real = origin[0] != _NOT_AN_EXAMPLE
        # Flagged records and the sentinel decode a placeholder, so that only
        # undecodable images leave a gap after this map.
        image_bytes = tf.cond(
            tf.logical_and(tf.reduce_all(oks), real),
            lambda: image_bytes,
            lambda: _PLACEHOLDER_IMAGE,
        )
        seed_pair = tf.stack([tf.cast(plan.seed, tf.int64), count])
        seed_pair = tf.cast(seed_pair % (2**31 - 1), tf.int32)
        image, shift = preprocess_fn(image_bytes, seed_pair)
        return (
            image,
            shift,
            tf.cast(label, tf.int64),
            count,
            tf.logical_or(oks, tf.logical_not(real)),
            real,
            origin,
            previous,
        )

    ds = ds.map(process, num_parallel_calls=AUTOTUNE, deterministic=True if check_images else None)
    if check_images:
        ds = ds.ignore_errors()
    ds = _batch_and_check(
        ds,
        plan,
        sentinel=sentinel,
        checks=checks,
        skip_corrupt=skip_corrupt,
        label_range=(label_offset, num_classes),
    )
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


def _batch_and_check(ds, plan, *, sentinel, checks, skip_corrupt, label_range):
    """Decoded elements -> checked batches `(images, shifts, labels)`.

    With a sentinel the last batch may hold it: everything is batched, the
    sentinel dropped after the checks, then the remainder (and the static
    batch size, lost on the way, is restored).
    """
    label_offset, num_classes = label_range
    label_check = lambda index, source, label: (
        "label ",
        label,
        f" outside {label_offset}..{label_offset + num_classes - 1} in ",
        *origin_parts(index, source),
        " (check num_classes and label_offset)",
    )
    ds = ds.batch(plan.batch_size, drop_remainder=plan.drop_remainder and not sentinel)
    ds = ds.scan(
        (tf.constant(plan.pipeline_id, tf.int64), tf.constant(0, tf.int64)),
        functools.partial(_count_dropped, seed_step=plan.num_pipelines, skip_corrupt=skip_corrupt),
    ).map(
        functools.partial(
            _check,
            checks=(*checks, label_check),
            label_range=label_range,
            skip_corrupt=skip_corrupt,
            sentinel=sentinel,
        )
    )
    if sentinel and plan.drop_remainder:
        ds = ds.filter(
            lambda images, shifts, labels: tf.equal(tf.size(labels), plan.batch_size)
        ).map(
            lambda *batch: tuple(tf.ensure_shape(t, [plan.batch_size, *t.shape[1:]]) for t in batch)
        )
    elif sentinel:
        ds = ds.filter(lambda images, shifts, labels: tf.size(labels) > 0)
    return ds


def _sentinel(element_spec):
    """An element of `element_spec` whose origin index is -1."""
    zeros = lambda spec: tf.zeros([d or 0 for d in spec.shape], spec.dtype)
    raw, (index, source) = tf.nest.map_structure(zeros, element_spec)
    return raw, (tf.constant(_NOT_AN_EXAMPLE, index.dtype), source)


def _number(state, batch, seed_start, seed_step):
    """Scan step over a batch of records: their counts and previous origins."""
    done, last_index, last_source = state
    raw, (index, source) = batch
    size = tf.shape(index, out_type=tf.int64)[0]
    count = seed_start + (done + tf.range(size)) * seed_step
    previous = (
        tf.concat([[last_index], index[:-1]], 0),
        tf.concat([[last_source], source[:-1]], 0),
    )
    return ((done + size, index[-1], source[-1]), (raw, count, (index, source), previous))


def _count_dropped(state, batch, seed_step, skip_corrupt):
    """Scan step over a batch: how many images before each one failed to decode.

    `ignore_errors` dropped them, leaving gaps in the count; the element after
    a gap names the last of them (its `previous`). With `skip_corrupt` they
    are logged and counted here, and zeros go on to the assertion.
    """
    expected, skipped = state
    image, shift, label, count, oks, real, origin, previous = batch
    dropped = (count - tf.concat([[expected - seed_step], count[:-1]], 0)) // seed_step - 1
    if skip_corrupt:
        skipped += tf.reduce_sum(dropped)
        last = (
            tf.shape(dropped)[0] - 1 - tf.argmax(tf.reverse(dropped, [0]) > 0, output_type=tf.int32)
        )

        def log():
            tf.print(
                tf.strings.join(
                    [
                        "pipelines: skipped ",
                        tf.strings.as_string(tf.reduce_sum(dropped)),
                        " undecodable image(s), the last in record ",
                        tf.strings.as_string(previous[0][last]),
                        " of ",
                        previous[1][last],
                        " (",
                        tf.strings.as_string(skipped),
                        " skipped so far)",
                    ]
                ),
                output_stream=sys.stderr,
            )
            return tf.constant(0)

        tf.cond(tf.reduce_any(dropped > 0), log, lambda: tf.constant(0))
        dropped = tf.zeros_like(dropped)
    return (
        (count[-1] + seed_step, skipped),
        (image, shift, label, oks, real, origin, previous, dropped),
    )


def _check(
    image,
    shift,
    label,
    oks,
    real,
    origin,
    previous,
    dropped,
    checks,
    label_range,
    skip_corrupt,
    sentinel,
):
    """Asserts a batch's flags and labels (naming its first bad element), drops
    the sentinel, makes labels 0-based int32. Not inside the scan: a failing
    step would leave the scan's count behind and make the next batch look like
    a gap."""
    label_offset, num_classes = label_range
    label_ok = tf.logical_or(
        tf.logical_not(real),
        tf.logical_and(label >= label_offset, label < label_offset + num_classes),
    )
    oks = tf.concat([oks, label_ok[:, tf.newaxis]], axis=1)

    def first(bad, *tensors):
        i = tf.argmax(bad, output_type=tf.int32)
        return [t[i] for t in tensors]

    asserts = [
        errors.assert_that(
            tf.reduce_all(oks[:, i]),
            *message(*first(tf.logical_not(oks[:, i]), origin[0], origin[1], label)),
        )
        for i, message in enumerate(checks)
    ]
    if not skip_corrupt:
        asserts.append(
            errors.assert_that(
                tf.reduce_all(dropped == 0),
                "cannot decode the image in ",
                *origin_parts(*first(dropped > 0, *previous)),
                " (pass skip_corrupt=True to skip such images)",
            )
        )
    label = tf.cast(label - label_offset, tf.int32)
    with tf.control_dependencies(asserts):
        if not sentinel:
            return tuple(tf.identity(t) for t in (image, shift, label))
        return tf.cond(  # Copies the images only in the batch with the sentinel.
            tf.reduce_all(real),
            lambda: (image, shift, label),
            lambda: tuple(tf.boolean_mask(t, real) for t in (image, shift, label)),
        )


def finish(dataset, plan):
    """Sets the tf.data options and prefetches."""
    options = tf.data.Options()
    if plan.deterministic is not None:
        options.deterministic = plan.deterministic
    if plan.manual_shard:
        # Already sharded per input pipeline: tf.distribute must not shard again.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options).prefetch(AUTOTUNE)
