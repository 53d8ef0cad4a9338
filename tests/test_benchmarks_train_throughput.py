"""benchmarks/train_throughput.py runs end to end (tiny data and network):
every variant and comparison it documents prints its row."""

import os
import subprocess
import sys

import pytest

from tests import train_testutil

pytest.importorskip("torch")


def test_every_variant_prints_a_row(tmp_path_factory):
    data_dir = train_testutil.tiny_data_dir(tmp_path_factory)
    script = os.path.join(train_testutil.ROOT, "benchmarks", "train_throughput.py")
    result = subprocess.run(
        [
            sys.executable,
            script,
            f"--data_dir={data_dir}",
            "--image_size=96",  # larger than the preset's: its jitter is scaled with it
            "--batch_size=8",
            "--width_multiplier=0.125",
            "--fc_units=16",
            "--steps=1",
            "--repeats=2",
            "--matmul_size=64",
            "--compare_relu",
        ],
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
        cwd=train_testutil.ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for row in ("(a) delving.training.loop", "(b) Keras", "(c) PyTorch", "(b) the same, ReLU"):
        assert row in result.stdout, result.stdout
    assert "image 96 batch 8" in result.stdout and "GFLOP/s" in result.stdout
