"""The TFRecord reader on real shards with real JPEGs, broken ones included."""

import os

import numpy as np
import pytest
import tensorflow as tf

from common import errors
from pipelines import imagenet, preprocessing, records
from pipelines.config import InputConfig
from tests import imaging_testutil

SMALL = dict(image_size=16, scale_range=(18, 30), resize_size=18)


def small(batch_size, **fields):
    """An `InputConfig` of 16-px crops from 18-30 px scales."""
    return InputConfig(batch_size=batch_size, **SMALL | fields)


def labels_of(ds):
    return [int(v) for _, y in ds for v in y.numpy()]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("imagenet"))
    # Every example has its own label (num_classes=1000), so labels identify
    # examples in the sharding tests.
    imaging_testutil.write_shards(root, "train", num_shards=4, per_shard=5, num_classes=1000)
    imaging_testutil.write_shards(
        root, "validation", num_shards=2, per_shard=3, num_classes=1000, seed=1
    )
    return root


def test_train_batches_are_normalised_crops_of_the_split(data_dir):
    ds = imagenet.make_dataset(data_dir, "train", small(6, seed=3), is_training=True)
    batches = list(ds)
    assert len(batches) == 3  # 20 examples, drop_remainder for training.
    images, labels = batches[0]
    assert images.shape == (6, 16, 16, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int32
    seen = labels_of(ds)
    assert len(set(seen)) == 18 and all(0 <= v < 20 for v in seen)
    # Mean subtracted: values centred near zero, not 0..255.
    assert -130 < float(tf.reduce_mean(images)) < 130


@pytest.mark.parametrize("batch_size, repeat", [(6, False), (5, False), (6, True)])
def test_train_batches_have_a_static_size(data_dir, batch_size, repeat):
    # 20 examples: with 5 the end-of-stream sentinel gets a batch of its own.
    ds = imagenet.make_dataset(
        data_dir, "train", small(batch_size, seed=3, repeat=repeat), is_training=True
    )
    assert ds.element_spec[0].shape == (batch_size, 16, 16, 3)
    assert ds.element_spec[1].shape == (batch_size,)
    if not repeat:
        assert len(list(ds)) == 20 // batch_size


def test_train_images_are_the_eager_augmentation_of_their_record(data_dir):
    # Image k of the stream is its record augmented with the seed [seed, k].
    files = imagenet.list_files(data_dir, "train")
    by_label = {}
    for record in tf.data.TFRecordDataset(files):
        data = tf.io.parse_single_example(record, records.REQUIRED_FEATURES)
        by_label[int(data[records.LABEL])] = data[records.ENCODED]
    ds = imagenet.make_dataset(
        data_dir, "train", small(4, seed=11, normalize=False), is_training=True
    )
    k = 0
    for features, labels in ds.take(3):
        for pixels, shift, label in zip(features["pixels"], features["lighting"], labels.numpy()):
            image, eager_shift = preprocessing.augment_for_train(
                by_label[label + 1], image_size=16, scale_range=(18, 30), seed=[11, k]
            )
            np.testing.assert_array_equal(pixels, image)
            np.testing.assert_allclose(shift, eager_shift, rtol=1e-6)
            k += 1
    assert k == 12


def test_train_is_reproducible_with_a_seed(data_dir):
    make = lambda seed: imagenet.make_dataset(
        data_dir, "train", small(4, seed=seed), is_training=True
    )
    a, b, c = (next(iter(make(s))) for s in (7, 7, 8))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    assert not np.array_equal(a[0].numpy(), c[0].numpy())


def test_eval_reads_everything_in_a_fixed_order(data_dir):
    ds = imagenet.make_dataset(data_dir, "validation", small(4), is_training=False)
    # Round-robin over the two shards; the remainder is kept for evaluation.
    assert labels_of(ds) == [0, 3, 1, 4, 2, 5]
    assert next(iter(ds))[0].shape == (4, 16, 16, 3)


def test_label_offset_zero_keeps_the_record_labels(data_dir):
    ds = imagenet.make_dataset(
        data_dir, "validation", small(6), is_training=False, label_offset=0, num_classes=1001
    )
    _, labels = next(iter(ds))
    assert sorted(labels.numpy().tolist()) == [1, 2, 3, 4, 5, 6]


def test_config_dtype_is_the_image_dtype(data_dir):
    config = small(6, dtype="bfloat16")
    ds = imagenet.make_dataset(data_dir, "validation", config, is_training=False)
    images, _ = next(iter(ds))
    assert images.dtype == tf.bfloat16


def test_label_out_of_range_names_the_record(data_dir):
    ds = imagenet.make_dataset(data_dir, "validation", small(6), is_training=False, num_classes=3)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        list(ds)
    message = str(errors.as_data_error(info.value))
    assert message.startswith("label 4 outside 1..3 in record 0 of ")
    assert "validation-00001-of-00002 (check num_classes" in message


def test_whole_image_eval_keeps_the_aspect_ratio(data_dir):
    ds = imagenet.make_dataset(
        data_dir,
        "validation",
        InputConfig(batch_size=1, crop=False, resize_size=20),
        is_training=False,
    )
    images, _ = next(iter(ds))
    assert images.shape == (1, 20, 28, 3)  # 40x56 images, shorter side 20.


@pytest.mark.parametrize("pipelines,expect_by_file", [(2, True), (5, False)])
def test_input_context_shards_disjointly(data_dir, pipelines, expect_by_file):
    seen = []
    for i in range(pipelines):
        context = tf.distribute.InputContext(pipelines, i, num_replicas_in_sync=2)
        ds = imagenet.make_dataset(
            data_dir,
            "train",
            small(2, drop_remainder=False, seed=1),
            is_training=True,
            input_context=context,
        )
        batches = list(ds)
        assert batches[0][0].shape[0] == 1  # Per-replica batch: 2 / 2.
        seen.append([int(v) for _, y in batches for v in y.numpy()])
    flat = [v for part in seen for v in part]
    assert sorted(flat) == list(range(20))  # Every example exactly once.
    if expect_by_file:  # Whole files go to one pipeline: 5 labels in a row.
        assert all(sorted(p)[0] % 5 == 0 for p in seen if p)


def test_mirrored_strategy_distributes_the_dataset(data_dir):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: imagenet.make_dataset(
            data_dir, "train", small(4), is_training=True, input_context=ctx
        )
    )
    images, labels = next(iter(dist))
    local = strategy.experimental_local_results(images)
    assert len(local) == 2 and local[0].shape == (2, 16, 16, 3)


