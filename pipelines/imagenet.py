"""Streams shards in the standard ImageNet TFRecord schema through tf.data.

Works on a local directory or any path TF's file system supports (gs://...).
Labels 1..1000 in the records become 0..999 (`label_offset`, `num_classes`
configurable for other datasets written in the same schema).

Shard damage is reported by file: every shard is read with its byte size
known, so a truncated or corrupt shard (which TFRecordDataset reports without
a file name) is detected when the bytes read fall short of the file size.

Example:
  >>> ds = make_dataset("/data/imagenet", "train", InputConfig(batch_size=128),
  ...                   is_training=True)
  >>> images, labels = next(iter(ds))   # [128, 224, 224, 3], [128]
"""

import concurrent.futures
import os
import sys

import tensorflow as tf

from common import errors
from pipelines import bad_input, dataset_ops, records

AUTOTUNE = tf.data.AUTOTUNE
_RECORD_OVERHEAD = 16  # length (8) + length crc (4) + data crc (4) bytes.
# Appended after each shard's records to find where the shard ended; not a
# serialized Example, so it cannot be mistaken for a record of one.
_END_OF_SHARD = b"\x00delving: end of shard\x00"
# Records accounted for per call (see bad_input.BOOKKEEPING_BATCH).
_READ_BATCH = bad_input.BOOKKEEPING_BATCH


def list_files(data_dir, split, file_pattern=None):
    """Sorted shard paths of `split` (pattern `<split>-*` unless given).

    Raises:
      DataError: the directory does not exist or nothing matches.
    """
    pattern = file_pattern or f"{split}-*"
    if not os.path.isabs(pattern) and "://" not in pattern:
        if not tf.io.gfile.isdir(data_dir):
            raise errors.DataError(
                f"data directory {data_dir} does not exist (split {split!r}, pattern {pattern!r})"
            )
        pattern = os.path.join(data_dir, pattern)
    files = sorted(f for f in tf.io.gfile.glob(pattern) if ".tmp-" not in f)
    if not files:
        raise errors.DataError(f"no files match {pattern} for split {split!r}")
    return files


def _file_sizes(files):
    # One stat per shard, in parallel: ~1000 shards on GCS take seconds.
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda f: tf.io.gfile.stat(f).length, files))


def _read_shard(filename, size, skip_corrupt):
    """One shard as `((record, truncated), (index, filename))` elements.

    Where the shard ends, the bytes read are compared with its size: if
    reading stopped early (a truncated or corrupt shard, which
    `TFRecordDataset` reports without a file name), one more element follows
    with `truncated` set, or, with `skip_corrupt`, the rest of the shard is
    skipped with a log line. The accounting runs on batches of records (a
    function call per record is measurable; batching moves the strings, it
    does not copy them).
    """
    reader = (
        tf.data.TFRecordDataset(filename)
        .ignore_errors()
        .concatenate(tf.data.Dataset.from_tensors(tf.constant(_END_OF_SHARD)))
    )

    def step(state, batch):
        consumed, index = state
        at_end = tf.equal(batch, _END_OF_SHARD)
        consumed += tf.cumsum(
            tf.where(
                at_end,
                tf.constant(0, tf.int64),
                tf.cast(tf.strings.length(batch) + _RECORD_OVERHEAD, tf.int64),
            )
        )
        truncated = tf.logical_and(at_end, consumed < size)
        indices = index + tf.range(tf.size(batch, out_type=tf.int64))
        parts = ((batch, truncated), (indices, tf.fill(tf.shape(batch), filename)))
        if skip_corrupt:
            tf.cond(
                tf.reduce_any(truncated),
                lambda: _log_truncated(filename, indices[-1]),
                lambda: tf.constant(0),
            )
            keep = tf.logical_not(at_end)
        else:
            keep = tf.logical_or(tf.logical_not(at_end), truncated)
        parts = tf.cond(  # Only a shard's last batch has an end to drop.
            tf.reduce_all(keep),
            lambda: parts,
            lambda: tf.nest.map_structure(lambda t: tf.boolean_mask(t, keep), parts),
        )
        return (consumed[-1], indices[-1] + 1), parts

    return (
        reader.batch(_READ_BATCH)
        .scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), step)
        .unbatch()
    )


