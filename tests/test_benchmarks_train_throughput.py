"""benchmarks/train_throughput.py runs end to end (tiny data and network):
every variant and comparison it documents prints its row, and the trainer's
row is the real training loop's own measurement."""

import os
import re
import statistics
import subprocess
import sys

import pytest

from tests import train_testutil

pytest.importorskip("torch")

REPEATS = 3  # odd: the row's median is one epoch's rate


@pytest.fixture(scope="module")
def benchmark_run(tmp_path_factory):
    """(stdout, the trainer's model_dir) of one run of the benchmark."""
    data_dir = train_testutil.tiny_data_dir(tmp_path_factory)
    model_dir = str(tmp_path_factory.mktemp("throughput") / "run")
    script = os.path.join(train_testutil.ROOT, "benchmarks", "train_throughput.py")
    result = subprocess.run(
        [
            sys.executable,
            script,
            f"--data_dir={data_dir}",
            f"--model_dir={model_dir}",
            "--image_size=96",  # larger than the preset's: its jitter is scaled with it
            "--batch_size=8",
            "--width_multiplier=0.125",
            "--fc_units=16",
            "--steps=1",
            "--trainer_steps=2",
            f"--repeats={REPEATS}",
            "--matmul_size=64",
            "--compare_relu",
        ],
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
        cwd=train_testutil.ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, model_dir


def test_every_variant_prints_a_row(benchmark_run):
    stdout, _ = benchmark_run
    for row in ("(a) delving.training.loop", "(b) Keras", "(c) PyTorch", "(b) the same, ReLU"):
        assert row in stdout, stdout
    assert "image 96 batch 8" in stdout and "GFLOP/s" in stdout


def test_trainer_row_is_the_median_of_the_loops_training_log(benchmark_run):
    stdout, model_dir = benchmark_run
    with open(os.path.join(model_dir, "training_log.csv")) as f:
        header, *rows = [line.rstrip("\n").split(",") for line in f]
    # A warm-up epoch, then one epoch per repeat, each evaluated as the binary does.
    assert [int(r[header.index("epoch")]) for r in rows] == list(range(1, REPEATS + 2))
    rates = [float(r[header.index("images_per_sec")]) for r in rows[1:]]
    printed = re.search(r"^\(a\) delving\.training\.loop\.train\s+([\d.]+) \[", stdout, re.M)
    assert printed, stdout
    assert float(printed.group(1)) == pytest.approx(statistics.median(rates), abs=0.06)