def test_cached_stream_repeats_in_file_order(data_dir):
    ds = imagenet.make_dataset(
        data_dir, "validation", small(3, cache=True, repeat=True), is_training=False
    )
    assert labels_of(ds.take(4)) == [0, 3, 1, 4, 2, 5] * 2


@pytest.mark.parametrize("pattern", [None, "nothing-*"])
def test_missing_shards_are_a_one_line_error(tmp_path, data_dir, pattern):
    where = str(tmp_path / "absent") if pattern is None else data_dir
    with pytest.raises(errors.DataError) as info:
        imagenet.make_dataset(
            where, "train", InputConfig(batch_size=2), is_training=True, file_pattern=pattern
        )
    message = str(info.value)
    assert "\n" not in message and "'train'" in message
    assert (pattern or "train-*") in message


def write_bad_dir(root, bad_record):
    """Two good shards and one holding `bad_record` between two good ones."""
    imaging_testutil.write_shards(root, "train", num_shards=2, per_shard=3, num_classes=4)
    good = imaging_testutil.example(imaging_testutil.image_bytes(), 1)
    imaging_testutil.write_records(os.path.join(root, "train-bad"), [good, bad_record, good])
    return root


UNDECODABLE = [imaging_testutil.image_bytes()[:200], b"\x89PNG garbage", b"hello"]

NOT_AN_IMAGE_RECORD = {
    "not_an_example": b"\x07\xffthis is no tf.train.Example",
    "int64_encoded": tf.train.Example(
        features=tf.train.Features(
            feature={
                "image/encoded": tf.train.Feature(int64_list=tf.train.Int64List(value=[1, 2])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[2])),
            }
        )
    ).SerializeToString(),
}


