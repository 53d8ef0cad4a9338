"""Data and runs that do not match the command are refused in one line before
any work (delving.training.setup.prepare, run_dir.check_compatible)."""

import pytest
import tensorflow_datasets as tfds

from common import errors
from delving.training import config, loop, run_dir, setup
from tests import train_testutil


def test_tfds_class_count_given_explicitly_is_checked_before_any_work(tmp_path):
    model_dir = tmp_path / "run"
    recipe = {k: v for k, v in train_testutil.TINY_RECIPE.items() if k != "preset"}
    cfg = config.resolve_config(
        preset="imagenet",
        tfds_name="imagenette",
        tfds_data_dir=str(tmp_path / "tfds"),
        model_dir=str(model_dir),
        num_classes=1000,
        **recipe,
    )
    assert cfg.num_classes == 1000  # given explicitly: imagenette has 10
    refused = pytest.raises(errors.DataError, match=r"^--num_classes=1000 but imagenette has 10")
    with tfds.testing.mock_data(num_examples=8), refused:
        loop.train(cfg, verbose=0)
    assert not model_dir.exists()


def test_resuming_with_another_mixed_precision_is_refused(tmp_path, tmp_path_factory):
    model_dir = tmp_path / "run"
    recipe = dict(
        train_testutil.TINY_RECIPE,
        data_dir=train_testutil.tiny_data_dir(tmp_path_factory),
        model_dir=str(model_dir),
    )
    loop.train(config.resolve_config(**recipe), verbose=0)
    before = sorted(p.name for p in model_dir.rglob("*"))
    other = config.resolve_config(**dict(recipe, epochs=2, mixed_precision="float16"))
    with pytest.raises(run_dir.ConfigMismatch, match=r"--mixed_precision=none \(asked float16\)"):
        loop.train(other, verbose=0)
    assert sorted(p.name for p in model_dir.rglob("*")) == before


def test_tfds_class_count_comes_from_the_label_feature(tmp_path):
    recipe = {k: v for k, v in train_testutil.TINY_RECIPE.items() if k != "preset"}
    cfg = config.resolve_config(
        tfds_name="imagenette",
        tfds_data_dir=str(tmp_path / "tfds"),
        model_dir=str(tmp_path / "run"),
        **recipe,
    )
    with tfds.testing.mock_data(num_examples=8):
        prepared = setup.prepare(cfg)
    assert prepared.cfg.num_classes == 10
