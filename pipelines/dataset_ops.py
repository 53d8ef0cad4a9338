"""tf.data stages shared by the ImageNet-TFRecord and the tfds readers.

`preprocess_stage` turns a dataset of `(image_bytes, label, origin)` into
`(image, label)` with the paper's train or eval preprocessing, and deals with
undecodable images: by default a one-line error naming where the image came
from (`origin`, e.g. "record 17 of /data/train-00003-of-01024"), with
`skip_corrupt=True` the image is dropped and a running count is printed.
`finish` batches, sets the tf.data options and prefetches.
"""
import random
import sys

import tensorflow as tf

from pipelines import errors
from pipelines import preprocessing

AUTOTUNE = tf.data.AUTOTUNE


def base_seed(seed):
  """The seed used for shuffling and augmentation: given, or a fresh one."""
  return random.SystemRandom().randrange(2**31 - 1) if seed is None else seed


def make_preprocess_fn(*, is_training, image_size, scale_range, resize_size,
                       mean, std, crop=True, flip=True, lighting_std=0.1):
  """`fn(image_bytes, seed) -> float32 image` for training or evaluation."""
  if is_training:
    return lambda image_bytes, seed: preprocessing.preprocess_for_train(
        image_bytes, image_size=image_size, scale_range=scale_range,
        flip=flip, lighting_std=lighting_std, mean=mean, std=std, seed=seed)
  return lambda image_bytes, seed: preprocessing.preprocess_for_eval(
      image_bytes, image_size=image_size, resize_size=resize_size,
      crop=crop, mean=mean, std=std)


def _decode_or_flag(preprocess_fn, image_bytes, seed, image_shape):
  """Runs `preprocess_fn`, returning `(image, ok)` instead of failing.

  A decode error cannot be caught inside a graph, but a one-element dataset
  with `ignore_errors` can drop it; the fallback element then says "not ok".
  The cost is about 0.5 ms CPU per image (benchmarks/input_pipeline.py).
  """
  attempt = tf.data.Dataset.from_tensors((image_bytes, seed)).map(
      lambda b, s: (preprocess_fn(b, s), True)).ignore_errors()
  fallback_shape = [d if d is not None else 1 for d in image_shape]
  fallback = tf.data.Dataset.from_tensors(
      (tf.zeros(fallback_shape, tf.float32), False))
  return attempt.concatenate(fallback).take(1).get_single_element()


def preprocess_stage(dataset, preprocess_fn, *, image_shape, seed,
                     skip_corrupt, dtype, num_classes, label_offset,
                     seed_start=0, seed_step=1, parse_fn=None,
                     check_images=True):
  """`(image_bytes, label, origin)` -> `(image [S,S,3] dtype, label int32)`.

  Args:
    dataset: elements `(image_bytes, label int64, origin string)`, or
      anything `parse_fn` maps to that (parsing in the same map is cheaper
      than a map of its own).
    preprocess_fn: from `make_preprocess_fn`.
    image_shape: static output shape of `preprocess_fn`.
    seed: int base seed; image `i` is augmented with the stateless seed
      `[seed, seed_start + i * seed_step]`, so two input pipelines (workers)
      never draw the same augmentation.
    skip_corrupt: drop undecodable images (logged with a running count)
      instead of failing.
    dtype: output image dtype.
    check_images: guard every decode so that an undecodable image is named
      (or skipped); False saves ~0.5 ms CPU per image, and a bad image then
      fails with TensorFlow's own error, which does not name the file.
    num_classes, label_offset: labels must lie in
      `[label_offset, label_offset + num_classes)`; they come out 0-based.
  """
  if skip_corrupt and not check_images:
    raise ValueError("skip_corrupt=True needs check_images=True")
  counter = tf.data.Dataset.counter(start=seed_start, step=seed_step)
  dataset = tf.data.Dataset.zip((dataset, counter))

  def process(element, index):
    image_bytes, label, origin = parse_fn(*element) if parse_fn else element
    label = label - label_offset
    check = errors.assert_that(
        tf.logical_and(label >= 0, label < num_classes),
        "label ", label + label_offset, " outside %d..%d in " % (
            label_offset, label_offset + num_classes - 1), origin,
        " (check num_classes and label_offset)")
    seed_pair = tf.stack([tf.cast(seed, tf.int64), index])
    seed_pair = tf.cast(seed_pair % (2**31 - 1), tf.int32)
    with tf.control_dependencies([check]):
      if check_images:
        image, ok = _decode_or_flag(preprocess_fn, image_bytes, seed_pair,
                                    image_shape)
      else:
        image, ok = preprocess_fn(image_bytes, seed_pair), tf.constant(True)
    if check_images and not skip_corrupt:
      assertion = errors.assert_that(
          ok, "cannot decode the image in ", origin,
          " (pass skip_corrupt=True to skip such images)")
      with tf.control_dependencies([assertion]):
        image = tf.identity(image)
    return tf.cast(image, dtype), tf.cast(label, tf.int32), ok, origin

  dataset = dataset.map(process, num_parallel_calls=AUTOTUNE)
  if skip_corrupt:
    dataset = dataset.scan(tf.constant(0, tf.int64), _count_skipped)
    dataset = dataset.filter(lambda image, label, ok: ok)
  return dataset.map(lambda image, label, *_: (image, label))