@pytest.mark.parametrize("kind", sorted(NOT_AN_IMAGE_RECORD))
def test_record_without_a_bytes_image_is_named_not_dumped(tmp_path, kind):
    """Issue 16: a record that is no Example, or whose image/encoded is an
    int64 list, is one line naming file and record, without its bytes."""
    root = write_bad_dir(str(tmp_path), NOT_AN_IMAGE_RECORD[kind])
    make = lambda **fields: imagenet.make_dataset(
        root, "train", small(9, **fields), is_training=False, num_classes=4
    )
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        list(make())
    message = str(errors.as_data_error(info.value))
    where = f"record 1 of {os.path.join(root, 'train-bad')}"
    assert message.startswith(f"cannot decode the image in {where} ("), message
    assert "no tf.train.Example with a bytes image/encoded" in message
    assert "this is no" not in message and "--skip_corrupt" in message
    images = sum(int(x.shape[0]) for x, _ in make(skip_corrupt=True))
    assert images == 2 * 3 + 2  # every good record, the bad one dropped


@pytest.mark.parametrize("payload", UNDECODABLE, ids=["truncated_jpeg", "bad_png", "text"])
def test_undecodable_image_fails_naming_the_record(tmp_path, payload):
    root = write_bad_dir(str(tmp_path), imaging_testutil.example(payload, 2))
    ds = imagenet.make_dataset(root, "train", small(9), is_training=False, num_classes=4)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        list(ds)
    message = str(errors.as_data_error(info.value))
    assert message == (
        "cannot decode the image in record 1 of {} (an undecodable image, or a record "
        "that is no tf.train.Example with a bytes image/encoded; pass --skip_corrupt, "
        "skip_corrupt=True, to skip such records)".format(os.path.join(root, "train-bad"))
    )


def test_skipped_undecodable_image_is_counted_in_the_log(tmp_path, capfd):
    root = write_bad_dir(str(tmp_path), imaging_testutil.example(b"junk", 2))
    ds = imagenet.make_dataset(
        root,
        "train",
        small(9, skip_corrupt=True, drop_remainder=False),
        is_training=True,
        num_classes=4,
    )
    assert len(labels_of(ds)) == 8
    log = capfd.readouterr().err
    assert "skipped 1 undecodable image(s), the last in record 1 of" in log
    assert "train-bad (1 skipped so far)" in log


def test_truncated_shard_fails_naming_the_file(tmp_path):
    imaging_testutil.write_shards(str(tmp_path), "train", num_shards=2, per_shard=4)
    broken = imaging_testutil.truncate(str(tmp_path / "train-00001-of-00002"))
    ds = imagenet.make_dataset(str(tmp_path), "train", InputConfig(batch_size=3), is_training=False)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        list(ds)
    message = str(errors.as_data_error(info.value))
    assert message.startswith("truncated or corrupt TFRecord shard " + broken)


def test_truncated_shard_skipped_with_a_log(tmp_path, capfd):
    imaging_testutil.write_shards(str(tmp_path), "train", num_shards=2, per_shard=4)
    imaging_testutil.truncate(str(tmp_path / "train-00001-of-00002"), keep_fraction=0.6)
    ds = imagenet.make_dataset(
        str(tmp_path),
        "train",
        InputConfig(batch_size=3, skip_corrupt=True, drop_remainder=False),
        is_training=True,
    )
    assert len(labels_of(ds)) == 4 + 2  # 60% of a 4-record shard: 2 intact.
    assert "train-00001-of-00002 after 2 intact records" in capfd.readouterr().err


def test_corrupted_bytes_inside_a_shard_name_the_file(tmp_path):
    imaging_testutil.write_shards(str(tmp_path), "train", num_shards=1, per_shard=3)
    path = str(tmp_path / "train-00000-of-00001")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF  # Breaks a record's CRC.
    open(path, "wb").write(bytes(data))
    ds = imagenet.make_dataset(str(tmp_path), "train", InputConfig(batch_size=3), is_training=False)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        list(ds)
    assert path in str(errors.as_data_error(info.value))


@pytest.mark.parametrize("missing", [records.ENCODED, records.LABEL])
def test_missing_feature_names_the_feature(tmp_path, missing):
    root = write_bad_dir(
        str(tmp_path),
        imaging_testutil.example(imaging_testutil.image_bytes(), 2, **{missing: None}),
    )
    ds = imagenet.make_dataset(
        root, "train", small(9, skip_corrupt=True), is_training=False, num_classes=4
    )
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        list(ds)
    message = str(errors.as_data_error(info.value))
    assert message.startswith(f"required feature {missing} missing in record 1 of")


