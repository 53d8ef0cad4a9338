"""Presets, config files and their validation, learning-rate schedules.

The binary's bad flags are in tests/test_common_cli.py.
"""

import dataclasses
import json
import re

import pytest

from delving.training import config
from delving.training.schedules import LearningRateSchedule


def test_presets_fill_only_what_is_not_given():
    builtin = config.resolve_config()
    assert builtin.preset == "builtin" and builtin.model == "small_14"
    assert builtin.num_classes == 10 and builtin.image_size == 64
    paper = config.resolve_config(data_dir="/data/imagenet")
    assert paper.preset == "imagenet"
    assert (
        paper.model,
        paper.batch_size,
        paper.learning_rate,
        paper.momentum,
        paper.weight_decay,
        paper.dropout,
        paper.scale_range,
        paper.image_size,
        paper.init,
        paper.activation,
        paper.epochs,
        paper.lr_schedule,
    ) == (
        "model_a",
        128,
        1e-2,
        0.9,
        5e-4,
        0.5,
        (256, 512),
        224,
        "he_fan_out",
        "prelu",
        80,
        "plateau",
    )
    mine = config.resolve_config(data_dir="/d", batch_size=256, model="model_b")
    assert (mine.batch_size, mine.model, mine.epochs) == (256, "model_b", 80)
    assert mine.model_dir == "runs/imagenet_model_b_prelu"


def test_config_json_round_trip(tmp_path):
    cfg = config.resolve_config(
        scale_range=["80", "100"], lr_schedule="step", lr_decay_epochs=[2, 4]
    )
    path = str(tmp_path / "config.json")
    config.save(cfg, path)
    loaded = config.load(path)
    # The plateau settings the step schedule ignores are not saved.
    unused = dict(lr_plateau_patience=cfg.lr_plateau_patience)
    assert dataclasses.replace(loaded, **unused) == cfg
    assert loaded.scale_range == (80, 100)


def test_config_json_lists_only_what_the_schedule_uses():
    plateau = json.loads(config.to_json(config.resolve_config(lr_schedule="plateau")))
    assert "lr_decay_epochs" not in plateau and plateau["lr_plateau_patience"] > 0
    step = json.loads(config.to_json(config.resolve_config(lr_schedule="step")))
    assert step["lr_decay_epochs"] and "lr_plateau_patience" not in step


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("batch_size", 0, "must be positive"),
        ("dropout", 1.0, "[0, 1)"),
        ("eval_resize", 10, ">= image_size"),
        ("lr_schedule", "cosine", "plateau"),
    ],
)
def test_config_validation_names_the_field(field, value, words):
    with pytest.raises(ValueError, match=rf"^--{field}=.*{re.escape(words)}"):
        config.resolve_config(**{field: value})


def test_architecture_diff():
    a = config.resolve_config()
    b = dataclasses.replace(a, activation="relu", learning_rate=0.5)
    assert config.architecture_diff(a, b) == {"activation": ("prelu", "relu")}


def test_plateau_schedule_divides_by_ten_twice():
    s = LearningRateSchedule(0.01, kind="plateau", patience=2, min_delta=0.0)
    errors = [0.9, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    rates = []
    for epoch, err in enumerate(errors):
        s.end_epoch(epoch, err)
        rates.append(round(s.rate(), 8))
    assert rates == [0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.0001, 0.0001, 0.0001, 0.0001, 0.0001]


def test_step_schedule():
    s = LearningRateSchedule(0.1, kind="step", decay_epochs=(2, 4))
    rates = []
    for epoch in range(6):
        rates.append(round(s.rate(), 8))
        s.end_epoch(epoch, None)
    assert rates == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