def _count_skipped(skipped, element):
  image, label, ok, origin = element
  skipped += tf.cast(tf.logical_not(ok), tf.int64)

  def log():
    tf.print(tf.strings.join([
        "pipelines: skipped an undecodable image in ", origin, " (",
        tf.strings.as_string(skipped), " skipped so far)"]),
             output_stream=sys.stderr)
    return tf.constant(0)

  tf.cond(ok, lambda: tf.constant(0), log)
  return skipped, (image, label, ok)


def finish(dataset, *, batch_size, drop_remainder, deterministic,
           manual_shard=False):
  """Batches, applies the options (determinism, sharding) and prefetches."""
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder,
                          num_parallel_calls=AUTOTUNE,
                          deterministic=deterministic)
  options = tf.data.Options()
  if deterministic is not None:
    options.deterministic = deterministic
  if manual_shard:
    # Already sharded per input pipeline: tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)
  return dataset.with_options(options).prefetch(AUTOTUNE)


def preprocess_and_batch(ds, *, is_training, image_size, scale_range,
                         resize_size, mean, std, crop, flip, lighting_std,
                         seed, skip_corrupt, dtype, num_classes, label_offset,
                         pipeline_id, num_pipelines, check_images, batch_size,
                         drop_remainder, deterministic, manual_shard,
                         parse_fn=None):
  """The readers' common tail: preprocess every record, batch, prefetch.

  Both `imagenet.make_dataset` and `tfds.make_dataset` end here, so the two
  sources give identical images for identical bytes and seeds.
  """
  preprocess_fn = make_preprocess_fn(
      is_training=is_training, image_size=image_size, scale_range=scale_range,
      resize_size=resize_size, mean=mean, std=std, crop=crop, flip=flip,
      lighting_std=lighting_std)
  shape = [image_size, image_size, 3] if (is_training or crop) else [
      None, None, 3]
  extra = {} if parse_fn is None else {"parse_fn": parse_fn}
  ds = preprocess_stage(
      ds, preprocess_fn, image_shape=shape, seed=seed,
      skip_corrupt=skip_corrupt, dtype=tf.as_dtype(dtype),
      num_classes=num_classes, label_offset=label_offset,
      seed_start=pipeline_id, seed_step=num_pipelines,
      check_images=check_images, **extra)
  return finish(ds, batch_size=batch_size, drop_remainder=drop_remainder,
                deterministic=deterministic, manual_shard=manual_shard)
