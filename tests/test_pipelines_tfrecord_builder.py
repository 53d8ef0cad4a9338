"""The folder-to-TFRecord converter on real image folders, bad files included."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver

from common import errors
from pipelines import build_tfrecords, imagenet, records
from pipelines import tfrecord_builder as builder
from pipelines.config import InputConfig
from tests import imaging_testutil, train_testutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shard_bytes(output_dir):
    return {
        n: open(os.path.join(output_dir, n), "rb").read() for n in sorted(os.listdir(output_dir))
    }


@pytest.fixture
def train_dir(tmp_path):
    root = str(tmp_path / "raw" / "train")
    imaging_testutil.write_image_folder(root, {"n02": 3, "n01": 3, "n03": 2})
    # ImageNet's oddities, all under .JPEG names.
    for name, fmt in [("cmyk", "cmyk_jpeg"), ("png", "png"), ("gray", "gray_jpeg")]:
        with open(os.path.join(root, "n03", name + ".JPEG"), "wb") as f:
            f.write(imaging_testutil.image_bytes(fmt, 30, 20, seed=9))
    return root


def test_converts_folders_reencoding_odd_files(train_dir, tmp_path):
    out = str(tmp_path / "out")
    labels_file = tmp_path / "synset_words.txt"
    labels_file.write_text("n01\tone fish\nn02\ttwo fish\nn03\tthree\n")
    result = builder.build(
        train_dir,
        out,
        "train",
        num_shards=3,
        labels_file=str(labels_file),
        num_workers=2,
        progress=False,
    )
    assert result == builder.BuildResult(11, 3, 0, 2, [])
    assert open(os.path.join(out, "labels.txt")).read() == (
        "n01\tone fish\nn02\ttwo fish\nn03\tthree\n"
    )
    examples = imaging_testutil.read_examples(out, "train")
    assert len(examples) == 11
    for e in examples:
        assert e["synset"] == e["filename"][:3] or e["synset"] == "n03"
        assert e["label"] == int(e["synset"][1:])
        assert e["encoded"][:2] == b"\xff\xd8"  # Every record holds a JPEG.
    odd = {e["filename"]: e for e in examples if e["synset"] == "n03"}
    assert odd["cmyk.JPEG"]["text"] == "three" and odd["png.JPEG"]["height"] == 30
    assert tf.io.decode_jpeg(odd["cmyk.JPEG"]["encoded"]).shape == (30, 20, 3)
    # Shards mix classes (files are shuffled), and the reader takes them.
    first = imaging_testutil.read_examples(out, "train")[:4]
    assert len({e["synset"] for e in first}) > 1
    config = InputConfig(batch_size=11, image_size=16, resize_size=16)
    ds = imagenet.make_dataset(out, "train", config, is_training=False, num_classes=3)
    assert sorted(next(iter(ds))[1].numpy().tolist()) == sorted(e["label"] - 1 for e in examples)


@pytest.mark.parametrize("with_names", [False, True])
def test_flat_validation_with_label_file(tmp_path, with_names):
    val = tmp_path / "val"
    val.mkdir()
    synsets = ["n02", "n01", "n02", "n03"]
    lines = []
    for i, synset in enumerate(synsets):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        (val / name).write_bytes(imaging_testutil.image_bytes(seed=i))
        lines.append(f"{name} {synset}" if with_names else synset)
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "labels.txt").write_text("n01\ta\nn02\tb\nn03\tc\n")  # From train.
    builder.build(
        str(val),
        str(out),
        "validation",
        progress=False,
        validation_labels_file=str(tmp_path / "val.txt"),
    )
    got = {
        e["filename"]: e["label"] for e in imaging_testutil.read_examples(str(out), "validation")
    }
    assert got == {f"ILSVRC2012_val_{i + 1:08d}.JPEG": int(s[1:]) for i, s in enumerate(synsets)}


def test_rerun_rewrites_only_missing_shards(train_dir, tmp_path):
    out = str(tmp_path / "out")
    builder.build(train_dir, out, "train", num_shards=4, progress=False)
    reference = shard_bytes(out)
    os.remove(os.path.join(out, "train-00002-of-00004"))
    stale = os.path.join(out, "train-00001-of-00004.tmp-deadbeef")
    open(stale, "wb").write(b"half a shard")
    before = os.path.getmtime(os.path.join(out, "train-00000-of-00004"))
    result = builder.build(train_dir, out, "train", num_shards=4, progress=False)
    assert (result.shards_written, result.shards_skipped) == (1, 3)
    assert shard_bytes(out) == reference  # Identical, stale temp gone.
    assert os.path.getmtime(os.path.join(out, "train-00000-of-00004")) == before


def test_rerun_keeps_a_live_writers_temporaries(train_dir, tmp_path):
    # The validation split converted beside the train split, into one folder.
    out = tmp_path / "out"
    out.mkdir()
    live = out / f"validation-00000-of-00001.tmp-{os.getpid()}-0123abcd"
    live.write_bytes(b"a shard in the making")
    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait()
    dead = out / f"train-00000-of-00002.tmp-{ended.pid}-0123abcd"
    dead.write_bytes(b"half a shard")
    builder.build(train_dir, str(out), "train", num_shards=2, progress=False)
    assert live.read_bytes() == b"a shard in the making"
    assert not dead.exists()


def test_killed_conversion_resumes(tmp_path):
    # Large PNGs (re-encoded) make the conversion slow enough to kill it.
    raw = tmp_path / "raw"
    big = imaging_testutil.encode(imaging_testutil.pattern(900, 900), "png")
    for synset in ("n01", "n02"):
        (raw / synset).mkdir(parents=True)
        for i in range(12):
            (raw / synset / f"{i}.JPEG").write_bytes(big)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "pipelines.build_tfrecords",
        f"--input_dir={raw}",
        f"--output_dir={out}",
        "--num_shards=12",
        "--num_workers=1",
    ]
    env = dict(os.environ, PYTHONPATH=ROOT)
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + train_testutil.HANG_GUARD_S
    while time.time() < deadline and process.poll() is None:
        if out.exists() and any(
            n.startswith("train-") and ".tmp-" not in n for n in os.listdir(out)
        ):
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = sorted(n for n in os.listdir(out) if ".tmp-" not in n and n.startswith("train-"))
    if len(finished) == 12:
        pytest.skip("the conversion finished before it could be killed")
    for name in finished:  # Whatever exists under a final name is complete.
        assert sum(1 for _ in tf.data.TFRecordDataset(str(out / name))) == 2
    result = builder.build(str(raw), str(out), "train", num_shards=12, progress=False)
    assert result.shards_skipped == len(finished)
    assert not [n for n in os.listdir(out) if ".tmp-" in n]
    assert len(imaging_testutil.read_examples(str(out), "train")) == 24


CORRUPT = [b"this is not an image", imaging_testutil.image_bytes(height=80)[:300]]


@pytest.mark.parametrize("payload", CORRUPT, ids=["text", "truncated_jpeg"])
def test_corrupt_file_fails_the_build_naming_it(train_dir, tmp_path, payload):
    bad = os.path.join(train_dir, "n01", "bad.JPEG")
    open(bad, "wb").write(payload)
    out = str(tmp_path / "out")
    with pytest.raises(
        errors.DataError, match="cannot decode image file .*bad.JPEG.*--skip_corrupt"
    ):
        builder.build(train_dir, out, "train", num_shards=1, progress=False)
    assert not [n for n in os.listdir(out) if n.startswith("train-")]


@pytest.mark.parametrize("payload", CORRUPT, ids=["text", "truncated_jpeg"])
def test_skip_corrupt_leaves_the_corrupt_file_out(train_dir, tmp_path, payload):
    bad = os.path.join(train_dir, "n01", "bad.JPEG")
    open(bad, "wb").write(payload)
    out = str(tmp_path / "out")
    result = builder.build(train_dir, out, "train", num_shards=1, skip_corrupt=True, progress=False)
    assert result.skipped_files == [bad]
    assert len(imaging_testutil.read_examples(out, "train")) == 11


def test_user_mistakes_are_one_line_errors(train_dir, tmp_path):
    cases = [
        (dict(input_dir=str(tmp_path / "absent")), "does not exist"),
        (dict(input_dir=str(tmp_path)), "no images"),
    ]
    (tmp_path / "empty").mkdir()
    cases[1] = (dict(input_dir=str(tmp_path / "empty")), "no images")
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("n01\nn02\n")
    cases.append(
        (
            dict(input_dir=train_dir, labels_file=str(labels_file)),
            "synset n03 .* not in the class list",
        )
    )
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.JPEG").write_bytes(imaging_testutil.image_bytes())
    cases.append((dict(input_dir=str(flat)), "--validation_labels_file"))
    # More shards than images: refused, not 122 empty shards written.
    cases.append(
        (dict(input_dir=train_dir, num_shards=128), "--num_shards=128 is more than the 11")
    )
    for kwargs, pattern in cases:
        with pytest.raises(errors.DataError, match=pattern) as info:
            builder.build(output_dir=str(tmp_path / "o"), split="train", progress=False, **kwargs)
        assert "\n" not in str(info.value)


def test_binary_reports_errors_without_traceback(tmp_path, capsys):
    flags.FLAGS.mark_as_parsed()
    with (
        flagsaver.flagsaver(input_dir=str(tmp_path / "absent"), output_dir=str(tmp_path / "o")),
        pytest.raises(SystemExit) as info,
    ):
        build_tfrecords.main(["build_tfrecords"])
    assert str(info.value) == (
        f"build_tfrecords: error: --input_dir={tmp_path / 'absent'} does not exist"
    )
    raw = tmp_path / "raw"
    imaging_testutil.write_image_folder(str(raw), {"n01": 2})
    with flagsaver.flagsaver(input_dir=str(raw), output_dir=str(tmp_path / "o"), num_shards=2):
        build_tfrecords.main(["build_tfrecords"])
    assert "train: 2 images, 2 shards written" in capsys.readouterr().out
    assert records.shard_name("train", 1, 2) in os.listdir(tmp_path / "o")
    shutil.rmtree(tmp_path / "o")


@pytest.mark.parametrize("split", ["../escape", "a/b", "/tmp/x", "..", ""])
def test_split_names_cannot_escape_the_output_dir(train_dir, tmp_path, split):
    out = tmp_path / "deep" / "out"
    with pytest.raises(errors.DataError, match="not a plain name"):
        builder.build(train_dir, str(out), split, progress=False)
    assert not (tmp_path / "deep").exists()  # refused before anything is written


# Imagenette's classes by their names (not WordNet ids), one of them non-ASCII,
# under every image extension a photo folder has.
NAMED_CLASSES = {
    "tench": ".JPEG",
    "English springer": ".jpg",
    "cassette player": ".jpeg",
    "chain saw": ".png",
    "église": ".JPEG",
    "French horn": ".jpg",
    "garbage truck": ".JPEG",
    "gas pump": ".jpeg",
    "golf ball": ".jpg",
    "parachute": ".JPEG",
}


def write_named_folders(root, per_class):
    """`root/<class name>/*` in each class's extension (a PNG under .png)."""
    for i, (name, extension) in enumerate(NAMED_CLASSES.items()):
        imaging_testutil.write_image_folder(
            str(root),
            {name: per_class},
            fmt="png" if extension == ".png" else "jpeg",
            seed=100 * i,
            extension=extension,
        )