def _parse(record, truncated):
    """A record -> `(image_bytes, label, oks)`, `oks` as `CHECKS`."""
    record = tf.cond(truncated, lambda: tf.constant(b""), lambda: record)
    features = tf.io.parse_single_example(record, records.REQUIRED_FEATURES)
    oks = [tf.logical_not(truncated)] + [
        tf.logical_or(truncated, tf.not_equal(features[name], default))
        for name, default in records.MISSING.items()
    ]
    return features[records.ENCODED], features[records.LABEL], tf.stack(oks)


def _log_truncated(filename, intact):
    tf.print(
        tf.strings.join(
            [
                "pipelines: skipped the unreadable rest of truncated or corrupt shard ",
                filename,
                " after ",
                tf.strings.as_string(intact),
                " intact records",
            ]
        ),
        output_stream=sys.stderr,
    )
    return tf.constant(0)


# What a False in an element's `oks` means, in the same order.
CHECKS = (
    lambda index, source, label: (
        "truncated or corrupt TFRecord shard ",
        source,
        " (pass --skip_corrupt, skip_corrupt=True, to read what is intact)",
    ),
) + tuple(
    (
        lambda index, source, label, name=name: (
            f"required feature {name} missing in ",
            *bad_input.origin_parts(index, source),
        )
    )
    for name in records.MISSING
)


def make_dataset(
    data_dir,
    split,
    config,
    *,
    is_training,
    input_context=None,
    num_classes=1000,
    label_offset=1,
    file_pattern=None,
    cycle_length=16,
):
    """A `tf.data.Dataset` of `(images [B, S, S, 3] dtype, labels int32 [B])`.

    Args:
      data_dir: directory (local or any tf.io.gfile path) holding the shards.
      split: "train" or "validation" (names the default pattern `<split>-*`).
      config: the `pipelines.config.InputConfig`: batching, augmentation,
        normalisation, seed, caching, skipping of corrupt input.
      is_training: paper augmentation, shuffling, `drop_remainder`; otherwise
        resize to `config.resize_size` and centre crop, in file order.
      input_context: `tf.distribute.InputContext`. Shards by file when there
        are at least as many files as input pipelines, else by record.
      num_classes, label_offset: labels in the records are
        `label_offset .. label_offset + num_classes - 1`; out come 0-based.
      file_pattern: overrides `<split>-*` (relative to data_dir, or absolute).
      cycle_length: shards read in parallel.

    Raises:
      DataError: missing directory or no files for the pattern.
    """
    files = list_files(data_dir, split, file_pattern)
    plan = dataset_ops.input_plan(input_context, config, is_training=is_training)
    num_pipelines, pipeline_id = plan.num_pipelines, plan.pipeline_id
    shard_by_file = num_pipelines > 1 and len(files) >= num_pipelines
    shard_by_record = num_pipelines > 1 and not shard_by_file

    file_ds = tf.data.Dataset.from_tensor_slices((files, tf.constant(_file_sizes(files), tf.int64)))
    if shard_by_file:
        file_ds = file_ds.shard(num_pipelines, pipeline_id)
    if is_training and not shard_by_record:
        # Record sharding needs the same file order on every worker.
        file_ds = file_ds.shuffle(len(files), seed=plan.seed, reshuffle_each_iteration=True)
    ds = file_ds.interleave(
        lambda filename, size: _read_shard(filename, size, config.skip_corrupt),
        cycle_length=min(cycle_length, len(files)),
        num_parallel_calls=AUTOTUNE,
        deterministic=True if shard_by_record else plan.deterministic,
    )
    if shard_by_record:
        ds = ds.shard(num_pipelines, pipeline_id)
    ds = dataset_ops.cache_shuffle_repeat(ds, plan, config, is_training=is_training)
    return dataset_ops.preprocess_and_batch(
        ds,
        plan,
        config,
        is_training=is_training,
        parse_fn=_parse,
        num_classes=num_classes,
        label_offset=label_offset,
        checks=CHECKS,
    )
