"""delving.training.loop, run for real on the tiny built-in data: every
network trains; several steps per tf.function call (up to the next log or
checkpoint boundary) give the checkpoints, step counts, metrics and NaN
stop of a step-by-step loop; what a run prints; and interrupted runs, by
SIGKILL or a NaN loss, resume or stop with a good checkpoint (the binary in
a subprocess where a kill must give no chance to clean up).

`train` reads in the order a run happens: from its start to the first step,
the stages (module-level functions) of each training module are entered from
another module at most a few times more than once. Methods of the objects
the run carries along (the config, the stopper, the data source, the run
directory, the clock) are not stages."""

import contextlib
import csv
import io
import math
import os
import re
import shutil
import signal
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from delving.models import networks
from delving.training import config, loop, presets
from tests import imaging_testutil, tfds_testutil, train_testutil


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return train_testutil.tiny_data_dir(tmp_path_factory)


def _iterations(checkpoint_path):
    """The optimizer's step counter stored in a checkpoint."""
    names = [
        n
        for n, _ in tf.train.list_variables(checkpoint_path)
        if n.startswith("optimizer/") and "iterations" in n
    ]
    assert names, tf.train.list_variables(checkpoint_path)
    return int(tf.train.load_variable(checkpoint_path, names[0]))


# --- Every network


@pytest.mark.parametrize("name", networks.MODEL_NAMES)
def test_every_model_trains_one_step(name, data_dir, tmp_path):
    cfg = config.resolve_config(
        **dict(
            train_testutil.TINY_RECIPE,
            model=name,
            data_dir=data_dir,
            model_dir=str(tmp_path),
            width_multiplier=1 / 32,
            fc_units=8,
            image_size=64,
            scale_range=(64, 72),
            eval_resize=64,
            batch_size=2,
            steps_per_epoch=1,
            eval_steps=1,
        )
    )
    result = loop.train(cfg, verbose=0)
    assert result.step == 1 and result.epoch == 1
    row = result.history[-1]
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])
    assert (tmp_path / "model.keras").exists()
    # The Table 1 style coefficients cover the conv layers and fc1/fc2.
    assert "fc1_prelu" in result.prelu and "fc2_prelu" in result.prelu
    assert all(math.isfinite(v) for v in result.prelu.values())


# --- Several steps per tf.function call


def test_boundaries_split_the_epoch_into_calls():
    # From step 0, 7 steps left, log every 5, checkpoint every 3: 3, 2, 1, 1.
    calls, step, left = [], 0, 7
    while left:
        n = loop._steps_to_boundary(step, left, 5, 3)
        calls.append(n)
        step, left = step + n, left - n
    assert calls == [3, 2, 1, 1]


@pytest.fixture(scope="module")
def chunked(data_dir, tmp_path_factory):
    """(result, model_dir) of 7 steps, logged every 5, checkpointed every 3."""
    model_dir = tmp_path_factory.mktemp("chunked") / "run"
    recipe = dict(
        train_testutil.TINY_RECIPE,
        data_dir=data_dir,
        model_dir=str(model_dir),
        steps_per_epoch=7,
        log_every_steps=5,
        checkpoint_every_steps=3,
        keep_checkpoints=10,
    )
    return loop.train(config.resolve_config(**recipe), verbose=0), model_dir


def _checkpoint_paths(model_dir):
    return tf.train.get_checkpoint_state(str(model_dir / "checkpoints")).all_model_checkpoint_paths


def test_several_steps_per_call_run_each_step_once(chunked):
    result, model_dir = chunked
    assert result.step == 7 and result.epoch == 1
    for path in _checkpoint_paths(model_dir):
        assert _iterations(path) == int(path.rsplit("-", 1)[1])


def test_checkpoints_fall_on_their_boundaries_inside_calls(chunked):
    _, model_dir = chunked
    steps = [int(p.rsplit("-", 1)[1]) for p in _checkpoint_paths(model_dir)]
    assert steps == [3, 6, 7]  # every 3 steps mid-epoch, then the epoch's end


def test_metrics_are_logged_with_several_steps_per_call(chunked):
    result, _ = chunked
    row = result.history[-1]
    assert np.isfinite(row["train_loss"]) and 0 <= row["train_top1_error"] <= 1
    assert row["images_per_sec"] > 0


@pytest.fixture(scope="module")
def nan_in_a_call(data_dir, tmp_path_factory):
    """(the TrainingDiverged message, model_dir) of 6 steps in one call at lr 1e9."""
    model_dir = tmp_path_factory.mktemp("nan_in_a_call") / "run"
    recipe = dict(
        train_testutil.TINY_RECIPE,
        data_dir=data_dir,
        model_dir=str(model_dir),
        steps_per_epoch=6,
        log_every_steps=100,
        checkpoint_every_steps=100,
        learning_rate=1e9,
    )
    with pytest.raises(loop.TrainingDiverged) as error:
        loop.train(config.resolve_config(**recipe), verbose=0)
    return str(error.value), model_dir


