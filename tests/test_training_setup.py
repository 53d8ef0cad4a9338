"""delving/training/setup.py: what a run takes from its data before the first
step: the class count (from the labels.txt our converter writes) and the
name its header gives the data, on real records converted from a folder of
JPEG files."""

import imaging_testutil as images
import pytest

from common import errors
from delving.training import config, loop, run_dir
from pipelines import tfrecord_builder
from tests import train_testutil as util

CLASSES = {"n01": 8, "n02": 8, "n03": 8}  # three classes, as a real folder names them


@pytest.fixture(scope="module")
def three_class_records(tmp_path_factory):
    """Records of a three-class image folder, written by the converter with its labels.txt."""
    root = tmp_path_factory.mktemp("folder")
    out = str(root / "records")
    for split in ("train", "validation"):
        images.write_image_folder(str(root / split), CLASSES, size=(40, 56), seed=len(split))
        tfrecord_builder.build(str(root / split), out, split, num_shards=1, progress=False)
    return out


def _recipe(data_dir, model_dir, **changes):
    """The tiny recipe under the preset `--data_dir` alone gets (imagenet),
    at a rate its fan-out init does not diverge at: only the set-up is tested."""
    recipe = {k: v for k, v in util.TINY_RECIPE.items() if k != "preset"}
    recipe["learning_rate"] = 1e-4
    return config.resolve_config(
        data_dir=data_dir, model_dir=str(model_dir), **dict(recipe, **changes)
    )


def test_class_count_of_a_records_folder_comes_from_its_labels_file(three_class_records, tmp_path):
    cfg = _recipe(three_class_records, tmp_path / "run")
    assert cfg.preset == "imagenet" and cfg.num_classes is None
    result = loop.train(cfg, verbose=0)
    assert result.config.num_classes == 3
    assert result.model.output_shape[-1] == 3


def test_config_json_holds_the_class_count_from_the_data(three_class_records, tmp_path):
    loop.train(_recipe(three_class_records, tmp_path / "run"), verbose=0)
    saved = run_dir.load_config(str(tmp_path / "run" / "config.json"))
    assert saved.num_classes == 3


def test_run_with_the_class_count_from_the_data_resumes(three_class_records, tmp_path):
    loop.train(_recipe(three_class_records, tmp_path / "run"), verbose=0)
    resumed = loop.train(_recipe(three_class_records, tmp_path / "run", epochs=2), verbose=0)
    assert resumed.epoch == 2


def test_explicit_other_class_count_is_refused_in_one_line(three_class_records, tmp_path):
    cfg = _recipe(three_class_records, tmp_path / "run", num_classes=5)
    with pytest.raises(errors.DataError) as refused:
        loop.train(cfg, verbose=0)
    assert "lists 3 classes but num_classes is 5" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "run").exists()


def test_header_names_the_records_dir_under_the_builtin_preset(
    three_class_records, tmp_path, capsys
):
    cfg = _recipe(three_class_records, tmp_path / "run", preset="builtin")
    loop.train(cfg, verbose=1)
    header = next(line for line in capsys.readouterr().out.splitlines() if "Training " in line)
    assert f" on {three_class_records} with " in header
    assert "built-in" not in header
