"""The summary binary (delving.summary): the table and totals of a model."""

import os
import re
import subprocess
import sys

from delving.models import networks
from delving.models import stats as model_stats
from delving.training import estimate
from tests import train_testutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# small_14 at a quarter of its width: conv1 has 16 filters, conv3 64.
SMALL = {"width_multiplier": 0.25, "fc_units": 256, "num_classes": 10}


def _run_summary(*flags):
    return subprocess.run(
        [sys.executable, "-m", "delving.summary", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def test_prints_the_totals_of_the_model():
    result = _run_summary(
        "--model=small_14",
        "--width_multiplier=0.25",
        "--fc_units=256",
        "--num_classes=10",
        "--activation=prelu_shared",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    model = networks.build_model("small_14", activation="prelu_shared", **SMALL)
    params = int(re.search(r"total params: ([\d,]+)", out)[1].replace(",", ""))
    macs = int(re.search(r"total multiply-adds per image: ([\d,]+)", out)[1].replace(",", ""))
    assert params == model.count_params()
    assert macs == model_stats.totals(model_stats.layer_stats(model, 224))[1]
    conv1 = next(line for line in out.splitlines() if line.startswith("conv1 "))
    # 112x112x16 outputs x 7*7*3 multiply-adds (see test_models_stats.py).
    assert conv1.split()[-1] == "29,503,488"
    assert "trunk output 19x19 (total stride 12)" in out


def test_rejects_a_bad_flag_in_one_line():
    result = _run_summary("--model=model_z")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "--model" in result.stderr and "model_z" in result.stderr


def test_projects_the_paper_schedule_from_the_device_tflops():
    result = _run_summary("--model=small_14", "--device_tflops=100", "--utilisation=0.5")
    assert result.returncode == 0, result.stderr

    def number(label):
        return int(re.search(label + r": ([\d,]+)", result.stdout)[1].replace(",", ""))

    flops = number("training FLOPs per image")
    assert flops == 6 * number("total multiply-adds per image")
    line = next(x for x in result.stdout.splitlines() if x.startswith("projection, not a"))
    seconds = 80 * 1_281_167 * flops / (100e12 * 0.5)
    assert f"80 epochs of 1,281,167 images take {estimate.duration(seconds)}" in line