def test_nan_inside_a_call_names_its_step(nan_in_a_call):
    message, _ = nan_in_a_call
    # One call of 6 steps; step 1's loss is finite (taken before any update).
    match = re.match(r"loss became (nan|inf) at step (\d+) \(epoch 1\)", message)
    assert match and 2 <= int(match.group(2)) <= 6, message


def test_nan_inside_a_call_saves_no_checkpoint(nan_in_a_call):
    message, model_dir = nan_in_a_call
    assert "No checkpoint was saved" in message
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")) is None


# --- What a run prints


@pytest.fixture(scope="module")
def printed(data_dir, tmp_path_factory):
    """(config, stdout of a run, stdout of the same command again)."""
    cfg = config.resolve_config(
        **dict(
            train_testutil.TINY_RECIPE,
            data_dir=data_dir,
            model_dir=str(tmp_path_factory.mktemp("printed") / "run"),
        )
    )
    outputs = []
    for _ in range(2):  # the second time: nothing left to do
        # Not a terminal, as for a run whose output goes to a file.
        with contextlib.redirect_stdout(io.StringIO()) as out:
            loop.train(cfg)
        outputs.append(out.getvalue())
    return cfg, *outputs


def test_off_a_terminal_each_epoch_prints_one_plain_line(printed):
    cfg, out, _ = printed
    # No escape codes or carriage returns, one progress line per epoch.
    assert "\x1b[" not in out and "\r" not in out, repr(out[-2000:])
    assert sum("img/s:" in line for line in out.splitlines()) == cfg.epochs


def test_a_finished_run_started_again_announces_no_new_epoch(printed):
    cfg, _, again = printed
    assert f"all {cfg.epochs} epochs already done" in again, again
    assert f"epoch {cfg.epochs + 1}" not in again.lower()


@pytest.fixture(scope="module")
def photo_records_header(tmp_path_factory):
    """(records dir, the first two lines a run on it prints): records of a
    three-class photo folder, trained with no --preset."""
    from pipelines import tfrecord_builder

    root = tmp_path_factory.mktemp("photos")
    for split in ("train", "validation"):
        imaging_testutil.write_image_folder(
            str(root / "raw" / split), {"tench": 8, "golf ball": 8, "église": 8}, seed=len(split)
        )
        tfrecord_builder.build(str(root / "raw"), str(root / "records"), split, progress=False)
    recipe = {k: v for k, v in train_testutil.TINY_RECIPE.items() if k != "preset"}
    cfg = config.resolve_config(
        **dict(recipe, data_dir=str(root / "records"), model_dir=str(root / "run"))
    )
    with contextlib.redirect_stdout(io.StringIO()) as out:
        loop.train(cfg)
    return str(root / "records"), out.getvalue().splitlines()[:2]


def test_header_names_the_records_directory(photo_records_header):
    records, (header, _) = photo_records_header
    assert f" on {records} with " in header and "built-in" not in header


def test_header_says_the_photos_preset_was_chosen_for_the_class_count(photo_records_header):
    records, (_, preset) = photo_records_header
    assert preset.startswith(
        "Preset photos (a CPU recipe for small photo sets), the default for data of at most "
        f"{presets.PHOTOS_MAX_CLASSES} classes: {records} (3 classes)"
    )


def test_header_says_how_to_get_the_papers_recipe(photo_records_header):
    _, (_, preset) = photo_records_header
    assert preset.endswith("; --preset=imagenet trains the paper's recipe instead")


@pytest.fixture(scope="module")
def imagenette_from_tfds(tmp_path_factory):
    """(result, the first line it prints, network attempts): one short epoch
    on tfds' Imagenette (160px-v2) prepared from a tiny local archive, with
    only the data flags a user gives."""
    root = tmp_path_factory.mktemp("tfds")
    recipe = {k: v for k, v in train_testutil.TINY_RECIPE.items() if k != "preset"}
    with tfds_testutil.no_network() as attempts:
        tfds_testutil.prepare_imagenette(root / "data", per_class=(3, 1))
        cfg = config.resolve_config(
            **dict(
                recipe,
                tfds_name="imagenette/160px-v2",
                tfds_data_dir=str(root / "data"),
                model_dir=str(root / "run"),
            )
        )
        with contextlib.redirect_stdout(io.StringIO()) as out:
            result = loop.train(cfg)
    return result, out.getvalue().splitlines()[0], attempts


