"""delving/training/config.py: resolving a config, config files and their validation.

The binary's flags and help are in tests/test_train.py, its bad inputs in
tests/test_bad_inputs.py.
"""

import dataclasses
import json
import re

import pytest

from delving.training import config, presets, run_dir


def test_no_dataset_resolves_to_the_builtin_preset():
    builtin = config.resolve_config()
    assert builtin.preset == "builtin" and builtin.model == "small_14"
    assert builtin.num_classes == 10 and builtin.image_size == 64


def test_a_named_dataset_leaves_the_class_count_to_the_data():
    assert config.resolve_config(data_dir="/data/imagenette").num_classes is None


def test_builtin_preset_on_records_leaves_the_class_count_to_the_data():
    assert config.resolve_config(preset="builtin", data_dir="/d").num_classes is None


def test_dataset_name_of_the_builtin_preset_on_records_is_their_directory():
    assert config.resolve_config(preset="builtin", data_dir="/d").dataset_name == "/d"


def test_dataset_name_without_a_data_flag_is_the_builtin_set():
    assert config.resolve_config().dataset_name == "the built-in dataset (generated)"


def test_dataset_name_of_the_generated_set_is_the_builtin_set():
    from pipelines import builtin

    cfg = config.resolve_config(data_dir=builtin.default_dir())
    assert cfg.dataset_name == f"the built-in dataset ({builtin.default_dir()})"


def test_dataset_name_of_tfds_is_its_name():
    assert config.resolve_config(tfds_name="imagenette").dataset_name == "imagenette"


def test_a_dataset_resolves_to_the_papers_recipe():
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


def test_given_values_win_over_the_preset():
    mine = config.resolve_config(data_dir="/d", batch_size=256, model="model_b")
    assert (mine.batch_size, mine.model, mine.epochs) == (256, "model_b", 80)


def test_default_model_dir_names_the_run():
    mine = config.resolve_config(data_dir="/d", model="model_b")
    assert mine.model_dir == "runs/imagenet_model_b_prelu"


def test_config_json_round_trip(tmp_path):
    cfg = config.resolve_config(
        scale_range=["80", "100"], lr_schedule="step", lr_decay_epochs=[2, 4]
    )
    path = str(tmp_path / "config.json")
    run_dir.save_config(cfg, path)
    loaded = run_dir.load_config(path)
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


# One message per kind of check, each exactly as the binary prints it after
# "delving.train: error: ".
_REFUSED = [
    (dict(batch_size=0), "--batch_size=0: must be positive"),
    (dict(steps_per_epoch=0), "--steps_per_epoch=0: must be positive"),
    (dict(seed=-1), "--seed=-1: must be >= 0"),
    (dict(momentum=1.0), "--momentum=1.0: must be in [0, 1)"),
    (dict(lr_decay_factor=0.0), "--lr_decay_factor=0.0: must be in (0, 1]"),
    (dict(lr_decay_epochs=[-1]), "--lr_decay_epochs=-1: must be epochs >= 0"),
    (dict(mixed_precision="fp8"), "--mixed_precision=fp8: must be one of none, float16, bfloat16"),
    (dict(preset="paper"), "--preset=paper: must be one of imagenet, builtin, photos"),
    (dict(scale_range=["a"]), "--scale_range=a: expected integers a,b,..."),
    (
        dict(image_size=100),
        "--scale_range=64,80: must be two sizes min<=max, both >= image_size (100)",
    ),
    (dict(eval_resize=10), "--eval_resize=10: must be >= image_size (64)"),
    (
        dict(data_dir="/d", tfds_name="t"),
        "--tfds_name=t: give either --data_dir or --tfds_name, not both",
    ),
    (
        dict(data_service="localhost:5050"),
        "--data_service=localhost:5050: expected grpc://host:port (the dispatcher)",
    ),
    (
        dict(data_service="grpc://h:5050", in_memory=True),
        "--data_service=grpc://h:5050: not with --in_memory: the service's workers read the "
        "records themselves (drop --in_memory)",
    ),
]


