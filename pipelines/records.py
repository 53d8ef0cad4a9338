"""The standard ImageNet TFRecord schema (docs/PAPER.md, "ImageNet TFRecords"), both ways.

Writers (`make_example`, `write_shard`) are used by the folder converter, the
built-in dataset and the tests; the reader's feature spec is `FEATURES`.
"""

import os
import re

import tensorflow as tf

from common import files

ENCODED = "image/encoded"
LABEL = "image/class/label"
SYNSET = "image/class/synset"
TEXT = "image/class/text"

# What the reader needs: the bytes and the label. Missing either is an error
# naming the feature (the defaults below are sentinels the reader checks).
REQUIRED_FEATURES = {
    ENCODED: tf.io.FixedLenFeature([], tf.string, default_value=""),
    LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
}
MISSING = {ENCODED: "", LABEL: -1}
# What `pipelines.labels` reads from records to name the classes.
CLASS_FEATURES = {
    LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    SYNSET: tf.io.FixedLenFeature([], tf.string, default_value=""),
    TEXT: tf.io.FixedLenFeature([], tf.string, default_value=""),
}


def shard_name(split, index, num_shards):
    """`train-00003-of-01024`: the standard shard file name."""
    return f"{split}-{index:05d}-of-{num_shards:05d}"


def is_shard_name(name):
    """Whether `name` is a `shard_name` (of any split)."""
    return re.fullmatch(r".+-\d{5}-of-\d{5}", name) is not None


def _feature(value):
    if isinstance(value, (bytes, str)):
        value = [value]
    value = list(value)
    if value and isinstance(value[0], float):
        return tf.train.Feature(float_list=tf.train.FloatList(value=value))
    if value and isinstance(value[0], int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=value))
    value = [v.encode("utf-8") if isinstance(v, str) else v for v in value]
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=value))


def make_example(
    encoded,
    label,
    *,
    synset="",
    text="",
    height=0,
    width=0,
    filename="",
    image_format="JPEG",
    colorspace="RGB",
    channels=3,
    bboxes=(),
    **extra,
):
    """A serialized `tf.train.Example` in the standard ImageNet schema.

    Args:
      encoded: the image bytes.
      label: int class label (1-based for ImageNet: 1..1000).
      synset, text: class id (`n01440764`) and human-readable name.
      height, width, channels, colorspace, image_format, filename: metadata.
      bboxes: `(xmin, ymin, xmax, ymax)` tuples in [0, 1] coordinates.
      **extra: further features by full name, e.g. `{"image/extra": b"..."}`;
        a value of None drops that feature (to write deliberately bad records).

    Returns:
      bytes, the serialized example.
    """
    features = {
        ENCODED: encoded,
        LABEL: [int(label)],
        SYNSET: synset,
        TEXT: text,
        "image/format": image_format,
        "image/colorspace": colorspace,
        "image/channels": [int(channels)],
        "image/height": [int(height)],
        "image/width": [int(width)],
        "image/filename": filename,
    }
    if bboxes:
        for i, key in enumerate(("xmin", "ymin", "xmax", "ymax")):
            features["image/object/bbox/" + key] = [float(b[i]) for b in bboxes]
        features["image/object/bbox/label"] = [int(label)] * len(bboxes)
    features.update(extra)
    return tf.train.Example(
        features=tf.train.Features(
            feature={k: _feature(v) for k, v in features.items() if v is not None}
        )
    ).SerializeToString()


def write_shard(path, serialized_examples):
    """Writes records to a temporary name, then renames: all or nothing.

    A reader (or a resumed conversion) therefore never sees a half shard under
    its final name.

    Returns:
      The number of records written.
    """
    count = 0
    with files.atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        for record in serialized_examples:
            writer.write(record)
            count += 1
    return count


def remove_temporaries(directory):
    """Deletes leftovers of killed `write_shard` calls in `directory`.

    A temporary whose writer still runs on this host stays: the conversion
    of the other split into the same directory, started beside this one.
    """
    for name in tf.io.gfile.listdir(directory):
        # `common.files.atomic_path` names them `<path>.tmp-<pid>-<random>`.
        owner = re.search(r"\.tmp-(\d+)-", name)
        if ".tmp-" in name and not (owner and files.pid_alive(int(owner.group(1)))):
            tf.io.gfile.remove(os.path.join(directory, name))
