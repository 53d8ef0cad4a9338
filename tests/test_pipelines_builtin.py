"""The built-in dataset, generated for real and read back."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from common import errors
from pipelines import builtin, imagenet, labels
from pipelines.config import InputConfig

TINY = dict(splits=(("train", 30, 3), ("validation", 10, 2)), size_range=(40, 60))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return builtin.ensure_dataset(str(tmp_path_factory.mktemp("builtin") / "set"), seed=3, **TINY)


def test_layout_follows_the_imagenet_schema(tiny_dir):
    names = sorted(os.listdir(tiny_dir))
    assert names == [
        "dataset_info.json",
        "labels.txt",
        "train-00000-of-00003",
        "train-00001-of-00003",
        "train-00002-of-00003",
        "validation-00000-of-00002",
        "validation-00001-of-00002",
    ]
    record = next(iter(tf.data.TFRecordDataset(os.path.join(tiny_dir, "train-00000-of-00003"))))
    example = tf.train.Example.FromString(record.numpy()).features.feature
    assert example["image/class/label"].int64_list.value[0] == 1
    assert example["image/class/synset"].bytes_list.value[0] == b"b00000001"
    assert example["image/class/text"].bytes_list.value[0] == b"circle"
    assert example["image/format"].bytes_list.value[0] == b"JPEG"
    assert len(example["image/object/bbox/xmin"].float_list.value) == 1
    image = tf.io.decode_jpeg(example["image/encoded"].bytes_list.value[0])
    assert 40 <= image.shape[0] <= 60 and image.shape[2] == 3
    assert float(tf.math.reduce_std(tf.cast(image, tf.float32))) > 10
    info = json.load(open(os.path.join(tiny_dir, "dataset_info.json")))
    assert info["splits"] == {"train": 30, "validation": 10}


def test_reads_through_the_tfrecord_reader(tiny_dir):
    ds = imagenet.make_dataset(
        tiny_dir,
        "validation",
        InputConfig(batch_size=10, image_size=32, resize_size=36),
        is_training=False,
        num_classes=builtin.NUM_CLASSES,
    )
    _, y = next(iter(ds))
    assert sorted(y.numpy().tolist()) == list(range(10))


def test_class_list_names_the_shapes(tiny_dir):
    classes = labels.load_class_list(data_dir=tiny_dir, num_classes=builtin.NUM_CLASSES)
    assert classes[0] == labels.ClassInfo(0, "b00000001", "circle")
    assert [c.name for c in classes] == list(builtin.CLASS_NAMES)


def test_same_seed_writes_the_same_bytes(tiny_dir, tmp_path):
    again = builtin.ensure_dataset(str(tmp_path / "again"), seed=3, **TINY)
    for name in os.listdir(tiny_dir):
        assert (
            open(os.path.join(tiny_dir, name), "rb").read()
            == open(os.path.join(again, name), "rb").read()
        ), name
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_a_complete_set_is_not_generated_again(tiny_dir):
    mtime = os.path.getmtime(os.path.join(tiny_dir, "train-00000-of-00003"))
    assert builtin.ensure_dataset(tiny_dir, seed=3, **TINY) == tiny_dir  # No redo.
    assert os.path.getmtime(os.path.join(tiny_dir, "train-00000-of-00003")) == mtime


def test_another_seed_draws_other_images(tiny_dir, tmp_path):
    other = builtin.ensure_dataset(str(tmp_path / "other"), seed=4, **TINY)
    assert open(os.path.join(other, "train-00000-of-00003"), "rb").read() != (
        open(os.path.join(tiny_dir, "train-00000-of-00003"), "rb").read()
    )


def test_default_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DELVING_DATA_DIR", str(tmp_path))
    assert builtin.default_dir(5) == str(tmp_path / "builtin-v1-seed5")
    monkeypatch.delenv("DELVING_DATA_DIR")
    assert builtin.default_dir().endswith(".cache/delving/builtin-v1-seed0")


def test_a_foreign_directory_is_refused(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(errors.DataError, match="no complete built-in"):
        builtin.ensure_dataset(str(tmp_path), **TINY)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_classes_differ_in_shape_not_colour():
    # Mean colours of two classes over many draws are indistinguishable,
    # while the shapes differ: the set is not solvable from colour alone.
    means = {}
    for label in (0, 2):
        draws = [builtin.render(label, np.random.default_rng([9, label, i])) for i in range(30)]
        means[label] = np.mean([d[0].mean(axis=(0, 1)) for d in draws], axis=0)
    assert np.abs(means[0] - means[2]).max() < 25
    u, v = np.meshgrid(np.linspace(-1, 1, 41), np.linspace(-1, 1, 41))
    masks = [builtin.shape_mask(k, u, v) for k in range(builtin.NUM_CLASSES)]
    for i in range(len(masks)):
        for j in range(i):
            assert (masks[i] != masks[j]).mean() > 0.05, (i, j)


def test_a_killed_generation_is_removed_at_the_next_start(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    output_dir = tmp_path / "builtin"
    killed = tmp_path / f"builtin.tmp-{socket.gethostname()}-{pid}-0123abcd"
    live = tmp_path / f"builtin.tmp-{socket.gethostname()}-{os.getpid()}-0123abcd"
    for d in (killed, live):
        d.mkdir()
        (d / "train-00000-of-00001").write_bytes(b"half")
    builtin.ensure_dataset(str(output_dir), splits=(("train", 4, 1), ("validation", 4, 1)))
    assert not killed.exists()
    assert live.exists(), "a generation still running is left alone"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["builtin", live.name]
