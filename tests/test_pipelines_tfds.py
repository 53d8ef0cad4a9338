"""The tfds reader, offline with tfds.testing.mock_data (5-49 px images)."""

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from common import errors
from pipelines import tfds as tfds_pipeline


@pytest.mark.parametrize("is_training", [True, False])
def test_imagenet2012_mock_through_the_paper_preprocessing(is_training):
    with tfds.testing.mock_data(num_examples=10):
        ds = tfds_pipeline.make_dataset(
            "imagenet2012",
            "train",
            batch_size=4,
            is_training=is_training,
            image_size=24,
            scale_range=(26, 40),
            resize_size=26,
            seed=1,
        )
        batches = list(ds)
    assert len(batches) == (2 if is_training else 3)
    images, labels = batches[0]
    assert images.shape == (4, 24, 24, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int32
    assert all(0 <= v < 1000 for _, y in batches for v in y.numpy())


def test_other_dataset_with_input_context_and_dtype():
    context = tf.distribute.InputContext(2, 1, num_replicas_in_sync=2)
    with tfds.testing.mock_data(num_examples=8):
        ds = tfds_pipeline.make_dataset(
            "imagenette",
            "train",
            batch_size=4,
            is_training=True,
            input_context=context,
            image_size=16,
            scale_range=(16, 20),
            dtype="bfloat16",
            seed=2,
        )
        images, labels = next(iter(ds))
    assert images.shape == (2, 16, 16, 3) and images.dtype == tf.bfloat16
    assert all(0 <= v < 10 for v in labels.numpy())


def test_unprepared_or_unknown_dataset_is_a_data_error(tmp_path):
    with pytest.raises(errors.DataError, match="imagenette"):
        tfds_pipeline.make_dataset(
            "imagenette", "train", batch_size=2, is_training=False, data_dir=str(tmp_path)
        )
    with pytest.raises(errors.DataError, match="no_such_dataset"):
        tfds_pipeline.make_dataset(
            "no_such_dataset", "train", batch_size=2, is_training=False, data_dir=str(tmp_path)
        )


def test_split_of_an_unprepared_dataset_is_a_data_error(tmp_path):
    """Not tfds' `KeyError: splits is empty` (what --tfds_name=imagenet2012
    with an empty manual dir ended in), and unknown names in one line."""
    builder = tfds_pipeline.load_builder("imagenette", str(tmp_path))
    with pytest.raises(errors.DataError, match="'imagenette' .* is not prepared"):
        tfds_pipeline.split_info(builder, "train")
    with pytest.raises(errors.DataError, match="'no_such_dataset'") as info:
        tfds_pipeline.load_builder("no_such_dataset", str(tmp_path))
    assert "\n" not in str(info.value)
