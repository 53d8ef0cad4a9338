"""benchmarks/model_step.py under the JAX and torch backends, without TensorFlow."""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from tests import train_testutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_model_step_runs_without_tensorflow(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (requirements-test.txt installs it)")
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        # -X importtime logs every module the run imports, whoever imports it.
        [sys.executable, "-X", "importtime", os.path.join("benchmarks", "model_step.py")]
        + ["--image_size=32", "--batch_size=2", "--width_multiplier=0.125", "--fc_units=16"]
        + ["--num_classes=10", "--steps=1", "--repeats=2", "--warmup=1", "--matmul_size=64"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    imported = re.findall(r"^import time:.*\|\s*(\S+)$", result.stderr, re.MULTILINE)
    assert "delving.models.networks" in imported and "keras_layers" in imported
    assert not [m for m in imported if m.split(".")[0] == "tensorflow"]
    out = result.stdout
    assert f"backend={backend} model=small_14" in out
    for label in ("ms/step", "images/s", "GFLOP/s", "matmul GFLOP/s"):
        assert re.search(rf"^{re.escape(label)}\s+\d+\.\d", out, re.MULTILINE), out