@pytest.mark.parametrize("folder", ["val", "valid"])
def test_validation_split_reads_a_folder_named_as_datasets_name_it(tmp_path, folder):
    imaging_testutil.write_image_folder(str(tmp_path / "raw" / "train"), {"n01": 2, "n02": 2})
    imaging_testutil.write_image_folder(str(tmp_path / "raw" / folder), {"n01": 1, "n02": 2})
    result = builder.build(
        str(tmp_path / "raw"), str(tmp_path / "out"), "validation", progress=False
    )
    assert result.num_images == 3
    assert {
        e["filename"] for e in imaging_testutil.read_examples(str(tmp_path / "out"), "validation")
    } == {
        "n01_0.JPEG",
        "n02_0.JPEG",
        "n02_1.JPEG",
    }


def test_validation_folder_wins_over_val(tmp_path):
    imaging_testutil.write_image_folder(str(tmp_path / "raw" / "validation"), {"n01": 1})
    imaging_testutil.write_image_folder(str(tmp_path / "raw" / "val"), {"n01": 3})
    result = builder.build(
        str(tmp_path / "raw"), str(tmp_path / "out"), "validation", progress=False
    )
    assert result.num_images == 1


def test_plan_line_names_the_folder_read(tmp_path, capsys):
    imaging_testutil.write_image_folder(str(tmp_path / "raw" / "val"), {"n01": 2})
    builder.build(str(tmp_path / "raw"), str(tmp_path / "out"), "validation")
    assert f"validation: 2 images of 1 classes from {tmp_path / 'raw' / 'val'}, " in (
        capsys.readouterr().out
    )


