"""Where a run's images come from: TFRecord shards, tfds, or the built-in set.

`DataSource` hides which reader serves a dataset, so that the trainer and
the evaluation views ask for "the validation split at scale 256" without
caring: it holds where the data is and the `InputConfig` its streams start
from, and hands that config whole to `pipelines.imagenet`,
`pipelines.tfds` or `pipelines.in_memory`. Batch sizes are global; with a
`tf.distribute.InputContext` the readers batch the per-replica share and
shard the files between workers.

Example:
  >>> source = DataSource(data_dir="/data/imagenet", input=InputConfig(batch_size=128))
  >>> ds = source.dataset("validation", is_training=False)
  >>> big = source.dataset("validation", source.input.replace(resize_size=384),
  ...                      is_training=False)
"""

import contextlib
import dataclasses
import functools

import tensorflow as tf

from common import errors
from common.memory import host_available_bytes
from pipelines import dataset_ops, imagenet, in_memory, labels
from pipelines.config import InputConfig

IMAGENET_TRAIN_EXAMPLES = 1_281_167
IMAGENET_VALIDATION_EXAMPLES = 50_000
# The standard ImageNet shards come without a labels file: records that have
# none are taken to be ImageNet's when nothing says how many classes they hold.
IMAGENET_CLASSES = 1000


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataSource:
    """A dataset readable by `pipelines` (`data_dir` or `tfds_name`) and the
    `InputConfig` of its streams. `num_classes=None`: from the data, which
    only `class_list` reads; give the count before reading any split."""

    data_dir: str | None = None
    tfds_name: str | None = None
    tfds_data_dir: str | None = None
    tfds_manual_dir: str | None = None
    num_classes: int | None = IMAGENET_CLASSES
    label_offset: int = 1
    input: InputConfig

    def _split(self, split):
        if self.tfds_name and split == "validation":
            return _tfds_validation_split(self.tfds_name, self._tfds_builder().info)
        return split

    def _tfds_builder(self):
        """The prepared tfds dataset's builder (unknown or unprepared: DataError)."""
        from pipelines import tfds as reader

        return reader.load_builder(self.tfds_name, self.tfds_data_dir, self.tfds_manual_dir)

    def dataset(self, split, config=None, *, is_training, input_context=None):
        """Batched `(images, labels)` of `split` as `config` (default
        `self.input`) asks."""
        if config is None:
            config = self.input
        if self.tfds_name:
            from pipelines import tfds as reader

            return reader.make_dataset(
                self._tfds_builder(),
                self._split(split),
                config,
                is_training=is_training,
                input_context=input_context,
            )
        return imagenet.make_dataset(
            self.data_dir,
            split,
            config,
            is_training=is_training,
            input_context=input_context,
            num_classes=self.num_classes,
            label_offset=self.label_offset,
        )

    def resized_images(self, split, *, resize_size, input_context=None, normalize=True):
        """Unbatched whole images, shorter side `resize_size`, and labels
        (`normalize=False`: float32 on the 0-255 scale, not normalised)."""
        # The readers batch whole images one per replica (sizes differ).
        per_replica_one = input_context.num_replicas_in_sync if input_context else 1
        config = self.input.replace(
            batch_size=per_replica_one, resize_size=resize_size, crop=False, normalize=normalize
        )
        images = self.dataset(split, config, is_training=False, input_context=input_context)
        if not normalize:
            images = images.map(lambda features, labels: (features[dataset_ops.PIXELS], labels))
        return images.unbatch()

    def decoded_train_split(self):
        """The training split decoded once into memory (`pipelines.in_memory`)
        at the shorter side its scale range needs, shared by every input
        pipeline of this process."""
        # Cached by what the decoding depends on, so that sources differing
        # in anything else (batch size, seed, normalisation) share one copy.
        decoding = InputConfig(
            batch_size=1,
            skip_corrupt=self.input.skip_corrupt,
            check_images=self.input.check_images,
        )
        side = in_memory.side_for(self.input.scale_range)
        return _decoded_split(dataclasses.replace(self, input=decoding), side)

    def num_examples(self, split) -> int:
        """Examples in `split` (counting records of small TFRecord sets)."""
        if self.tfds_name:
            from pipelines import tfds as reader

            return reader.split_info(self._tfds_builder(), self._split(split)).num_examples
        files = imagenet.list_files(self.data_dir, split)
        imagenet_classes = self.num_classes == IMAGENET_CLASSES
        if len(files) == 1024 and split == "train" and imagenet_classes:
            return IMAGENET_TRAIN_EXAMPLES  # the standard ImageNet shards
        if len(files) == 128 and split == "validation" and imagenet_classes:
            return IMAGENET_VALIDATION_EXAMPLES
        return _count_records(tuple(files), self.input.skip_corrupt)

    def class_list(self, labels_file=None):
        """`pipelines.labels.ClassInfo` per class, in label order: as many as
        `num_classes`, or when None as the data names (`labels_file`, the
        records' labels.txt, the tfds label feature; else ImageNet's)."""
        if self.tfds_name and not labels_file:
            names = list(self._tfds_builder().info.features["label"].names)
            return [labels.ClassInfo(i, n, n) for i, n in enumerate(names)]
        num_classes = self.num_classes
        if num_classes is None and not labels.labels_file_of(
            data_dir=self.data_dir, labels_file=labels_file
        ):
            num_classes = IMAGENET_CLASSES
        return labels.load_class_list(
            data_dir=self.data_dir,
            labels_file=labels_file,
            num_classes=num_classes,
            label_offset=self.label_offset,
        )


@functools.cache
def _count_records(files, skip_corrupt):
    """Records in `files`; a truncated or corrupt shard is a `DataError`
    naming it, or with `skip_corrupt` counts its intact records."""
    total = 0
    for filename in files:
        reader = tf.data.TFRecordDataset(filename)
        try:
            total += int(reader.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())
        except tf.errors.DataLossError:
            intact = 0
            with contextlib.suppress(tf.errors.DataLossError):
                for _ in reader:
                    intact += 1
            if not skip_corrupt:
                raise errors.DataError(
                    f"record {intact} of {filename} cannot be read: truncated or corrupt "
                    "TFRecord shard (pass --skip_corrupt to read what is intact)"
                ) from None
            total += intact
    return total


@functools.cache
def _decoded_split(source, side):
    available = host_available_bytes()
    return in_memory.load(
        source.resized_images("train", resize_size=side, normalize=False),
        side=side,
        # Half of what is free: the model, its step and the rest of the input need the other half.
        max_bytes=available // 2 if available else None,
        where=f"the training split of {source.tfds_name or source.data_dir}",
    )


def _tfds_validation_split(name, info):
    for candidate in ("validation", "test"):
        if candidate in info.splits:
            return candidate
    raise errors.DataError(f"tfds dataset {name} has no validation or test split")
