"""`InputConfig`: checked on creation, the recipe's one home, and one config
read alike by every reader (real records, tfds' mock data, a decoded split)."""

import dataclasses

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from delving.training import config as train_config
from pipelines import imagenet, in_memory, sources
from pipelines import tfds as tfds_reader
from pipelines.config import InputConfig
from tests import imaging_testutil

# 16-px crops from 18-30 px scales: small enough for every reader's images.
SMALL = InputConfig(batch_size=4, image_size=16, scale_range=(18, 30), seed=1, repeat=True)

BAD_VALUES = [
    (dict(batch_size=0), "batch_size=0"),
    (dict(batch_size=2.5), "batch_size=2.5"),
    (dict(image_size=-1), "image_size=-1"),
    (dict(scale_range=(300, 200)), "scale_range=(300, 200)"),
    (dict(scale_range=(256,)), "scale_range=(256,)"),
    (dict(lighting_std=-0.5), "lighting_std=-0.5"),
    (dict(std=(1.0, 2.0)), "std=(1.0, 2.0)"),
    (dict(std=(1.0, 0.0, 2.0)), "std=(1.0, 0.0, 2.0)"),
    (dict(mean="grey"), "mean='grey'"),
    (dict(dtype="int8"), "dtype='int8'"),
    (dict(shuffle_buffer=-1), "shuffle_buffer=-1"),
    (dict(seed="seven"), "seed='seven'"),
    (dict(skip_corrupt=True, check_images=False), "skip_corrupt=True: needs check_images"),
]


@pytest.mark.parametrize("fields, named", BAD_VALUES, ids=[n for _, n in BAD_VALUES])
def test_bad_value_is_a_one_line_error(fields, named):
    with pytest.raises(ValueError) as info:
        InputConfig(**{"batch_size": 2, **fields})
    message = str(info.value)
    assert message.startswith(f"InputConfig {named}"), message
    assert "\n" not in message


def test_replace_checks_the_new_value():
    with pytest.raises(ValueError, match="InputConfig batch_size=0"):
        SMALL.replace(batch_size=0)


def test_lists_are_kept_as_tuples():
    config = InputConfig(batch_size=2, scale_range=[20, 30], std=[1.0, 2.0, 3.0])
    assert config.scale_range == (20, 30) and config.std == (1.0, 2.0, 3.0)
    assert hash(config) == hash(config.replace())


def test_train_config_takes_its_input_defaults_from_here():
    trainer, reader = train_config.TrainConfig(), InputConfig(batch_size=1)
    assert trainer.image_size == reader.image_size
    assert trainer.scale_range == reader.scale_range
    assert trainer.eval_resize == reader.resize_size
    assert trainer.lighting_std == reader.lighting_std


@pytest.fixture(scope="module")
def record_source(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("records"))
    imaging_testutil.write_shards(root, "train", num_shards=2, per_shard=5, num_classes=3)
    return sources.DataSource(data_dir=root, num_classes=3, input=SMALL)


def _batches(config, record_source):
    """The first batch of each reader, every one given the same `config`."""
    with tfds.testing.mock_data(num_examples=8):
        builder = tfds_reader.load_builder("imagenet2012")
        from_tfds = tfds_reader.make_dataset(builder, "train", config, is_training=True)
        batches = {"tfds": next(iter(from_tfds))}
    records = imagenet.make_dataset(
        record_source.data_dir, "train", config, is_training=True, num_classes=3
    )
    batches["records"] = next(iter(records))
    split = record_source.decoded_train_split()
    batches["in_memory"] = next(iter(in_memory.make_dataset(split, config)))
    return batches


def _structure(batch):
    return tf.nest.map_structure(lambda t: (tuple(t.shape), t.dtype), batch)


@pytest.mark.parametrize("normalize", [True, False])
def test_every_reader_gives_the_same_batch_structure(record_source, normalize):
    config = SMALL.replace(normalize=normalize, dtype="bfloat16")
    batches = _batches(config, record_source)
    expected = _structure(batches["records"])
    if normalize:
        assert expected == (((4, 16, 16, 3), tf.bfloat16), ((4,), tf.int32))
    else:
        assert expected == (
            {"lighting": ((4, 3), tf.float32), "pixels": ((4, 16, 16, 3), tf.uint8)},
            ((4,), tf.int32),
        )
    for name, batch in batches.items():
        assert _structure(batch) == expected, name


def test_the_config_is_a_frozen_value():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SMALL.batch_size = 8