def test_imagenette_from_tfds_has_the_class_count_of_its_info(imagenette_from_tfds):
    result, _, attempts = imagenette_from_tfds
    assert (result.config.num_classes, result.model.output_shape[-1]) == (10, 10)
    assert (result.config.preset, attempts) == ("photos", [])


def test_header_names_the_tfds_dataset(imagenette_from_tfds):
    _, header, _ = imagenette_from_tfds
    assert header.startswith("Training small_14 (prelu) on imagenette/160px-v2 with ")


def test_tensorboard_reads_the_validation_logs(printed):
    # TensorBoard (in requirements.txt) reads the logs the run wrote.
    from tensorboard.backend.event_processing import event_accumulator

    cfg, _, _ = printed
    logs = event_accumulator.EventAccumulator(os.path.join(cfg.model_dir, "logs", "validation"))
    logs.Reload()
    assert {"loss", "top1_err", "top5_err"} <= set(logs.Tags()["scalars"]) | set(
        logs.Tags().get("tensors", [])
    )


def test_nan_stop_starts_its_own_line_on_a_terminal(data_dir, tmp_path):
    args = train_testutil.as_flags(
        **dict(
            train_testutil.TINY_RECIPE,
            data_dir=data_dir,
            model_dir=tmp_path / "run",
            steps_per_epoch=6,
            learning_rate=1e9,
        )
    )
    code, text = train_testutil.run_on_terminal(["-m", "delving.train", *args])
    assert code != 0
    assert "delving.train: error: " in text, text[-2000:]
    before = text[: text.index("delving.train: error: ")]
    assert before.endswith("\n"), repr(text[-600:])
    assert "img/s" in before  # the bar was drawn in place before the stop


# --- Interrupted runs


