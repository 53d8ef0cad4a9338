"""The paper's preprocessing over a tensorflow-datasets image classifier set.

Images are read undecoded (`tfds.decode.SkipDecoding`), so JPEG datasets
get the same crop-before-decode fast path as the TFRecord reader. Nothing is
downloaded unless asked: `imagenet2012` is prepared from its `manual_dir`
(the ILSVRC tar files), other sets must already be prepared in `data_dir`
(or pass `download=True`).

Example:
  >>> builder = load_builder("imagenet2012", manual_dir="/raw/ilsvrc")
  >>> ds = make_dataset(builder, "train", InputConfig(batch_size=128), is_training=True)
"""

import os

import tensorflow as tf
import tensorflow_datasets as tfds

from common import errors
from pipelines import dataset_ops


def load_builder(name, data_dir=None, manual_dir=None, download=False):
    """The tfds builder of `name`, or a one-line `DataError`.

    Preparation only happens with `manual_dir` or `download=True`.
    """
    where = f"(data_dir {data_dir}, manual_dir {manual_dir})"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        unprepared = not builder.info.splits
        if unprepared and manual_dir and not (os.path.isdir(manual_dir) and os.listdir(manual_dir)):
            # Refused before tfds creates its folders under data_dir.
            raise errors.DataError(
                f"tfds dataset {name!r}: --tfds_manual_dir={manual_dir} is empty; put the "
                "dataset's source files there (see its tfds catalog page)"
            )
        if manual_dir or download:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
            )
    except (
        tfds.core.registered.DatasetNotFoundError,
        AssertionError,
        FileNotFoundError,
        OSError,
    ) as e:
        raise errors.DataError(f"tfds dataset {name!r} {where}: {_first_line(e)}") from None
    return builder


def split_info(builder, split):
    """`builder.info.splits[split]`, or a one-line `DataError` (instead of
    tfds' KeyError) when the dataset is not prepared or has no such split."""
    splits = builder.info.splits
    if split not in splits:
        why = f"has no split {split!r}" if splits else "is not prepared"
        raise errors.DataError(
            f"tfds dataset {builder.name!r} (data_dir {builder.data_dir}) {why}: give "
            "--tfds_manual_dir with its source files, or prepare it with `tfds build`"
        )
    return splits[split]


def _first_line(error):
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def make_dataset(
    builder,
    split,
    config,
    *,
    is_training,
    input_context=None,
    image_key="image",
    label_key="label",
    num_classes=None,
):
    """`(images [B, S, S, 3] dtype, labels int32 [B])` from a tfds dataset.

    Args:
      builder: the dataset's tfds builder, from `load_builder` (which finds
        or prepares it), e.g. of "imagenet2012" (labels 0-based, i.e. the
        TFRecord label minus 1), "imagenette", "oxford_flowers102".
      split: tfds split, e.g. "train", "validation", "train[:10%]".
      config: the `pipelines.config.InputConfig`.
      is_training, input_context: as `pipelines.imagenet.make_dataset`.
      image_key, label_key: feature names in the dataset.
      num_classes: default: from the dataset's label feature.

    Raises:
      DataError: the dataset is not prepared or has no such split.
    """
    if num_classes is None:
        num_classes = builder.info.features[label_key].num_classes
    plan = dataset_ops.input_plan(input_context, config, is_training=is_training)

    def read(part, context):
        return builder.as_dataset(
            split=part,
            shuffle_files=is_training,
            decoders={image_key: tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(
                input_context=context, shuffle_seed=plan.seed, try_autocache=False
            ),
        )

    try:
        try:
            # tfds gives each input pipeline (worker) its own files to read.
            ds = read(split, input_context)
        except ValueError:
            # Fewer files than pipelines: each reads only its even sub-split
            # (not the whole split, keeping every n-th record).
            ds = read(tfds.even_splits(split, plan.num_pipelines)[plan.pipeline_id], None)
    except (AssertionError, FileNotFoundError, KeyError) as e:
        raise errors.DataError(
            f"tfds dataset {builder.name!r} split {split!r} is not available: "
            f"{str(e).splitlines()[0]}"
        ) from None
    source = f"tfds {builder.name} split {split}"
    ds = ds.enumerate().map(
        lambda index, example: ((example[image_key], example[label_key]), (index, source))
    )
    ds = dataset_ops.cache_shuffle_repeat(ds, plan, config, is_training=is_training)
    return dataset_ops.preprocess_and_batch(
        ds,
        plan,
        config,
        is_training=is_training,
        parse_fn=lambda image_bytes, label: (  # No checks but the label's.
            image_bytes,
            label,
            tf.zeros([0], tf.bool),
        ),
        num_classes=num_classes,
        label_offset=0,  # tfds labels are 0-based
    )


def num_classes(name, data_dir=None, label_key="label"):
    """Classes of the dataset's label feature, from its builder's info (known
    before it is prepared); None when it has no such class label.

    Raises:
      DataError: no tfds dataset of that name.
    """
    feature = load_builder(name, data_dir).info.features
    try:
        return int(feature[label_key].num_classes)
    except (KeyError, AttributeError):
        return None