def test_split_without_its_folder_beside_another_splits_is_refused(tmp_path):
    # Else the folder `train` would be taken for a class of the validation split.
    imaging_testutil.write_image_folder(str(tmp_path / "raw" / "train"), {"n01": 2})
    with pytest.raises(errors.DataError, match=r"holds train/ but no validation/ val/ valid/"):
        builder.build(str(tmp_path / "raw"), str(tmp_path / "out"), "validation", progress=False)
    assert not (tmp_path / "out").exists()


def test_class_folders_of_any_names_are_the_classes(tmp_path):
    write_named_folders(tmp_path / "raw" / "train", per_class=1)
    result = builder.build(str(tmp_path / "raw"), str(tmp_path / "out"), "train", progress=False)
    assert result.num_images == 10 and result.reencoded == 1  # the PNG
    written = (tmp_path / "out" / "labels.txt").read_text(encoding="utf-8")
    assert written == "".join(f"{n}\t{n}\n" for n in sorted(NAMED_CLASSES))
    examples = imaging_testutil.read_examples(str(tmp_path / "out"), "train")
    assert {(e["synset"], e["label"]) for e in examples} == {
        (n, i + 1) for i, n in enumerate(sorted(NAMED_CLASSES))
    }


def test_progress_in_a_log_file_is_plain_lines(tmp_path):
    imaging_testutil.write_image_folder(str(tmp_path / "raw" / "train"), {"n01": 3, "n02": 3})
    log = tmp_path / "build.log"
    with open(log, "w") as f:
        code = subprocess.call(
            [
                sys.executable,
                "-m",
                "pipelines.build_tfrecords",
                f"--input_dir={tmp_path / 'raw'}",
                f"--output_dir={tmp_path / 'out'}",
            ],
            cwd=ROOT,
            env=train_testutil.subprocess_env(),
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=train_testutil.HANG_GUARD_S,
        )
    text = log.read_text()
    assert code == 0, text
    assert re.search(r"^train: 6/6 images \(100%\)", text, re.M), text
    assert not re.search(r"[\x1b\r\b]", text), repr(text)  # no colours, no redrawing
    assert [line for line in text.splitlines() if not line.startswith("train: ")] == []


