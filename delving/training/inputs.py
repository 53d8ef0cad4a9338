"""Where a run's images come from: TFRecord shards, tfds, or the built-in set.

`DataSource` hides which of the three `pipelines` readers serves a config,
so that the trainer and the evaluation views ask for "the validation split
at scale 256" without caring. Batch sizes passed here are global; with a
`tf.distribute.InputContext` the readers batch the per-replica share and
shard the files between workers.
"""

import contextlib
import dataclasses
import functools

import tensorflow as tf

from common import errors
from delving.models import from_config
from pipelines import in_memory

IMAGENET_TRAIN_EXAMPLES = 1_281_167
IMAGENET_VALIDATION_EXAMPLES = 50_000


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A dataset readable by `pipelines` (exactly one of the two set)."""

    data_dir: str | None = None
    tfds_name: str | None = None
    tfds_data_dir: str | None = None
    tfds_manual_dir: str | None = None
    num_classes: int = 1000
    label_offset: int = 1
    std: tuple | None = None  # per-channel divisor after the mean (0-255 scale)
    skip_corrupt: bool = False  # the readers' option, for every dataset made here

    def _split(self, split):
        if self.tfds_name and split == "validation":
            return _tfds_validation_split(self.tfds_name, self._tfds_info())
        return split

    def _tfds_info(self):
        """The prepared tfds dataset's info (unknown or unprepared: DataError)."""
        from pipelines import tfds as reader

        return reader.load_builder(self.tfds_name, self.tfds_data_dir, self.tfds_manual_dir).info

    def dataset(self, split, *, batch_size, is_training, **kwargs):
        """Batched `(images, labels)` of `split`; kwargs go to the reader."""
        kwargs.setdefault("skip_corrupt", self.skip_corrupt)
        if self.tfds_name:
            from pipelines import tfds as reader

            return reader.make_dataset(
                self.tfds_name,
                self._split(split),
                batch_size=batch_size,
                is_training=is_training,
                data_dir=self.tfds_data_dir,
                manual_dir=self.tfds_manual_dir,
                std=self.std,
                **kwargs,
            )
        from pipelines import imagenet

        return imagenet.make_dataset(
            self.data_dir,
            split,
            batch_size=batch_size,
            is_training=is_training,
            num_classes=self.num_classes,
            label_offset=self.label_offset,
            std=self.std,
            **kwargs,
        )

    def resized_images(self, split, *, resize_size, input_context=None, normalize=True):
        """Unbatched whole images, shorter side `resize_size`, and labels
        (`normalize=False`: float32 on the 0-255 scale, not normalised)."""
        # The readers batch whole images one per replica (sizes differ).
        per_replica_one = input_context.num_replicas_in_sync if input_context else 1
        images = self.dataset(
            split,
            batch_size=per_replica_one,
            is_training=False,
            resize_size=resize_size,
            crop=False,
            input_context=input_context,
            normalize=normalize,
        )
        if not normalize:
            from pipelines import dataset_ops

            images = images.map(lambda features, labels: (features[dataset_ops.PIXELS], labels))
        return images.unbatch()

    def decoded_train_split(self, *, side):
        """The training split decoded once into memory (`pipelines.in_memory`),
        shared by every input pipeline of this process."""
        return _decoded_split(self, side)

    def num_examples(self, split) -> int:
        """Examples in `split` (counting records of small TFRecord sets)."""
        if self.tfds_name:
            from pipelines import tfds as reader

            builder = reader.load_builder(self.tfds_name, self.tfds_data_dir, self.tfds_manual_dir)
            return reader.split_info(builder, self._split(split)).num_examples
        from pipelines import imagenet

        files = imagenet.list_files(self.data_dir, split)
        if len(files) == 1024 and split == "train" and self.num_classes == 1000:
            return IMAGENET_TRAIN_EXAMPLES  # the standard ImageNet shards
        if len(files) == 128 and split == "validation" and self.num_classes == 1000:
            return IMAGENET_VALIDATION_EXAMPLES
        return _count_records(tuple(files), self.skip_corrupt)

    def class_list(self, labels_file=None):
        """`pipelines.labels.ClassInfo` per class, in label order."""
        from pipelines import labels

        if self.tfds_name and not labels_file:
            names = list(self._tfds_info().features["label"].names)
            return [labels.ClassInfo(i, n, n) for i, n in enumerate(names)]
        return labels.load_class_list(
            data_dir=self.data_dir,
            labels_file=labels_file,
            num_classes=self.num_classes,
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
    from pipelines import in_memory

    available = in_memory.host_available_bytes()
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


def source_from_config(cfg) -> DataSource:
    """The DataSource of a TrainConfig; generates the built-in set if needed."""
    data_dir = cfg.data_dir
    if not data_dir and not cfg.tfds_name:
        from pipelines import builtin

        data_dir = builtin.ensure_dataset()
    return DataSource(
        data_dir=data_dir,
        tfds_name=cfg.tfds_name,
        tfds_data_dir=cfg.tfds_data_dir,
        tfds_manual_dir=cfg.tfds_manual_dir,
        num_classes=cfg.num_classes,
        label_offset=cfg.label_offset,
        std=from_config.input_std(cfg),
        skip_corrupt=cfg.skip_corrupt,
    )


def make_train_dataset(cfg, source, strategy, *, seed):
    """The distributed, repeated training set: uint8 crops and lighting shifts,
    normalised on the device by the train step (the host's CPUs stay on the
    input, benchmarks/input_pipeline.py)."""
    augmentation = dict(
        batch_size=cfg.batch_size,  # global: the readers divide it
        image_size=cfg.image_size,
        scale_range=cfg.scale_range,
        lighting_std=cfg.lighting_std,
        seed=seed,
    )
    if cfg.in_memory:
        split = source.decoded_train_split(side=in_memory.side_for(cfg.scale_range))
        read = lambda context: in_memory.make_dataset(  # noqa: E731
            split, input_context=context, **augmentation
        )
    else:
        read = lambda context: source.dataset(  # noqa: E731
            "train",
            is_training=True,
            input_context=context,
            cache=cfg.cache_data,
            repeat=True,
            normalize=False,
            **augmentation,
        )
    return strategy.distribute_datasets_from_function(read)
