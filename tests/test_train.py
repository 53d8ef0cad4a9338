"""delving/train.py, the binary: its flags, their --helpshort and one-line errors.

Each case runs `python -m delving.train` in a fresh interpreter; none gets as
far as training (the config itself is tested in tests/test_training_config.py,
the other bad inputs in tests/test_bad_inputs.py).
"""

import dataclasses
import re

import pytest

from delving.training import config, presets
from tests import train_testutil


@pytest.fixture(scope="module")
def helpshort():
    """--helpshort as {flag name: its help, on one line}."""
    _, out, err = train_testutil.run(
        "delving.train", ["--helpshort"], timeout=train_testutil.HANG_GUARD_S
    )
    assert "delving/train.py:" in out, err[-2000:]  # absl exits 1 after help
    helps = {}
    for line in out.splitlines():
        flag = re.match(r"  --(?:\[no\])?(\w+): ?(.*)", line)
        if flag:
            name, text = flag.groups()
            helps[name] = text
        elif line.startswith("    ") and helps:
            helps[name] += " " + line.strip()
    # Drop absl's type notes, e.g. "(an integer)".
    return {
        name: re.sub(r" \((an?|a comma separated) [a-z ]+\)$", "", h) for name, h in helps.items()
    }


def _error(args):
    code, _, err = train_testutil.run("delving.train", args, timeout=train_testutil.HANG_GUARD_S)
    return code, train_testutil.error_lines(err)


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(config.TrainConfig)])
def test_every_config_field_has_a_flag_with_help(helpshort, field):
    assert helpshort.get(field, "").strip(), f"--{field} is missing from --helpshort"


def test_helpshort_lists_force(helpshort):
    assert "take --model_dir over" in helpshort["force"]


def test_helpshort_shows_each_presets_default(helpshort):
    assert helpshort["image_size"].endswith("[preset imagenet: 224; builtin: 64; photos: 128]")


def test_helpshort_shows_a_list_default_as_written_on_the_command_line(helpshort):
    assert helpshort["scale_range"].startswith(
        "min,max shorter side before cropping (scale jitter). "
        "[preset imagenet: 256,512; builtin: 64,80; photos: 128,160]"
    )


def test_helpshort_shows_a_default_taken_from_the_data(helpshort):
    assert helpshort["num_classes"].endswith("[default from the data]")


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(config.TrainConfig)}
# Fields the built-in preset changes and the imagenet preset does not set alike.
_DIFFERING = sorted(
    name
    for name, value in presets.PRESETS["builtin"].items()
    if presets.PRESETS["imagenet"].get(name, _DEFAULTS[name]) != value
)


@pytest.mark.parametrize("field", _DIFFERING)
def test_helpshort_shows_the_preset_default_of_every_field_a_preset_changes(helpshort, field):
    assert "[preset imagenet: " in helpshort[field]


def test_helpshort_shows_one_default_where_every_preset_sets_the_same(helpshort):
    assert all(changes["input_std"] for changes in presets.PRESETS.values())
    assert helpshort["input_std"].endswith("[default True]")


def test_helpshort_shows_the_default_of_a_field_no_preset_changes(helpshort):
    assert helpshort["keep_checkpoints"] == "checkpoints kept. [default 3]"


def test_helpshort_shows_the_choices(helpshort):
    assert helpshort["activation"].startswith("<relu|lrelu|prelu|prelu_shared>: ")


def test_helpshort_says_where_the_preset_comes_from(helpshort):
    assert "imagenet when --data_dir or --tfds_name is given, else builtin" in helpshort["preset"]


def test_bad_value_fails_in_one_line_naming_the_flag():
    code, lines = _error(["--momentum=1"])
    assert (code, lines) == (1, ["delving.train: error: --momentum=1.0: must be in [0, 1)"])


def test_bad_list_syntax_fails_in_one_line_naming_the_flag():
    code, lines = _error(["--lr_decay_epochs=ten"])
    assert code == 1 and len(lines) == 1
    assert "--lr_decay_epochs: expected integers >= 0, e.g. --lr_decay_epochs=40,60" in lines[0]


def test_positional_arguments_fail_in_one_line():
    code, lines = _error(["model_a"])
    assert (code, lines) == (1, ["delving.train: error: unexpected arguments: model_a"])


# Every config flag in the syntax the binary has always taken (bools as
# --name/--noname, lists comma-separated, floats in any notation).
OLD_COMMAND_LINE = [
    "--preset=builtin",
    "--label_offset=0",
    "--model=small_30",
    "--activation=relu",
    "--init=xavier",
    "--num_classes=10",
    "--dropout=0.1",
    "--width_multiplier=0.5",
    "--fc_units=128",
    "--image_size=32",
    "--scale_range=32,40",
    "--eval_resize=36",
    "--lighting_std=0",
    "--noinput_std",
    "--cache_data",
    "--noin_memory",
    "--skip_corrupt",
    "--batch_size=16",
    "--epochs=2",
    "--steps_per_epoch=3",
    "--eval_steps=1",
    "--learning_rate=1e-3",
    "--lr_schedule=step",
    "--lr_decay_epochs=",
    "--lr_plateau_patience=1",
    "--warmup_epochs=0.5",
    "--lr_plateau_min_delta=0",
    "--lr_decay_factor=0.5",
    "--lr_max_decays=1",
    "--momentum=0.8",
    "--weight_decay=0",
    "--strategy=one_device",
    "--tpu=grpc://10.0.0.2:8470",
    "--mixed_precision=bfloat16",
    "--nojit_compile",
    "--seed=3",
    "--checkpoint_every_steps=5",
    "--keep_checkpoints=1",
    "--log_every_steps=1",
    "--force",
]


def test_old_command_line_reaches_the_path_checks(tmp_path):
    """Every value parses and validates: the one error is the last check's."""
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    code, lines = _error([*OLD_COMMAND_LINE, f"--model_dir={a_file}"])
    assert (code, lines) == (
        1,
        [f"delving.train: error: --model_dir={a_file} is a file, not a directory"],
    )
