"""The package as users install it: the wheel, its base dependencies, its console scripts.

The wheel is built from a copy of the sources (the build writes `build/` and
`*.egg-info` next to them) with the setuptools already installed, so no build
dependency is downloaded.
"""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.train_testutil import HANG_GUARD_S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("keras_layers", "delving", "pipelines", "export")
# [project.scripts] of pyproject.toml -> a flag each one's --help lists.
CONSOLE_SCRIPTS = {
    "delving-train": "--scale_range",
    "delving-evaluate": "--views",
    "delving-summary": "--image_size",
    "delving-export": "--export_base",
    "delving-client": "--server",
    "delving-build-tfrecords": "--num_shards",
}
# Uses the layers the way README shows, under the PyTorch backend, from a
# directory outside the repository; prints what it needs checked.
_LAYERS_SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np
import keras
import keras_layers

he = keras_layers.HeVarianceScaling("fan_out", seed=0)
inputs = keras.Input((None, None, 3))
x = keras.layers.Conv2D(8, 3, padding="same", kernel_initializer=he)(inputs)
x = keras_layers.PReLU()(x)
x = keras_layers.SpatialPyramidPooling((2, 1))(x)
model = keras.Model(inputs, keras.layers.Dense(4, kernel_initializer=he)(x))
out = model(np.ones((2, 17, 23, 3), "float32"))
model.save("m.keras")
again = keras.saving.load_model("m.keras", safe_mode=True)
np.testing.assert_allclose(
    keras.ops.convert_to_numpy(again(np.ones((1, 9, 9, 3), "float32"))),
    keras.ops.convert_to_numpy(model(np.ones((1, 9, 9, 3), "float32"))),
    rtol=1e-6,
)
print("shape", tuple(out.shape))
print("backend", keras.backend.backend())
print("from", os.path.dirname(os.path.dirname(keras_layers.__file__)))
print("tensorflow_loaded", "tensorflow" in sys.modules)
try:
    import tensorflow  # noqa: F401
    print("tensorflow_importable True")
except ImportError:
    print("tensorflow_importable False")
"""


def _pip(python, *args):
    subprocess.run([python, "-m", "pip", "--disable-pip-version-check", *args], check=True)


def _venv(path, *, system_site_packages=False):
    args = [sys.executable, "-m", "venv", str(path)]
    if system_site_packages:
        args.insert(3, "--system-site-packages")
    subprocess.run(args, check=True)
    return str(path / "bin" / "python"), str(path / "bin")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", *PACKAGES):
        source = os.path.join(ROOT, name)
        if os.path.isdir(source):
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, src / name)
    dist = tmp_path_factory.mktemp("dist")
    _pip(
        sys.executable,
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(dist),
        str(src),
    )
    (path,) = dist.glob("*.whl")
    return str(path)


def test_wheel_holds_the_four_packages_and_needs_only_keras_and_numpy(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = zf.read(
            next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        ).decode()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == set(PACKAGES)
    assert "delving/experiments/report.py" in names
    assert not any(n.startswith("tests/") for n in names)
    base = [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert sorted(base) == ["keras>=3", "numpy>=1.26"]
    extras = {
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Provides-Extra:")
    }
    assert {"tf", "serving", "test"} <= extras
    for script in CONSOLE_SCRIPTS:
        assert f"{script} = " in entry_points


@pytest.mark.slow
def test_layers_from_the_wheel_with_keras_and_torch_only(wheel, tmp_path):
    """A fresh venv with the wheel, Keras and the PyTorch backend: no TensorFlow anywhere."""
    python, _ = _venv(tmp_path / "venv")
    _pip(python, "install", "-q", wheel, "torch==2.13.0")
    work = tmp_path / "elsewhere"
    work.mkdir()
    result = subprocess.run(
        [python, "-c", _LAYERS_SCRIPT],
        cwd=work,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KERAS_BACKEND")},
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert report["shape"] == "(2, 4)"
    assert report["backend"] == "torch"
    assert report["from"].startswith(str(tmp_path / "venv"))
    assert report["tensorflow_loaded"] == "False"
    assert report["tensorflow_importable"] == "False"


@pytest.mark.slow
def test_console_scripts_answer_help(wheel, tmp_path):
    """The installed scripts (a venv on the system's packages plus the wheel)."""
    python, bin_dir = _venv(tmp_path / "venv", system_site_packages=True)
    _pip(python, "install", "-q", "--no-deps", wheel)
    work = tmp_path / "elsewhere"  # away from the repository's sources
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [python, "-c", "import delving; print(delving.__file__)"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert where.startswith(str(tmp_path / "venv")), where
    for script, flag in CONSOLE_SCRIPTS.items():
        result = subprocess.run(
            [os.path.join(bin_dir, script), "--help"],
            cwd=work,
            capture_output=True,
            text=True,
            env=env,
            timeout=HANG_GUARD_S,
        )
        assert flag in result.stdout, (script, result.stdout[-1000:], result.stderr[-2000:])
        assert "Traceback" not in result.stderr, (script, result.stderr[-2000:])
