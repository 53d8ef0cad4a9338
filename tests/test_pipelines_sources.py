"""`DataSource` over real TFRecord shards: the config it hands the readers,
whole images, the decoded split, and counting records (corrupt ones too)."""

import shutil

import pytest

from common import errors
from delving.training import config, loop
from pipelines import sources
from pipelines.config import InputConfig
from tests import imaging_testutil, train_testutil

CONFIG = InputConfig(batch_size=4, image_size=16, scale_range=(18, 30), resize_size=18, seed=0)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("source"))
    imaging_testutil.write_shards(root, "train", num_shards=2, per_shard=5, num_classes=3)
    imaging_testutil.write_shards(root, "validation", num_shards=1, per_shard=3, num_classes=3)
    return sources.DataSource(data_dir=root, num_classes=3, input=CONFIG)


def test_dataset_follows_the_source_config(source):
    images, labels = next(iter(source.dataset("validation", is_training=False)))
    assert images.shape == (3, 16, 16, 3) and labels.shape == (3,)


def test_dataset_follows_a_given_config(source):
    config = source.input.replace(batch_size=2, image_size=12)
    images, _ = next(iter(source.dataset("validation", config, is_training=False)))
    assert images.shape == (2, 12, 12, 3)


def test_resized_images_have_the_asked_shorter_side(source):
    images = list(source.resized_images("validation", resize_size=30))
    assert [tuple(image.shape) for image, _ in images] == [(30, 42, 3)] * 3  # 40x56 images


def test_decoded_split_is_shared_by_sources_that_decode_alike(source):
    other = sources.DataSource(
        data_dir=source.data_dir, num_classes=3, input=CONFIG.replace(batch_size=8, seed=5)
    )
    assert other.decoded_train_split() is source.decoded_train_split()
    assert source.decoded_train_split().size == 10


def test_num_examples_counts_the_records(source):
    assert source.num_examples("train") == 10
    assert source.num_examples("validation") == 3


@pytest.fixture(scope="module")
def truncated(tmp_path_factory):
    """A copy of the tiny built-in set with its first train shard cut to 2/3."""
    data = shutil.copytree(
        train_testutil.tiny_data_dir(tmp_path_factory), tmp_path_factory.mktemp("cut") / "data"
    )
    shard = sorted(data.glob("train-*"))[0]
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size * 2 // 3)
    return data, shard


def _recipe(data, model_dir):
    # No --steps_per_epoch: the epoch length comes from counting the records.
    recipe = dict(train_testutil.TINY_RECIPE, data_dir=str(data), model_dir=str(model_dir))
    del recipe["steps_per_epoch"]
    return recipe


def test_truncated_shard_refuses_the_run_before_it_writes(truncated, tmp_path):
    data, shard = truncated
    with pytest.raises(errors.DataError) as info:
        loop.train(config.resolve_config(**_recipe(data, tmp_path / "run")), verbose=0)
    message = str(info.value)
    assert message.startswith("record ") and f" of {shard} cannot be read" in message, message
    assert "--skip_corrupt" in message
    assert not (tmp_path / "run").exists(), "a refused run writes nothing"


def test_skip_corrupt_epoch_counts_only_the_intact_records(truncated, tmp_path):
    data, _ = truncated
    recipe = _recipe(data, tmp_path / "run")
    result = loop.train(config.resolve_config(**recipe, skip_corrupt=True), verbose=0)
    full = sum(n for split, n, _ in train_testutil.TINY_SPLITS if split == "train")
    # The intact records only, fewer than the full split's.
    assert 0 < result.config.steps_per_epoch < config.steps_for(full, recipe["batch_size"])
