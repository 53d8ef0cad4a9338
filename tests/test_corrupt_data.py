"""Corrupt data is one line naming the file and record, `--skip_corrupt`
reads what is intact, and a model is not evaluated on another class count
(issue 16). Real shards, truncated or emptied on disk."""

import shutil

import pytest

from common import errors
from delving.training import config, loop
from pipelines import builtin
from tests import train_testutil as util


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return util.tiny_data_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory):
    """A trained model_dir of the tiny data's classes (one step is enough)."""
    model_dir = str(tmp_path_factory.mktemp("corrupt") / "run")
    recipe = dict(util.TINY_RECIPE, data_dir=data_dir, model_dir=model_dir)
    loop.train(config.resolve_config(**dict(recipe, steps_per_epoch=1)), verbose=0)
    return model_dir


def _copy(data_dir, tmp_path, name):
    return shutil.copytree(data_dir, tmp_path / name)


def _one_line_failure(proc_result):
    code, _, err = proc_result
    lines = util.error_lines(err)
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def test_truncated_shard_counted_at_start_up(data_dir, tmp_path):
    data = _copy(data_dir, tmp_path, "truncated")
    shard = sorted(data.glob("train-*"))[0]
    size = shard.stat().st_size
    with open(shard, "r+b") as f:
        f.truncate(size * 2 // 3)
    # No --steps_per_epoch: the epoch length comes from counting the records.
    recipe = dict(util.TINY_RECIPE, data_dir=str(data), model_dir=str(tmp_path / "run"))
    del recipe["steps_per_epoch"]
    with pytest.raises(errors.DataError) as info:
        loop.train(config.resolve_config(**recipe), verbose=0)
    message = str(info.value)
    assert message.startswith("record ") and f" of {shard} cannot be read" in message, message
    assert "--skip_corrupt" in message
    assert not (tmp_path / "run").exists(), "a refused run writes nothing"

    result = loop.train(config.resolve_config(**recipe, skip_corrupt=True), verbose=0)
    full = sum(n for split, n, _ in util.TINY_SPLITS if split == "train")
    # The intact records only, fewer than the full split's.
    assert 0 < result.config.steps_per_epoch < config.steps_for(full, recipe["batch_size"])


def test_evaluate_refuses_empty_split_and_other_class_count(data_dir, run, tmp_path):
    empty = _copy(data_dir, tmp_path, "empty")
    for shard in empty.glob("validation-*"):
        shard.write_bytes(b"")
    line = _one_line_failure(
        util.run("delving.evaluate", [f"--model_dir={run}", f"--data_dir={empty}"])
    )
    assert f"the validation split of {empty} gave no images" in line, line

    three = _copy(data_dir, tmp_path, "three")
    (three / "labels.txt").write_text("".join(f"n0{i}\tclass {i}\n" for i in range(3)))
    line = _one_line_failure(
        util.run("delving.evaluate", [f"--model_dir={run}", f"--data_dir={three}"])
    )
    assert f"{three}/labels.txt lists 3 classes but num_classes is {builtin.NUM_CLASSES}" in line
    assert f"the model's classes: {builtin.NUM_CLASSES}" in line, line


def test_evaluate_skip_corrupt(data_dir, run, tmp_path):
    data = _copy(data_dir, tmp_path, "truncated")
    shard = sorted(data.glob("validation-*"))[0]
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size // 2)
    args = [f"--model_dir={run}", f"--data_dir={data}"]
    line = _one_line_failure(util.run("delving.evaluate", args))
    assert f"truncated or corrupt TFRecord shard {shard}" in line and "--skip_corrupt" in line
    code, out, err = util.run("delving.evaluate", [*args, "--skip_corrupt"])
    assert code == 0, err[-3000:]
    full = sum(n for split, n, _ in util.TINY_SPLITS if split == "validation")
    count = int(out.strip().splitlines()[-1].split()[-1])
    assert 0 < count < full, out
