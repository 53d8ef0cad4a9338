"""A re-run of the folder converter resumes only the same conversion: real
image folders, real shards, the real binary where its message matters."""

import os
import re
import shutil

import pytest
import tensorflow as tf

from common import errors
from pipelines import records
from pipelines import tfrecord_builder as builder
from tests import imaging_testutil, train_testutil


def snapshot(directory):
    """Every file's bytes and modification time."""
    return {
        name: (open(path, "rb").read(), os.stat(path).st_mtime_ns)
        for name in sorted(os.listdir(directory))
        for path in [os.path.join(directory, name)]
    }


def count_records(directory, split):
    return sum(
        1
        for name in os.listdir(directory)
        if name.startswith(f"{split}-")
        for _ in tf.data.TFRecordDataset(os.path.join(directory, name))
    )


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / "raw"
    imaging_testutil.write_image_folder(str(root), {"n01": 3, "n02": 3})
    return root


def test_binary_refuses_other_images_in_other_shards_in_one_line(raw, tmp_path):
    out = tmp_path / "out"
    args = [f"--input_dir={raw}", f"--output_dir={out}"]
    assert train_testutil.run("pipelines.build_tfrecords", [*args, "--num_shards=2"])[0] == 0
    before = snapshot(out)
    shutil.rmtree(raw)
    imaging_testutil.write_image_folder(str(raw), {"n01": 4, "n02": 4}, seed=7)
    code, _, err = train_testutil.run("pipelines.build_tfrecords", [*args, "--num_shards=3"])
    assert code == 1
    assert train_testutil.error_lines(err) == [
        f"build_tfrecords: error: --output_dir={out} holds a train conversion of 6 images in "
        "2 shards (seed 0); this one has 8 images in 3 shards (seed 0) (--num_shards=3, was 2): "
        "use another --output_dir, or remove its train-* files and train.manifest.json"
    ]
    assert snapshot(out) == before
    assert count_records(out, "train") == 6


@pytest.mark.parametrize(
    "change,difference",
    [
        ("add", "n01 has 4 images, was 3"),
        ("remove", "n02 has 2 images, was 3"),
        ("replace", "n01's 3 images have other names or sizes"),
        ("seed", "--seed=1, was 0"),
        ("labels", "class 1 is n02 (n02), was n01 (n01)"),
    ],
)
def test_resume_of_another_conversion_is_refused(raw, tmp_path, change, difference):
    out = str(tmp_path / "out")
    builder.build(str(raw), out, "train", num_shards=2, progress=False)
    os.remove(os.path.join(out, records.shard_name("train", 1, 2)))  # interrupted
    before = snapshot(out)
    kwargs = dict(num_shards=2, progress=False)
    if change == "add":
        (raw / "n01" / "new.JPEG").write_bytes(imaging_testutil.image_bytes(seed=99))
    elif change == "remove":
        os.remove(raw / "n02" / "n02_0.JPEG")
    elif change == "replace":  # same name, another image
        (raw / "n01" / "n01_1.JPEG").write_bytes(imaging_testutil.image_bytes(height=80, seed=99))
    elif change == "seed":
        kwargs["seed"] = 1
    else:
        (tmp_path / "synsets.txt").write_text("n02\nn01\n")
        kwargs["labels_file"] = str(tmp_path / "synsets.txt")
    pattern = (
        re.escape("of 6 images in 2 shards (seed 0); this one has ")
        + r".*\("
        + re.escape(difference)
    )
    with pytest.raises(errors.DataError, match=pattern):
        builder.build(str(raw), out, "train", **kwargs)
    assert snapshot(out) == before


def test_shards_without_a_manifest_are_refused(raw, tmp_path):
    # Shards of an older converter (or copied in): nothing says what they hold.
    out = tmp_path / "out"
    imaging_testutil.write_shards(str(out), "train", num_shards=2, per_shard=3)
    before = snapshot(out)
    with pytest.raises(errors.DataError, match="holds train shards .* but no train.manifest.json"):
        builder.build(str(raw), str(out), "train", num_shards=2, progress=False)
    assert snapshot(out) == before


def test_completed_conversion_rerun_writes_nothing(raw, tmp_path):
    out = tmp_path / "out"
    builder.build(str(raw), str(out), "train", num_shards=2, progress=False)
    for name in os.listdir(out):  # an old time: any rewrite would show
        os.utime(out / name, ns=(10**18, 10**18))
    before = snapshot(out)
    result = builder.build(str(raw), str(out), "train", num_shards=2, progress=False)
    assert (result.shards_written, result.shards_skipped) == (0, 2)
    assert snapshot(out) == before


def test_other_split_may_not_relabel_the_shards(raw, tmp_path):
    out = tmp_path / "out"
    builder.build(str(raw), str(out), "train", num_shards=2, progress=False)
    labels_txt = (out / "labels.txt").read_text()
    (tmp_path / "synsets.txt").write_text("n02\nn01\n")
    refused = r"labels.txt, which the shards .* \(class 1 is n02 \(n02\), was n01 \(n01\)\)"
    with pytest.raises(errors.DataError, match=refused):
        builder.build(
            str(raw),
            str(out),
            "validation",
            num_shards=1,
            labels_file=str(tmp_path / "synsets.txt"),
            progress=False,
        )
    assert (out / "labels.txt").read_text() == labels_txt
    assert not [n for n in os.listdir(out) if n.startswith("validation")]
