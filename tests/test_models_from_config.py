"""Trainer, evaluator and export get the same network, window and input scaling."""

import dataclasses

import numpy as np
import pytest

from delving.models import from_config, networks
from delving.training import config, inputs
from export import export_lib
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


def test_input_std_decided_once_for_training_and_export():
    plain = config.resolve_config(data_dir="/d", input_std=False)
    scaled = dataclasses.replace(plain, input_std=True)
    assert from_config.input_std(plain) is None
    assert from_config.input_std(scaled) == preprocessing.STD_RGB
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


def test_export_uses_the_configs_window_and_scaling(tmp_path):
    import export_testutil as fx

    model_dir = fx.write_model_dir(
        tmp_path / "run", model="small_14", input_std=True, image_size=64, eval_resize=72
    )
    servable = export_lib.load_servable(model_dir)
    inference = servable.dense_inference(scales=(72,))
    assert inference.window == 6  # ceil(64 / 12), not the 19 of 224 crops
    assert inference.std == preprocessing.STD_RGB
