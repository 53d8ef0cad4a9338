"""The ImageNet-shaped set: drawn for real, converted by the builder, read back."""

import glob
import os

import numpy as np
import pytest
from PIL import Image

from common import errors
from pipelines import imagenet, imagenet_shaped, labels
from pipelines.config import InputConfig

# Ten of the 1000 classes (0, 111, ..., 999), three images each: seconds to
# draw, and the labels still span 1..1000.
STRIDE = 111
PER_CLASS = 3


@pytest.fixture(scope="module")
def shaped_dir(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("shaped"))
    imagenet_shaped.generate(
        output_dir, "train", images_per_class=PER_CLASS, class_stride=STRIDE, num_shards=2, seed=1
    )
    return output_dir


def _jpegs(shaped_dir):
    return sorted(glob.glob(os.path.join(shaped_dir, "images", "train", "n*", "*.JPEG")))


def test_records_read_back_with_1000_classes(shaped_dir):
    ds = imagenet.make_dataset(
        shaped_dir,
        "train",
        InputConfig(batch_size=30),
        is_training=False,
        num_classes=imagenet_shaped.NUM_CLASSES,
    )
    images, y = next(iter(ds))
    assert images.shape == (30, 224, 224, 3)
    assert sorted(set(y.numpy().tolist())) == list(range(0, 1000, STRIDE))


def test_class_list_holds_1000_synsets_of_imagenets_form(shaped_dir):
    classes = labels.load_class_list(data_dir=shaped_dir, num_classes=1000)
    assert len({c.synset for c in classes}) == 1000
    assert all(len(c.synset) == 9 and c.synset.startswith("n0") for c in classes)
    assert [c.synset for c in classes] == sorted(c.synset for c in classes)


def test_image_sizes_are_drawn_like_imagenets():
    rng = np.random.default_rng(0)
    sizes = np.array([imagenet_shaped.image_size(rng) for _ in range(2000)])
    short, long = sizes.min(axis=1), sizes.max(axis=1)
    assert short.min() >= 300 and short.max() <= 500
    assert (long / short).min() >= 1 and (long / short).max() <= 16 / 9 + 0.01
    portrait = (sizes[:, 0] > sizes[:, 1]).mean()
    assert 0.15 < portrait < 0.35


def test_files_are_about_imagenets_100_kb(shaped_dir):
    sizes = [os.path.getsize(f) for f in _jpegs(shaped_dir)]
    assert 60_000 < np.mean(sizes) < 160_000


def test_folder_holds_grayscale_and_cmyk_jpegs(shaped_dir):
    modes = {Image.open(f).mode for f in _jpegs(shaped_dir)}
    assert modes == {"RGB", "L", "CMYK"}


def test_grayscale_images_reach_training_with_three_equal_channels(shaped_dir):
    grayscale = sum(Image.open(f).mode == "L" for f in _jpegs(shaped_dir))
    ds = imagenet.make_dataset(
        shaped_dir,
        "train",
        InputConfig(batch_size=30, normalize=False),
        is_training=False,
        num_classes=1000,
    )
    features, _ = next(iter(ds))
    pixels = features["pixels"].numpy().astype(int)
    assert pixels.shape[-1] == 3
    equal = [
        np.array_equal(p[..., 0], p[..., 1]) and np.array_equal(p[..., 1], p[..., 2])
        for p in pixels
    ]
    assert sum(equal) == grayscale


def test_cmyk_jpegs_are_stored_as_rgb(shaped_dir):
    import tensorflow as tf

    from pipelines import records

    cmyk = {os.path.basename(f) for f in _jpegs(shaped_dir) if Image.open(f).mode == "CMYK"}
    found = 0
    for path in imagenet.list_files(shaped_dir, "train"):
        for record in tf.data.TFRecordDataset(path):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            if feature["image/filename"].bytes_list.value[0].decode() in cmyk:
                encoded = feature[records.ENCODED].bytes_list.value[0]
                assert tf.io.decode_jpeg(encoded, channels=0).shape[-1] == 3
                found += 1
    assert found == len(cmyk) >= 1


def test_same_seed_draws_the_same_bytes(tmp_path):
    paths = []
    for name in ("a", "b"):
        imagenet_shaped.write_images(
            str(tmp_path / name), "validation", images_per_class=1, num_classes=2, seed=4
        )
        paths.append(sorted(glob.glob(str(tmp_path / name / "validation" / "*" / "*.JPEG"))))
    assert len(paths[0]) == 2
    for a, b in zip(*paths):
        assert open(a, "rb").read() == open(b, "rb").read()


def test_another_generation_into_the_same_folder_is_refused_before_drawing(tmp_path):
    imagenet_shaped.write_images(str(tmp_path), "train", images_per_class=1, num_classes=2)
    before = sorted(glob.glob(str(tmp_path / "train" / "*" / "*")))
    with pytest.raises(errors.DataError, match="images_per_class=1 \\(now 2\\)"):
        imagenet_shaped.write_images(str(tmp_path), "train", images_per_class=2, num_classes=2)
    assert sorted(glob.glob(str(tmp_path / "train" / "*" / "*"))) == before
