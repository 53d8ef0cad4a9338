"""delving/training/presets.py: which preset a run gets, why its header says
so, and what the presets' recipes start from.

The choice happens in `config.resolve_config`, so the tests go through it.
"""

import dataclasses
import subprocess
import sys

import pytest

from delving.training import config, presets
from tests import train_testutil


def _labels_dir(tmp_path, num_classes):
    """A records folder's labels.txt of `num_classes` classes (no shards:
    the preset is chosen from the labels file alone)."""
    (tmp_path / "labels.txt").write_text("".join(f"c{i}\tclass {i}\n" for i in range(num_classes)))
    return str(tmp_path)


def test_ten_classes_resolve_to_the_photos_preset(tmp_path):
    assert config.resolve_config(data_dir=_labels_dir(tmp_path, 10)).preset == "photos"


def test_a_thousand_classes_resolve_to_the_imagenet_preset(tmp_path):
    cfg = config.resolve_config(data_dir=_labels_dir(tmp_path, 1000), model="model_a")
    assert (cfg.preset, cfg.image_size, cfg.epochs) == ("imagenet", 224, 80)


@pytest.mark.parametrize(
    "num_classes, preset",
    [(presets.PHOTOS_MAX_CLASSES, "photos"), (presets.PHOTOS_MAX_CLASSES + 1, "imagenet")],
)
def test_photos_preset_goes_up_to_its_class_count(tmp_path, num_classes, preset):
    assert config.resolve_config(data_dir=_labels_dir(tmp_path, num_classes)).preset == preset


def test_an_explicit_preset_wins_over_the_class_count(tmp_path):
    cfg = config.resolve_config(preset="imagenet", data_dir=_labels_dir(tmp_path, 10))
    assert cfg.preset == "imagenet"


def test_labels_file_flag_gives_the_class_count_over_the_data_dirs(tmp_path):
    (tmp_path / "big").mkdir()
    big = tmp_path / "big" / "synset_words.txt"
    big.write_text("".join(f"n{i:08d} class {i}\n" for i in range(1000)))
    cfg = config.resolve_config(data_dir=_labels_dir(tmp_path, 10), labels_file=str(big))
    assert cfg.preset == "imagenet"


def test_num_classes_flag_gives_the_class_count(tmp_path):
    assert config.resolve_config(data_dir=str(tmp_path), num_classes=10).preset == "photos"


def test_records_without_a_labels_file_resolve_to_the_imagenet_preset(tmp_path):
    assert config.resolve_config(data_dir=str(tmp_path)).preset == "imagenet"


@pytest.mark.parametrize(
    "name, preset",
    [
        ("imagenette/160px-v2", "photos"),
        ("imagenette/320px-v2", "photos"),
        ("imagenette/full-size-v2", "photos"),
        ("imagenet2012", "imagenet"),
    ],
)
def test_tfds_class_label_gives_the_class_count(tmp_path, name, preset):
    # Known from the builder's info: nothing is prepared or downloaded.
    assert config.resolve_config(tfds_name=name, tfds_data_dir=str(tmp_path)).preset == preset
    assert not list(tmp_path.iterdir())


def test_choosing_the_preset_from_a_labels_file_loads_no_tensorflow(tmp_path):
    code = (
        "import sys; from delving.training import config; "
        f"assert config.resolve_config(data_dir={_labels_dir(tmp_path, 10)!r}).preset == 'photos'; "
        "print('tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=train_testutil.ROOT,
        env=train_testutil.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
    )
    assert result.stdout.strip() == "False", result.stderr[-2000:]


def _reason(**values):
    return presets.preset_reason(config.resolve_config(**values))


def test_preset_reason_of_photos_names_the_papers_recipe(tmp_path):
    reason = _reason(data_dir=_labels_dir(tmp_path, 10), num_classes=10)
    assert reason == (
        "Preset photos (a CPU recipe for small photo sets), the default for data of at most "
        f"{presets.PHOTOS_MAX_CLASSES} classes: {tmp_path} (10 classes); --preset=imagenet "
        "trains the paper's recipe instead"
    )


def test_preset_reason_of_imagenet_gives_the_class_count(tmp_path):
    reason = _reason(data_dir=str(tmp_path), num_classes=1000)
    assert reason == (
        "Preset imagenet (the paper's recipe), the default for data of more than "
        f"{presets.PHOTOS_MAX_CLASSES} classes: {tmp_path} (1000 classes)"
    )


def test_preset_reason_of_an_explicit_preset_names_the_default(tmp_path):
    reason = _reason(preset="imagenet", data_dir=str(tmp_path), num_classes=10)
    assert reason == (
        f"Preset imagenet (the paper's recipe), given by --preset; the default for {tmp_path} "
        "(10 classes) is photos"
    )


def test_preset_reason_of_the_builtin_set():
    assert _reason() == "Preset builtin, the default for the built-in dataset"


def test_imagenet_preset_starts_model_a_near_chance_on_jpegs(tmp_path):
    # On 0-255 inputs the paper's Eq. 14 init gives model A logits of std ~100
    # and a loss of hundreds of nats, from which lr 0.01 diverges at once
    # (docs/SCALING.md). A quarter of model A's widths with fc and classes
    # scaled alike keeps every fan-in/fan-out ratio, hence the logits' scale.
    import math

    import numpy as np
    import tensorflow as tf

    from delving.models import from_config
    from delving.training import inputs
    from pipelines import imagenet
    from tests import imaging_testutil

    data_dir = str(tmp_path)
    imaging_testutil.write_shards(
        data_dir, "validation", num_shards=1, per_shard=8, num_classes=3, height=256, width=320
    )
    cfg = config.resolve_config(
        "imagenet", data_dir=data_dir, num_classes=250, width_multiplier=0.25, fc_units=1024
    )
    read = dataclasses.replace(inputs.input_config(cfg), batch_size=8)
    images, labels = next(
        iter(imagenet.make_dataset(data_dir, "validation", read, is_training=False, num_classes=3))
    )
    logits = from_config.build(cfg, seed=0)(images, training=False)
    loss = float(
        np.mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    )
    assert loss < 3 * math.log(cfg.num_classes)