def test_progress_on_a_terminal_is_a_bar_drawn_in_place(tmp_path):
    imaging_testutil.write_image_folder(str(tmp_path / "raw" / "train"), {"n01": 3, "n02": 3})
    code, text = train_testutil.run_on_terminal(
        [
            "-m",
            "pipelines.build_tfrecords",
            f"--input_dir={tmp_path / 'raw'}",
            f"--output_dir={tmp_path / 'out'}",
        ]
    )
    assert code == 0, text
    assert "\r\x1b[1m6/6\x1b[0m" in text, repr(text)  # Keras' bar, redrawn in place


def test_named_class_folders_train_and_evaluate_through_the_binaries(tmp_path):
    # An Imagenette-shaped root (train/, val/) of classes named in words.
    write_named_folders(tmp_path / "raw" / "train", per_class=2)
    write_named_folders(tmp_path / "raw" / "val", per_class=1)
    records_dir, run = tmp_path / "records", tmp_path / "run"
    for split in ("train", "validation"):
        code, out, err = train_testutil.run(
            "pipelines.build_tfrecords",
            [f"--input_dir={tmp_path / 'raw'}", f"--output_dir={records_dir}", f"--split={split}"],
        )
        assert code == 0, err[-3000:]
    recipe = {k: v for k, v in train_testutil.TINY_RECIPE.items() if k != "preset"}
    code, out, err = train_testutil.run(
        "delving.train",
        train_testutil.as_flags(**dict(recipe, data_dir=records_dir, model_dir=run)),
    )
    assert code == 0, err[-3000:]
    assert "Preset photos (a CPU recipe for small photo sets)" in out
    classes = (run / "classes.tsv").read_text(encoding="utf-8").splitlines()
    assert [line.split("\t")[1] for line in classes] == sorted(NAMED_CLASSES)
    code, out, err = train_testutil.run("delving.evaluate", [f"--model_dir={run}"])
    assert code == 0, err[-3000:]
    assert re.search(r"^center\s+\d+\s+[\d.]+%\s+[\d.]+%\s+[\d.]+\s+10$", out, re.M), out