def _latest_step(checkpoint_dir):
    path = tf.train.latest_checkpoint(str(checkpoint_dir))
    return int(path.rsplit("-", 1)[1]) if path else 0


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch(data_dir, tmp_path):
    steps, every = 40, 4
    model_dir = tmp_path / "run"
    args = train_testutil.as_flags(
        **dict(
            train_testutil.TINY_RECIPE,
            data_dir=data_dir,
            model_dir=model_dir,
            epochs=2,
            steps_per_epoch=steps,
            checkpoint_every_steps=every,
        )
    )
    proc = train_testutil.start("delving.train", args)
    deadline = time.time() + train_testutil.HANG_GUARD_S
    while _latest_step(model_dir / "checkpoints") < 2 * every:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_at = _latest_step(model_dir / "checkpoints")
    assert 2 * every <= killed_at < steps, "the kill should land mid-epoch 1"

    code, out, err = train_testutil.run("delving.train", args)
    assert code == 0, err[-3000:]
    resumed = re.search(r"Resumed from \S+: step (\d+), epoch (\d+), (\d+) steps into", out)
    assert resumed, out[-2000:]
    step, epoch, into = map(int, resumed.groups())
    assert step >= killed_at and step % every == 0 and step < steps
    assert (epoch, into) == (1, step)
    # Every step done exactly once more: the counters end at 2 epochs.
    final = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert final.endswith(f"ckpt-{2 * steps}")
    assert _iterations(final) == 2 * steps
    with open(model_dir / "training_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], r["step"]) for r in rows] == [("1", str(steps)), ("2", str(2 * steps))]
    assert (model_dir / "model.keras").exists()


def test_resumed_epoch_carries_its_running_sums(data_dir, tmp_path):
    model_dir = tmp_path / "run"
    recipe = dict(
        train_testutil.TINY_RECIPE,
        data_dir=data_dir,
        model_dir=str(model_dir),
        steps_per_epoch=4,
        checkpoint_every_steps=2,
    )
    result = loop.train(config.resolve_config(**recipe), verbose=0)
    ckpt = model_dir / "checkpoints"
    mid, end = f"{ckpt}/ckpt-2", f"{ckpt}/ckpt-4"
    sums = tf.train.load_variable(mid, "epoch_sums/.ATTRIBUTES/VARIABLE_VALUE")
    batch = recipe["batch_size"]
    assert sums[3] == 2 * batch, sums  # two steps' images
    assert 0 < sums[0] / sums[3] < 20 and 0 <= sums[1] <= sums[3]
    np.testing.assert_array_equal(
        tf.train.load_variable(end, "epoch_sums/.ATTRIBUTES/VARIABLE_VALUE"), 0
    )

    # Resume from the mid-epoch checkpoint: the row averages all 4 steps, so
    # it holds the first two steps' sums (loss * images) exactly.
    index = "model_checkpoint_path"
    (ckpt / "checkpoint").write_text(f'{index}: "ckpt-2"\nall_{index}s: "ckpt-2"\n')
    for name in os.listdir(ckpt):
        if name.startswith("ckpt-4"):
            os.remove(ckpt / name)
    (model_dir / "training_log.csv").unlink()
    resumed = loop.train(config.resolve_config(**recipe), verbose=0)
    row = resumed.history[-1]
    final = tf.train.latest_checkpoint(str(ckpt))
    assert final.endswith("ckpt-4") and resumed.step == result.step == 4
    # The resumed steps' own mean is what is left after taking out ckpt-2's sums.
    own = (row["train_loss"] * 4 * batch - sums[0]) / (2 * batch)
    assert 0 < own < 20, (row, sums)
    assert row["train_loss"] == pytest.approx((sums[0] + own * 2 * batch) / (4 * batch))
    hits = (1 - row["train_top1_error"]) * 4 * batch
    assert hits >= sums[1] - 1e-6  # the first two steps' hits are counted


@pytest.fixture(scope="module")
def nan_stop(data_dir, tmp_path_factory):
    """A good epoch, then the binary on the same run with an absurd learning
    rate: (the good checkpoint, model_dir, exit code, stderr)."""
    model_dir = tmp_path_factory.mktemp("nan_stop") / "run"
    recipe = dict(train_testutil.TINY_RECIPE, data_dir=data_dir, model_dir=str(model_dir))
    good = loop.train(config.resolve_config(**recipe), verbose=0)
    good_ckpt = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert good_ckpt.endswith(f"ckpt-{good.step}")
    # Same run, one more epoch, with an absurd learning rate.
    args = train_testutil.as_flags(**dict(recipe, epochs=2, learning_rate=1e9))
    code, _, err = train_testutil.run("delving.train", args)
    yield good_ckpt, model_dir, code, err
    shutil.rmtree(model_dir)


@pytest.mark.slow
def test_nan_loss_stops_the_binary_in_one_line_naming_the_good_checkpoint(nan_stop):
    good_ckpt, _, code, err = nan_stop
    assert code != 0
    lines = train_testutil.error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert re.match(
        r"delving\.train: error: (loss became (nan|inf)|weights became "
        r"NaN/Inf) at step \d+",
        lines[0],
    ), lines[0]
    assert good_ckpt in lines[0]


@pytest.mark.slow
def test_nan_loss_keeps_the_last_good_checkpoint(nan_stop):
    good_ckpt, model_dir, _, _ = nan_stop
    # The latest checkpoint is still the good one, and it restores finite.
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")) == good_ckpt
    for name, _ in tf.train.list_variables(good_ckpt):
        if name.startswith("lr_schedule/best_error"):
            continue  # inf until a plateau schedule has seen an epoch (the preset steps)
        value = tf.train.load_variable(good_ckpt, name)
        if np.asarray(value).dtype.kind == "f":
            assert np.all(np.isfinite(value)), name


# The config is the object the flow carries, not a stage of it.
_CARRIED = {"config"}


def _entries_until_first_step(cfg):
    """[(module, function)] of every call from one delving.training module
    into another, until the compiled step is traced (its first call)."""
    entries, done = [], []

    def profile(frame, event, arg):
        if done or event != "call" or frame.f_back is None:
            return
        callee = frame.f_globals.get("__name__", "")
        back = frame.f_back
        if back.f_globals.get("__name__") == "contextlib" and back.f_back:  # `with open_run(...)`
            back = back.f_back
        caller = back.f_globals.get("__name__", "")
        if callee.endswith("train_steps") or frame.f_code.co_name.endswith("train_steps"):
            done.append(True)
            return
        parts = [name.rsplit(".", 1) for name in (caller, callee)]
        inside = all(p[0] == "delving.training" for p in parts)
        stage = "." not in frame.f_code.co_qualname  # not a method, not a nested function
        if caller != callee and inside and stage and parts[1][1] not in _CARRIED:
            entries.append((parts[1][1], frame.f_code.co_name))

    sys.setprofile(profile)
    try:
        loop.train(cfg, verbose=0)
    finally:
        sys.setprofile(None)
    assert done, "the compiled step was never traced"
    return entries


def test_training_enters_its_modules_in_run_order(tmp_path, tmp_path_factory):
    cfg = config.resolve_config(
        **train_testutil.TINY_RECIPE,
        data_dir=train_testutil.tiny_data_dir(tmp_path_factory),
        model_dir=str(tmp_path / "run"),
    )
    entries = _entries_until_first_step(cfg)
    first = list(dict.fromkeys(module for module, _ in entries))
    assert first == ["setup", "inputs", "run_dir", "optimizer", "presets", "step", "estimate"], (
        entries
    )
    # Each later entry into a module already left is a jump back a reader makes.
    stays = [m for i, (m, _) in enumerate(entries) if i == 0 or entries[i - 1][0] != m]
    returns = len(stays) - len(set(stays))
    assert returns <= 4, (returns, entries)
