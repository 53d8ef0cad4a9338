"""The tfds reader, offline: tfds.testing.mock_data (5-49 px images), a
tiny dataset prepared here by tfds itself, each record's label its index,
and tfds' own Imagenette builder over a tiny local archive."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from common import errors
from pipelines import tfds as tfds_pipeline
from pipelines.config import InputConfig
from tests import tfds_testutil


@pytest.mark.parametrize("is_training", [True, False])
def test_imagenet2012_batches_are_the_configured_crops(is_training):
    config = InputConfig(batch_size=4, image_size=24, scale_range=(26, 40), resize_size=26, seed=1)
    with tfds.testing.mock_data(num_examples=10):
        builder = tfds_pipeline.load_builder("imagenet2012")
        ds = tfds_pipeline.make_dataset(builder, "train", config, is_training=is_training)
        batches = list(ds)
    assert len(batches) == (2 if is_training else 3)
    images, labels = batches[0]
    assert images.shape == (4, 24, 24, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int32
    assert all(0 <= v < 1000 for _, y in batches for v in y.numpy())


def test_input_context_gives_the_per_replica_share():
    context = tf.distribute.InputContext(2, 1, num_replicas_in_sync=2)
    config = InputConfig(
        batch_size=4, image_size=16, scale_range=(16, 20), dtype="bfloat16", seed=2
    )
    with tfds.testing.mock_data(num_examples=8):
        builder = tfds_pipeline.load_builder("imagenette")
        ds = tfds_pipeline.make_dataset(
            builder, "train", config, is_training=True, input_context=context
        )
        images, labels = next(iter(ds))
    assert images.shape == (2, 16, 16, 3) and images.dtype == tf.bfloat16
    assert all(0 <= v < 10 for v in labels.numpy())


def test_unprepared_dataset_is_a_data_error(tmp_path):
    builder = tfds_pipeline.load_builder("imagenette", str(tmp_path))
    with pytest.raises(errors.DataError, match="imagenette"):
        tfds_pipeline.make_dataset(builder, "train", InputConfig(batch_size=2), is_training=False)


def test_unknown_dataset_is_a_data_error(tmp_path):
    with pytest.raises(errors.DataError, match="no_such_dataset"):
        tfds_pipeline.load_builder("no_such_dataset", str(tmp_path))


def test_split_of_an_unprepared_dataset_is_a_data_error(tmp_path):
    """Not tfds' `KeyError: splits is empty` (what --tfds_name=imagenet2012
    with an empty manual dir ended in)."""
    builder = tfds_pipeline.load_builder("imagenette", str(tmp_path))
    with pytest.raises(errors.DataError, match="'imagenette' .* is not prepared"):
        tfds_pipeline.split_info(builder, "train")


def test_unknown_dataset_error_is_one_line(tmp_path):
    with pytest.raises(errors.DataError, match="'no_such_dataset'") as info:
        tfds_pipeline.load_builder("no_such_dataset", str(tmp_path))
    assert "\n" not in str(info.value)


_RECORDS = 12


class _Numbered(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Record i is a 20x20 JPEG labelled i, so labels name the records read."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(20, 20, 3), encoding_format="jpeg"),
                    "label": tfds.features.ClassLabel(num_classes=_RECORDS),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(_RECORDS):
            yield i, {"image": np.full((20, 20, 3), 10 * i, np.uint8), "label": i}


@pytest.fixture(scope="module", params=[1, 3], ids=["1_file", "3_files"])
def numbered_builder(request, tmp_path_factory):
    builder = _Numbered(data_dir=str(tmp_path_factory.mktemp("numbered")))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(num_shards=request.param)
    )
    assert len(builder.info.splits["train"].filenames) == request.param
    return builder


def _labels_read_by_each_worker(builder, workers, *, is_training):
    config = InputConfig(
        batch_size=2,
        image_size=16,
        scale_range=(16, 20),
        resize_size=16,
        seed=3,
        drop_remainder=False,
    )
    per_worker = []
    for i in range(workers):
        context = tf.distribute.InputContext(workers, i, num_replicas_in_sync=workers)
        ds = tfds_pipeline.make_dataset(
            builder, "train", config, is_training=is_training, input_context=context
        )
        per_worker.append(sorted(int(v) for _, labels in ds for v in labels.numpy()))
    return per_worker


@pytest.mark.parametrize("is_training", [True, False], ids=["train", "eval"])
def test_two_workers_read_each_record_once(numbered_builder, is_training):
    first, second = _labels_read_by_each_worker(numbered_builder, 2, is_training=is_training)
    assert first and second  # each worker reads a share, not the whole split
    assert sorted(first + second) == list(range(_RECORDS))


@pytest.mark.parametrize("config", ["160px-v2", "320px-v2", "full-size-v2"])
def test_imagenette_prepared_from_a_local_archive_has_its_ten_classes(tmp_path, config):
    with tfds_testutil.no_network() as attempts:
        tfds_testutil.prepare_imagenette(tmp_path, config, per_class=(2, 1))
        builder = tfds_pipeline.load_builder(f"imagenette/{config}", str(tmp_path))
    assert attempts == []
    splits = {name: split.num_examples for name, split in builder.info.splits.items()}
    assert (splits, tfds_pipeline.num_classes(f"imagenette/{config}", str(tmp_path))) == (
        {"train": 20, "validation": 10},
        10,
    )


def test_imagenette_batches_hold_its_labels(tmp_path):
    with tfds_testutil.no_network():
        builder = tfds_testutil.prepare_imagenette(tmp_path, per_class=(1, 1))
    config = InputConfig(batch_size=10, image_size=32, resize_size=36)
    images, labels = next(
        iter(tfds_pipeline.make_dataset(builder, "validation", config, is_training=False))
    )
    assert images.shape == (10, 32, 32, 3) and sorted(labels.numpy().tolist()) == list(range(10))


def test_preparing_imagenette_from_its_cached_archive_downloads_nothing(tmp_path):
    with tfds_testutil.no_network() as attempts:
        tfds_testutil.prepare_imagenette(tmp_path, per_class=(1, 1))
    downloads = [f for _, _, files in os.walk(tmp_path / "downloads" / "imagenette") for f in files]
    assert attempts == [] and len(downloads) == 2  # the archive and its .INFO, nothing fetched
