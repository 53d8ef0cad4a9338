"""benchmarks/recipe_start.py on real records: every variant's start, side by side."""

import json
import math
import os
import subprocess
import sys

import pytest

from tests import train_testutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return train_testutil.tiny_data_dir(tmp_path_factory)


def test_recipe_start_reports_layers_initial_loss_and_steps_of_each_variant(data_dir):
    result = subprocess.run(
        [sys.executable, os.path.join("benchmarks", "recipe_start.py"), f"--data_dir={data_dir}"]
        + ["--preset=builtin", "--model=small_14", "--num_classes=10", "--data_classes=10"]
        + ["--variants=paper,input_std", "--steps=2", "--batch_size=4"],
        cwd=ROOT,
        env=train_testutil.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("\n{") + 1 :])
    assert sorted(report) == ["input_std", "paper"]
    for row in report.values():
        assert math.isfinite(row["initial_loss"]) and len(row["losses"]) == 2
        layers = {name: (measured, predicted) for name, measured, predicted in row["layers"]}
        assert layers["conv1"][1] > 0 and "fc3" in layers
    # The same images, divided by the RGB std (~58) or not.
    assert 30 < report["paper"]["input_std"] / report["input_std"]["input_std"] < 90