def test_as_data_error_ignores_other_errors():
    assert errors.as_data_error(ValueError("boom")) is None


def test_unchecked_decoding_gives_the_same_batches(data_dir):
    make = lambda check: imagenet.make_dataset(
        data_dir, "train", small(4, seed=5, check_images=check), is_training=True
    )
    (a, la), (b, lb) = next(iter(make(True))), next(iter(make(False)))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(la.numpy(), lb.numpy())


@pytest.mark.parametrize("position", ["first", "last"])
def test_undecodable_image_at_either_end_is_named(tmp_path, position):
    # The last record has no successor to notice its gap: the sentinel does.
    good = imaging_testutil.example(imaging_testutil.image_bytes(), 1)
    bad = imaging_testutil.example(b"junk", 1)
    path = str(tmp_path / "train-00000-of-00001")
    imaging_testutil.write_records(
        path, [bad, good, good] if position == "first" else [good, good, bad]
    )
    ds = imagenet.make_dataset(str(tmp_path), "train", small(3), is_training=False, num_classes=4)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        list(ds)
    index = 0 if position == "first" else 2
    assert str(errors.as_data_error(info.value)).startswith(
        f"cannot decode the image in record {index} of {path}"
    )


def test_consecutive_undecodable_images_are_all_skipped(tmp_path, capfd):
    good = imaging_testutil.example(imaging_testutil.image_bytes(), 2)
    bad = imaging_testutil.example(b"junk", 2)
    imaging_testutil.write_records(
        str(tmp_path / "train-00000-of-00001"), [good, bad, bad, good, bad]
    )
    ds = imagenet.make_dataset(
        str(tmp_path),
        "train",
        small(8, seed=1, skip_corrupt=True, drop_remainder=False),
        is_training=True,
        num_classes=4,
    )
    assert labels_of(ds) == [1, 1]
    assert "(3 skipped so far)" in capfd.readouterr().err


def test_training_order_still_names_the_bad_image(tmp_path):
    # Unseeded training reads shards in parallel and non-deterministically;
    # the decoding map keeps its order so that the count check still works.
    root = write_bad_dir(str(tmp_path), imaging_testutil.example(b"junk", 2))
    ds = imagenet.make_dataset(
        root, "train", small(2, drop_remainder=False), is_training=True, num_classes=4
    )
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        list(ds)
    assert str(errors.as_data_error(info.value)).startswith(
        "cannot decode the image in record 1 of " + os.path.join(root, "train-bad")
    )


def test_uint8_batches_normalise_to_the_float_batches(data_dir):
    make = lambda normalize: imagenet.make_dataset(
        data_dir,
        "train",
        small(4, seed=5, normalize=normalize, std=preprocessing.STD_RGB),
        is_training=True,
    )
    (floats, labels), (raw, raw_labels) = (next(iter(make(True))), next(iter(make(False))))
    assert raw["pixels"].dtype == tf.uint8 and raw["lighting"].shape == (4, 3)
    np.testing.assert_array_equal(labels.numpy(), raw_labels.numpy())
    np.testing.assert_allclose(
        preprocessing.normalize(
            raw["pixels"], preprocessing.MEAN_RGB, preprocessing.STD_RGB, shift=raw["lighting"]
        ),
        floats,
        atol=1e-5,
    )


def test_eval_batches_equal_the_eager_preprocessing(data_dir):
    ds = imagenet.make_dataset(data_dir, "validation", small(6), is_training=False)
    images, _ = next(iter(ds))
    files = imagenet.list_files(data_dir, "validation")
    records_in_order = [
        r for pair in zip(*[list(tf.data.TFRecordDataset(f)) for f in files]) for r in pair
    ]
    for image, record in zip(images, records_in_order):
        data = tf.io.parse_single_example(record, records.REQUIRED_FEATURES)
        eager = preprocessing.preprocess_for_eval(
            data[records.ENCODED], image_size=16, resize_size=18
        )
        np.testing.assert_allclose(image, eager, atol=1e-5)
