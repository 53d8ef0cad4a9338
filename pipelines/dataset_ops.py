"""tf.data stages shared by the ImageNet-TFRecord and the tfds readers.

`preprocess_stage` turns a dataset of `(image_bytes, label, (index, source))`
into uint8 crops with the paper's train or eval geometry, and deals with
undecodable images: by default a one-line error naming where the image came
from ("record 17 of /data/train-00003-of-01024"), with `skip_corrupt=True`
the image is dropped and a running count is printed. `finish` batches,
normalises whole batches, sets the tf.data options and prefetches.
"""
import base64
import dataclasses
import functools
import random
import sys

import tensorflow as tf

from pipelines import errors
from pipelines import preprocessing

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


def input_plan(input_context, *, batch_size, is_training, seed,
               deterministic=None, drop_remainder=None):
  """Sharding, batch size and defaults: `drop_remainder` and ordered output
  for training are `is_training` and "seeded", and a missing seed is drawn."""
  return InputPlan(
      num_pipelines=input_context.num_input_pipelines if input_context else 1,
      pipeline_id=input_context.input_pipeline_id if input_context else 0,
      batch_size=(input_context.get_per_replica_batch_size(batch_size)
                  if input_context else batch_size),
      drop_remainder=is_training if drop_remainder is None else drop_remainder,
      deterministic=((not is_training) or seed is not None
                     if deterministic is None else deterministic),
      seed=base_seed(seed), manual_shard=input_context is not None)


def cache_shuffle_repeat(ds, plan, *, is_training, cache, shuffle_buffer,
                         repeat):
  """The readers' record-level tail before preprocessing."""
  if cache:
    ds = ds.cache(cache if isinstance(cache, str) else "")
  if is_training and shuffle_buffer:
    ds = ds.shuffle(shuffle_buffer, seed=plan.seed + plan.pipeline_id,
                    reshuffle_each_iteration=True)
  return ds.repeat() if repeat else ds


def make_preprocess_fn(*, is_training, image_size, scale_range, resize_size,
                       crop=True, flip=True, lighting_std=0.1):
  """`fn(image_bytes, seed) -> (image, shift [3])`: the per-image half.

  `image` is the uint8 crop (float32 for whole-image evaluation) and `shift`
  the lighting shift; `preprocessing.normalize` on the batch finishes it.
  """
  if is_training:
    return lambda image_bytes, seed: preprocessing.augment_for_train(
        image_bytes, image_size=image_size, scale_range=scale_range,
        flip=flip, lighting_std=lighting_std, seed=seed)
  if crop:
    return lambda image_bytes, seed: (preprocessing.crop_for_eval(
        image_bytes, image_size=image_size, resize_size=resize_size),
                                      tf.zeros([3]))
  return lambda image_bytes, seed: (preprocessing.resize_shorter_side(
      preprocessing.decode_rgb(image_bytes), resize_size), tf.zeros([3]))


def origin_parts(index, source):
  """The words naming a record, for messages: `record 17 of <source>`."""
  return ("record ", index, " of ", source)


# A 1x1 PNG: decoded in place of the bytes of a record that is already known
# to be bad (missing feature, truncated shard), so that only images that are
# really undecodable make the guarded map drop an element.
_PLACEHOLDER_IMAGE = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
    "60e6kgAAAABJRU5ErkJggg==")
# The origin index of elements that are not examples: the sentinel appended
# to a finite stream, a reader's end-of-file marks. Dropped after the checks.
_NOT_AN_EXAMPLE = -1