@pytest.mark.parametrize("values,line", _REFUSED)
def test_config_validation_error_is_one_exact_line(values, line):
    with pytest.raises(ValueError) as refused:
        config.resolve_config(**values)
    assert str(refused.value) == line


def test_optional_fields_accept_none():
    cfg = config.resolve_config(steps_per_epoch=None, eval_steps=None, jit_compile=None)
    assert (cfg.steps_per_epoch, cfg.eval_steps, cfg.jit_compile) == (None, None, None)


def test_config_json_of_an_existing_run_loads_unchanged():
    assert config.to_json(config.from_json(_EXISTING_RUN_CONFIG)) == _EXISTING_RUN_CONFIG


def test_config_json_fields_unknown_to_this_version_are_ignored():
    text = json.dumps(dict(json.loads(_EXISTING_RUN_CONFIG), retired_setting=1))
    assert config.from_json(text) == config.from_json(_EXISTING_RUN_CONFIG)


def test_architecture_diff():
    a = config.resolve_config()
    b = dataclasses.replace(a, activation="relu", learning_rate=0.5)
    assert config.architecture_diff(a, b) == {"activation": ("prelu", "relu")}


# config.json of a run of the built-in preset, as written before the fields
# carried their own flags and checks.
_EXISTING_RUN_CONFIG = """\
{
  "activation": "prelu",
  "batch_size": 64,
  "cache_data": true,
  "checkpoint_every_steps": 50,
  "data_dir": null,
  "dropout": 0.0,
  "epochs": 40,
  "eval_resize": 72,
  "eval_steps": null,
  "fc_units": 256,
  "image_size": 64,
  "in_memory": true,
  "init": "he_fan_in",
  "input_std": true,
  "jit_compile": null,
  "keep_checkpoints": 3,
  "label_offset": 1,
  "labels_file": null,
  "learning_rate": 0.02,
  "lighting_std": 0.1,
  "log_every_steps": 10,
  "lr_decay_epochs": [
    30,
    36
  ],
  "lr_decay_factor": 0.1,
  "lr_max_decays": 2,
  "lr_schedule": "step",
  "mixed_precision": "none",
  "model": "small_14",
  "model_dir": "runs/builtin_small_14_prelu",
  "momentum": 0.9,
  "num_classes": 10,
  "preset": "builtin",
  "scale_range": [
    64,
    80
  ],
  "seed": 0,
  "skip_corrupt": false,
  "steps_per_epoch": null,
  "strategy": "auto",
  "tfds_data_dir": null,
  "tfds_manual_dir": null,
  "tfds_name": null,
  "tpu": null,
  "warmup_epochs": 2.0,
  "weight_decay": 0.0005,
  "width_multiplier": 0.25
}
"""


def test_per_model_preset_values_apply_unless_given(monkeypatch):
    monkeypatch.setitem(
        presets.MODEL_OVERRIDES, "builtin", {"small_30": dict(learning_rate=0.123, epochs=7)}
    )
    deep = config.resolve_config(model="small_30")
    assert (deep.learning_rate, deep.epochs) == (0.123, 7)
    assert config.resolve_config(model="small_30", epochs=3).epochs == 3  # given wins
    assert config.resolve_config().learning_rate == presets.PRESETS["builtin"]["learning_rate"]
    # Another preset's runs are untouched.
    assert config.resolve_config(data_dir="/d", model="small_30").learning_rate == 1e-2


def test_warmup_is_validated():
    with pytest.raises(ValueError, match="--warmup_epochs=-1"):
        config.resolve_config(warmup_epochs=-1.0)


def test_data_service_drops_the_presets_in_trainer_copies():
    """The builtin preset holds its split in memory; the service's workers stream it."""
    cfg = config.resolve_config(data_service="grpc://localhost:5050")
    assert (cfg.preset, cfg.in_memory, cfg.cache_data) == ("builtin", False, False)


def test_data_service_given_cache_data_is_refused():
    with pytest.raises(ValueError, match="^--data_service=grpc://h:1: not with --cache_data"):
        config.resolve_config(data_service="grpc://h:1", cache_data=True)
