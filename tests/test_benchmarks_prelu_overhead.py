"""benchmarks/prelu_overhead.py runs end to end and prints every comparison."""

import os
import subprocess
import sys

import pytest

from tests import train_testutil


@pytest.fixture(scope="module")
def out():
    script = os.path.join(train_testutil.ROOT, "benchmarks", "prelu_overhead.py")
    result = subprocess.run(
        [sys.executable, script, "--image_size=32", "--width=4", "--batch_size=2"]
        + ["--steps=1", "--repeats=2", "--warmup=1"],
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
        cwd=train_testutil.ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_prints_a_row_per_variant(out):
    rows = ("ReLU", "ReLU, then x * a (learned a)", "keras_layers.PReLU")
    for row in rows + ("keras.layers.PReLU(shared_axes=[1,2])",):
        assert f"\n{row} " in out, out


def test_prints_the_paired_ratios(out):
    assert "keras_layers.PReLU / keras.layers.PReLU(shared_axes=[1,2]): " in out, out
    assert "keras_layers.PReLU / ReLU, then x * a (learned a): " in out, out
    assert "1.000x [1.000-1.000]" in out  # ReLU against itself, within each repeat
