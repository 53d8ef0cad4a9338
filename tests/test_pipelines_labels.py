"""The class lists: labels files in their formats, names read from records."""

import imaging_testutil as util
import pytest

from common import errors
from pipelines import labels

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
def test_labels_file_lines_give_synset_and_name(tmp_path, text, expected):
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
    util.write_shards(str(tmp_path), "validation", num_shards=1, per_shard=3, num_classes=3)
    classes = labels.load_class_list(data_dir=str(tmp_path), num_classes=4)
    assert classes[:3] == [labels.ClassInfo(i, f"s{i:04d}", f"class {i}") for i in range(3)]


def test_classes_missing_from_the_records_get_generic_names(tmp_path):
    util.write_shards(str(tmp_path), "validation", num_shards=1, per_shard=3, num_classes=3)
    classes = labels.load_class_list(data_dir=str(tmp_path), num_classes=4)
    assert classes[3] == labels.ClassInfo(3, "class_0003", "class_0003")


def test_no_records_give_generic_names(tmp_path):
    generic = labels.load_class_list(data_dir=str(tmp_path / "x"), num_classes=2)
    assert [c.name for c in generic] == ["class_0000", "class_0001"]
