"""The class lists: labels files in their formats, names read from records,
and labels files as users save them (Latin-1, a byte-order mark, a class
twice), read by the converter and the trainer: one line naming file and line."""

import os
import shutil

import pytest

from common import errors
from pipelines import builtin, labels
from pipelines import tfrecord_builder as builder
from tests import imaging_testutil, train_testutil

LABEL_FILES = [
    (
        "n01\ttench, Tinca tinca\nn02\tgoldfish\n",
        [("n01", "tench, Tinca tinca"), ("n02", "goldfish")],
    ),
    (
        "n01 tench, Tinca tinca\nn02 goldfish\n\n",
        [("n01", "tench, Tinca tinca"), ("n02", "goldfish")],
    ),
    ("n01\nn02\n", [("n01", "n01"), ("n02", "n02")]),
]


@pytest.mark.parametrize("text,expected", LABEL_FILES)
def test_labels_file_lines_give_each_class(tmp_path, text, expected):
    path = tmp_path / "synset_words.txt"
    path.write_text(text)
    classes = labels.load_class_list(labels_file=str(path), num_classes=2)
    assert [(c.synset, c.name) for c in classes] == expected
    assert [c.index for c in classes] == [0, 1]


def test_missing_labels_file_is_a_data_error(tmp_path):
    with pytest.raises(errors.DataError, match="does not exist"):
        labels.load_class_list(labels_file=str(tmp_path / "no"), num_classes=2)


def test_labels_file_of_another_class_count_is_a_data_error(tmp_path):
    (tmp_path / "l.txt").write_text("a\nb\nc\n")
    with pytest.raises(errors.DataError, match="lists 3 classes but num_cl"):
        labels.load_class_list(labels_file=str(tmp_path / "l.txt"), num_classes=2)


def test_class_names_come_from_the_records(tmp_path):
    imaging_testutil.write_shards(
        str(tmp_path), "validation", num_shards=1, per_shard=3, num_classes=3
    )
    classes = labels.load_class_list(data_dir=str(tmp_path), num_classes=4)
    assert classes[:3] == [labels.ClassInfo(i, f"s{i:04d}", f"class {i}") for i in range(3)]


def test_classes_missing_from_the_records_get_generic_names(tmp_path):
    imaging_testutil.write_shards(
        str(tmp_path), "validation", num_shards=1, per_shard=3, num_classes=3
    )
    classes = labels.load_class_list(data_dir=str(tmp_path), num_classes=4)
    assert classes[3] == labels.ClassInfo(3, "class_0003", "class_0003")


def test_no_records_give_generic_names(tmp_path):
    generic = labels.load_class_list(data_dir=str(tmp_path / "x"), num_classes=2)
    assert [c.name for c in generic] == ["class_0000", "class_0001"]


BOM = b"\xef\xbb\xbf"
VAL = "ILSVRC2012_val_{:08d}.JPEG"


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / "raw"
    imaging_testutil.write_image_folder(str(root), {"n01": 2, "n02": 2})
    return root


@pytest.fixture
def flat(tmp_path):
    """A flat validation folder, ImageNet style."""
    root = tmp_path / "val"
    root.mkdir()
    for i in range(3):
        (root / VAL.format(i + 1)).write_bytes(imaging_testutil.image_bytes(seed=i))
    return root


@pytest.mark.parametrize(
    "flag,content,message",
    [
        (
            "labels_file",
            "n01\tpoisson\nn02\tcr\u00e8me\n".encode("latin-1"),
            "labels file {} line 2 is not UTF-8 text (byte 0xe8): save it as UTF-8",
        ),
        (
            "labels_file",
            b"n01\tone\nn02\ttwo\nn01\tagain\n",
            "labels file {} lists n01 twice, on lines 1 and 3: each class must appear once",
        ),
        (
            "validation_labels_file",
            b"n01\nn02\nn\xe9\n",
            "validation labels file {} line 3 is not UTF-8 text (byte 0xe9): save it as UTF-8",
        ),
        (
            "validation_labels_file",
            f"{VAL.format(1)} n01\n{VAL.format(2)} n02\n{VAL.format(3)} n02\n\n"
            f"{VAL.format(1)} n02\n".encode(),
            f"validation labels file {{}} names {VAL.format(1)} twice, on lines 1 and 5",
        ),
    ],
    ids=["latin1", "duplicate_synset", "validation_latin1", "validation_duplicate_file"],
)
def test_converter_binary_reports_a_bad_labels_file_in_one_line(
    raw, flat, tmp_path, flag, content, message
):
    path = tmp_path / "synsets.txt"
    path.write_bytes(content)
    input_dir = flat if flag == "validation_labels_file" else raw
    code, _, err = train_testutil.run(
        "pipelines.build_tfrecords",
        [f"--input_dir={input_dir}", f"--output_dir={tmp_path / 'out'}", f"--{flag}={path}"],
    )
    assert code == 1
    assert train_testutil.error_lines(err) == ["build_tfrecords: error: " + message.format(path)]


@pytest.mark.parametrize("flag", ["labels_file", "validation_labels_file"])
def test_converter_drops_a_byte_order_mark(raw, flat, tmp_path, flag):
    path = tmp_path / "synsets.txt"
    out = str(tmp_path / "out")
    if flag == "labels_file":
        path.write_bytes(BOM + b"n01\tone\nn02\ttwo\n")
        builder.build(str(raw), out, "train", labels_file=str(path), progress=False)
        assert open(os.path.join(out, "labels.txt"), "rb").read() == b"n01\tone\nn02\ttwo\n"
        expected = {f"{s}_{i}.JPEG": int(s[1:]) for s in ("n01", "n02") for i in range(2)}
        split = "train"
    else:
        path.write_bytes(BOM + b"n02\nn01\nn02\n")
        builder.build(
            str(flat), out, "validation", validation_labels_file=str(path), progress=False
        )
        expected = {VAL.format(1): 2, VAL.format(2): 1, VAL.format(3): 2}
        split = "validation"
    examples = imaging_testutil.read_examples(out, split)
    assert {e["filename"]: e["label"] for e in examples} == expected


def test_trainer_binary_reports_a_latin1_labels_txt_in_one_line(tmp_path_factory, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(train_testutil.tiny_data_dir(tmp_path_factory), data_dir)
    names = [f"{s}\t{n}" for s, n in zip(builtin.SYNSETS, builtin.CLASS_NAMES)]
    names[3] += " \u00e0 la cr\u00e8me"
    (data_dir / "labels.txt").write_bytes("\n".join(names).encode("latin-1"))
    recipe = dict(train_testutil.TINY_RECIPE, data_dir=data_dir, model_dir=tmp_path / "run")
    code, _, err = train_testutil.run("delving.train", train_testutil.as_flags(**recipe))
    assert code == 1
    assert train_testutil.error_lines(err) == [
        f"delving.train: error: labels file {data_dir / 'labels.txt'} line 4 is not UTF-8 "
        "text (byte 0xe0): save it as UTF-8"
    ]