def preprocess_stage(dataset, preprocess_fn, *, image_shape, image_dtype,
                     seed, skip_corrupt, num_classes, label_offset,
                     seed_start=0, seed_step=1, parse_fn=None, checks=(),
                     finite=True, check_images=True):
  """Raw records -> `(image, shift, label, ...)`, bad input named or skipped.

  The elements carry bookkeeping after the first three (flags, origins),
  which `finish` drops once per batch.

  How undecodable images are named without paying for a guard per image: the
  map that decodes runs in order and is followed by `ignore_errors`, so an
  image that fails to decode leaves a gap in the running element count. A
  scan after it finds the gap; every element also carries the origin of the
  element before it, so the survivor after a gap names the image that was
  dropped. Finite streams get a sentinel element appended, so a failure in
  the very last image is found too. Other checks (a label out of range, a
  missing feature, a truncated shard) are computed inside the map as flags
  and asserted after the scan, so that `ignore_errors` never swallows them.

  Args:
    dataset: raw elements whose last component is the origin
      `(index int64, source string)`: the record's index in its file and the
      file (or dataset) name.
    preprocess_fn: from `make_preprocess_fn`.
    image_shape, image_dtype: static shape and dtype of its image.
    seed: int base seed; image `i` is augmented with the stateless seed
      `[seed, seed_start + i * seed_step]`, so two input pipelines (workers)
      never draw the same augmentation.
    skip_corrupt: drop undecodable images (logged with a running count)
      instead of failing.
    num_classes, label_offset: labels must lie in
      `[label_offset, label_offset + num_classes)`; they come out 0-based.
    parse_fn: `fn(*raw) -> (image_bytes, label, origin, oks)`, `oks` a tuple
      of bool flags; default: raw elements are `(image_bytes, label,
      origin)` with no flags.
    checks: one `fn(index, source, label) -> message parts` per flag in `oks`,
      the error raised when that flag is False.
    finite: whether the stream ends (False for a repeated one): a finite
      one gets a sentinel element appended (origin index -1).
    check_images: False decodes without the count check: a bad image then
      fails with TensorFlow's own error, which does not name the file.
  """
  if skip_corrupt and not check_images:
    raise ValueError("skip_corrupt=True needs check_images=True")
  parse_fn = parse_fn or (lambda image_bytes, label, origin: (
      image_bytes, label, origin, ()))
  if check_images and finite:
    dataset = dataset.concatenate(
        tf.data.Dataset.from_tensors(_sentinel(dataset.element_spec)))
  # Number the elements and hand each the origin of the one before it.
  dataset = dataset.scan(
      (tf.constant(seed_start, tf.int64),
       (tf.constant(-1, tf.int64), tf.constant(""))),
      lambda state, raw: ((state[0] + seed_step, raw[-1]), (raw, *state)))

  def process(raw, count, previous):
    image_bytes, label, origin, oks = parse_fn(*raw)
    label -= label_offset
    oks = (*oks, tf.logical_and(label >= 0, label < num_classes))
    real = origin[0] != _NOT_AN_EXAMPLE
    image_bytes = tf.where(tf.reduce_all(tf.stack([real, *oks])), image_bytes,
                           _PLACEHOLDER_IMAGE)
    seed_pair = tf.stack([tf.cast(seed, tf.int64), count])
    seed_pair = tf.cast(seed_pair % (2**31 - 1), tf.int32)
    image, shift = preprocess_fn(image_bytes, seed_pair)
    return (image, shift, tf.cast(label, tf.int32),
            tf.logical_or(tf.stack(oks), tf.logical_not(real)), real, origin,
            count, previous)

  dataset = dataset.map(process, num_parallel_calls=AUTOTUNE,
                        deterministic=True if check_images else None)
  label_check = lambda index, source, label: (
      "label ", label + label_offset, " outside %d..%d in " % (
          label_offset, label_offset + num_classes - 1),
      *origin_parts(index, source), " (check num_classes and label_offset)")
  if check_images:
    dataset = dataset.ignore_errors()
  dataset = dataset.scan(
      (tf.constant(seed_start, tf.int64), tf.constant(0, tf.int64)),
      functools.partial(_count_dropped, seed_step=seed_step,
                        skip_corrupt=skip_corrupt))
  checks = (*checks, label_check)

  # Asserted after the scan, not inside it (a failing step would leave the
  # scan's count behind and make the next element look like a gap), in the
  # filter that drops the sentinel and any element a reader marked as not an
  # example (origin index -1): one function call per element fewer.
  def check(image, shift, label, oks, real, origin, previous, dropped):
    asserts = [errors.assert_that(oks[i], *message(*origin, label))
               for i, message in enumerate(checks)]
    if not skip_corrupt:
      asserts.append(errors.assert_that(
          dropped == 0, "cannot decode the image in ",
          *origin_parts(*previous),
          " (pass skip_corrupt=True to skip such images)"))
    with tf.control_dependencies(asserts):
      return tf.identity(real)

  return dataset.filter(check)


