"""`delving.evaluate` on corrupt data: one line naming the file and record,
`--skip_corrupt` reads what is intact, and a model is not evaluated on
another class count. Real shards, truncated or emptied on disk."""

import shutil

import pytest

from delving.training import config, loop
from pipelines import builtin
from tests import train_testutil


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return train_testutil.tiny_data_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory):
    """A trained model_dir of the tiny data's classes (one step is enough)."""
    model_dir = str(tmp_path_factory.mktemp("corrupt") / "run")
    recipe = dict(train_testutil.TINY_RECIPE, data_dir=data_dir, model_dir=model_dir)
    loop.train(config.resolve_config(**dict(recipe, steps_per_epoch=1)), verbose=0)
    return model_dir


@pytest.fixture(scope="module")
def truncated(data_dir, tmp_path_factory):
    """A copy of the data with its first validation shard cut in half."""
    data = shutil.copytree(data_dir, tmp_path_factory.mktemp("cut") / "data")
    shard = sorted(data.glob("validation-*"))[0]
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size // 2)
    return data, shard


def _copy(data_dir, tmp_path, name):
    return shutil.copytree(data_dir, tmp_path / name)


def _one_line_failure(proc_result):
    code, _, err = proc_result
    lines = train_testutil.error_lines(err)
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def test_empty_split_is_one_line(data_dir, run, tmp_path):
    empty = _copy(data_dir, tmp_path, "empty")
    for shard in empty.glob("validation-*"):
        shard.write_bytes(b"")
    line = _one_line_failure(
        train_testutil.run("delving.evaluate", [f"--model_dir={run}", f"--data_dir={empty}"])
    )
    assert f"the validation split of {empty} gave no images" in line, line


def test_another_class_count_is_refused_in_one_line(data_dir, run, tmp_path):
    three = _copy(data_dir, tmp_path, "three")
    (three / "labels.txt").write_text("".join(f"n0{i}\tclass {i}\n" for i in range(3)))
    line = _one_line_failure(
        train_testutil.run("delving.evaluate", [f"--model_dir={run}", f"--data_dir={three}"])
    )
    assert f"{three}/labels.txt lists 3 classes but num_classes is {builtin.NUM_CLASSES}" in line
    assert f"the model's classes: {builtin.NUM_CLASSES}" in line, line


def test_truncated_shard_is_named_in_one_line(run, truncated):
    data, shard = truncated
    line = _one_line_failure(
        train_testutil.run("delving.evaluate", [f"--model_dir={run}", f"--data_dir={data}"])
    )
    assert f"truncated or corrupt TFRecord shard {shard}" in line and "--skip_corrupt" in line


def test_skip_corrupt_evaluates_the_intact_records(run, truncated):
    data, _ = truncated
    args = [f"--model_dir={run}", f"--data_dir={data}", "--skip_corrupt"]
    code, out, err = train_testutil.run("delving.evaluate", args)
    assert code == 0, err[-3000:]
    full = sum(n for split, n, _ in train_testutil.TINY_SPLITS if split == "validation")
    count = int(out.strip().splitlines()[-1].split()[-1])
    assert 0 < count < full, out
