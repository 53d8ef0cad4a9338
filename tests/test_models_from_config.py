"""delving.models.from_config: trainer, evaluator and export get the same network,
window and input scaling from a run's config (export's use of it:
test_export_export_lib.py)."""

import dataclasses

import numpy as np
import pytest

from delving.models import from_config, networks
from delving.training import config, inputs
from pipelines import preprocessing

TINY = dict(width_multiplier=0.125, fc_units=16, num_classes=5, dropout=0.0)


@pytest.mark.parametrize(
    "model,image_size,window", [("model_a", 224, 14), ("model_a", 112, 7), ("small_14", 64, 6)]
)
def test_dense_window_follows_the_training_crop(model, image_size, window):
    cfg = config.resolve_config(
        data_dir="/d", model=model, image_size=image_size, scale_range=(image_size,) * 2
    )
    assert from_config.dense_window(cfg) == window


def _plain_and_scaled():
    plain = config.resolve_config(data_dir="/d", input_std=False)
    return plain, dataclasses.replace(plain, input_std=True)


def test_no_input_std_without_the_flag():
    plain, _ = _plain_and_scaled()
    assert from_config.input_std(plain) is None


def test_input_std_is_the_rgb_std_with_the_flag():
    _, scaled = _plain_and_scaled()
    assert from_config.input_std(scaled) == preprocessing.STD_RGB


def test_training_input_takes_the_same_input_std():
    _, scaled = _plain_and_scaled()
    assert inputs.source_from_config(scaled).input.std == preprocessing.STD_RGB


def test_build_uses_every_architecture_field():
    cfg = config.resolve_config(
        data_dir="/d", model="small_14", activation="prelu_shared", image_size=64, **TINY
    )
    built = from_config.build(cfg, seed=3)
    direct = networks.build_model(
        "small_14", activation="prelu_shared", init=cfg.init, seed=3, **TINY
    )
    assert built.name == "small_14" and built.output_shape == (None, 5)
    for a, b in zip(built.get_weights(), direct.get_weights()):
        np.testing.assert_array_equal(a, b)