def _sentinel(element_spec):
  """An element of `element_spec` whose origin index is -1."""
  *rest, (index_spec, source_spec) = element_spec
  zeros = lambda spec: tf.zeros([d or 0 for d in spec.shape], spec.dtype)
  return (*tf.nest.map_structure(zeros, tuple(rest)),
          (tf.constant(_NOT_AN_EXAMPLE, index_spec.dtype), tf.constant("")))


def _count_dropped(state, element, seed_step, skip_corrupt):
  """Scan step: how many images before `element` failed to decode.

  `ignore_errors` dropped them, leaving a gap in the count; the element
  after the gap names the last of them (`previous`). With `skip_corrupt`
  they are logged and counted here, and 0 goes on to the assertion.
  """
  expected, skipped = state
  image, shift, label, oks, real, origin, count, previous = element
  dropped = (count - expected) // seed_step
  if skip_corrupt:
    skipped += dropped

    def log():
      tf.print(tf.strings.join([
          "pipelines: skipped ", tf.strings.as_string(dropped),
          " undecodable image(s), the last in record ",
          tf.strings.as_string(previous[0]), " of ", previous[1], " (",
          tf.strings.as_string(skipped), " skipped so far)"]),
               output_stream=sys.stderr)
      return tf.constant(0)

    tf.cond(dropped > 0, log, lambda: tf.constant(0))
    dropped = tf.constant(0, tf.int64)
  return ((count + seed_step, skipped),
          (image, shift, label, oks, real, origin, previous, dropped))


def finish(dataset, *, batch_size, drop_remainder, deterministic, mean, std,
           dtype, normalize=True, manual_shard=False):
  """Batches, normalises each batch (or not), sets the options, prefetches.

  Normalising `[B, S, S, 3]` uint8 batches in one op is cheaper than per
  image and gives the same numbers (`preprocessing.normalize`). Cheaper
  still is not normalising on the host at all (`normalize=False`): the
  batches then stay uint8, a quarter of the bytes, and the training step
  normalises them on the accelerator, as Keras advises for normalisation
  layers when training on a GPU.
  """
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  if normalize:
    dataset = dataset.map(
        lambda images, shifts, labels, *_: (tf.cast(preprocessing.normalize(
            images, mean, std, shift=shifts), dtype), labels),
        num_parallel_calls=AUTOTUNE, deterministic=deterministic)
  else:
    dataset = dataset.map(lambda images, shifts, labels, *_: (
        {PIXELS: images, LIGHTING: shifts}, labels))
  options = tf.data.Options()
  if deterministic is not None:
    options.deterministic = deterministic
  if manual_shard:
    # Already sharded per input pipeline: tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)
  return dataset.with_options(options).prefetch(AUTOTUNE)


def preprocess_and_batch(ds, plan, *, is_training, image_size, scale_range,
                         resize_size, mean, std, crop, flip, lighting_std,
                         skip_corrupt, dtype, num_classes, label_offset,
                         check_images, normalize, finite, parse_fn=None,
                         checks=()):
  """The readers' common tail: preprocess every record, batch, prefetch.

  Both `imagenet.make_dataset` and `tfds.make_dataset` end here, so the two
  sources give identical images for identical bytes and seeds.
  """
  preprocess_fn = make_preprocess_fn(
      is_training=is_training, image_size=image_size, scale_range=scale_range,
      resize_size=resize_size, crop=crop, flip=flip, lighting_std=lighting_std)
  whole = not (is_training or crop)
  ds = preprocess_stage(
      ds, preprocess_fn,
      image_shape=[None, None, 3] if whole else [image_size, image_size, 3],
      image_dtype=tf.float32 if whole else tf.uint8, seed=plan.seed,
      skip_corrupt=skip_corrupt, num_classes=num_classes,
      label_offset=label_offset, seed_start=plan.pipeline_id,
      seed_step=plan.num_pipelines, check_images=check_images,
      parse_fn=parse_fn, checks=checks, finite=finite)
  return finish(ds, batch_size=plan.batch_size,
                drop_remainder=plan.drop_remainder,
                deterministic=plan.deterministic, mean=mean, std=std,
                dtype=tf.as_dtype(dtype), normalize=normalize,
                manual_shard=plan.manual_shard)
