"""The package as users install it: the wheel, its base dependencies, its console scripts.

The wheel is built from a copy of the sources (the build writes `build/` and
`*.egg-info` next to them) with the setuptools already installed, so no build
dependency is downloaded.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from tests import train_testutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _packages_on_disk():
    """Every importable package of ours: a directory with `__init__.py` under one."""
    found = []
    for top in sorted(os.listdir(ROOT)):
        if not os.path.isfile(os.path.join(ROOT, top, "__init__.py")):
            continue
        for directory, subdirs, files in os.walk(os.path.join(ROOT, top)):
            if "__init__.py" not in files:
                subdirs[:] = []  # a directory without one is no package, nor its children
                continue
            found.append(os.path.relpath(directory, ROOT).replace(os.sep, "."))
    return found


with open(os.path.join(ROOT, "pyproject.toml"), "rb") as _f:
    LISTED = tomllib.load(_f)["tool"]["setuptools"]["packages"]
PACKAGES = sorted({name.split(".")[0] for name in LISTED})
# [project.scripts] of pyproject.toml -> a flag each one's --help lists.
CONSOLE_SCRIPTS = {
    "delving-train": "--scale_range",
    "delving-evaluate": "--views",
    "delving-summary": "--image_size",
    "delving-export": "--export_base",
    "delving-client": "--server",
    "delving-build-tfrecords": "--num_shards",
    "delving-data-service": "--dispatcher",
    "delving-generate-imagenet-shaped": "--images_per_class",
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


def _venv(path, python=sys.executable, *, with_pip=True):
    args = [python, "-m", "venv", str(path)]
    if not with_pip:
        args.append("--without-pip")
    subprocess.run(args, check=True)
    return str(path / "bin" / "python"), str(path / "bin")


def _script_env():
    """The environment the installed scripts run in: nothing from the repository."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _see_packages_of(venv_python, python, cwd):
    """Lets a venv import whatever `python` imports, after the venv's own packages.

    `--system-site-packages` would show the base interpreter's packages, and
    where `python` runs in a virtualenv (`pip install -r requirements-test.txt`
    inside one) the base has none of them. A .pth file in the venv lists
    `python`'s own search path instead, as site sees it (`.pth` files, user
    site), minus the repository, so the wheel's copy is the one imported.
    """
    query = "import json, sys; print(json.dumps(sys.path))"
    found = subprocess.run(
        [python, "-c", query], cwd=cwd, capture_output=True, text=True, env=_script_env()
    )
    assert found.returncode == 0, found.stderr[-2000:]
    root = os.path.realpath(ROOT)
    paths = [
        p
        for p in json.loads(found.stdout)
        if p and os.path.isdir(p) and os.path.realpath(p) != root
    ]
    purelib = subprocess.run(
        [venv_python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with open(os.path.join(purelib, "running_interpreter.pth"), "w") as f:
        f.write("".join(p + "\n" for p in paths))


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


def _wheel_metadata(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = zf.read(
            next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        ).decode()
    return names, metadata, entry_points


def test_pyproject_lists_every_package():
    assert sorted(LISTED) == sorted(_packages_on_disk())


def test_wheel_holds_every_package(wheel):
    names, _, _ = _wheel_metadata(wheel)
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == set(PACKAGES)
    for package in _packages_on_disk():
        assert package.replace(".", "/") + "/__init__.py" in names, package
    assert "delving/experiments/report.py" in names
    assert not any(n.startswith("tests/") for n in names)


def test_wheel_requires_only_the_base_dependencies(wheel):
    _, metadata, _ = _wheel_metadata(wheel)
    base = [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert sorted(base) == ["keras>=3", "numpy>=1.26"]


def test_wheel_offers_the_extras(wheel):
    _, metadata, _ = _wheel_metadata(wheel)
    extras = {
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Provides-Extra:")
    }
    assert {"tf", "serving", "test"} <= extras


def test_wheel_tf_extra_installs_tensorboard(wheel):
    _, metadata, _ = _wheel_metadata(wheel)
    tf_extra = [
        line.split(":", 1)[1].split(";")[0].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and 'extra == "tf"' in line
    ]
    assert "tensorboard>=2.16" in tf_extra, tf_extra


def _requirement_name(line):
    return re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_requirements_files_list_every_declared_dependency():
    """What pyproject.toml declares, base and extras, is what the requirements files install."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    declared = {
        _requirement_name(d)
        for d in project["dependencies"]
        + [d for ds in project["optional-dependencies"].values() for d in ds]
    } - {project["name"]}
    listed = set()
    for name in ("requirements.txt", "requirements-test.txt"):
        with open(os.path.join(ROOT, name)) as f:
            listed |= {
                _requirement_name(line)
                for line in f
                if line.strip() and not line.startswith(("#", "-r"))
            }
    assert declared <= listed, sorted(declared - listed)


def test_wheel_declares_the_console_scripts(wheel):
    _, _, entry_points = _wheel_metadata(wheel)
    for script in CONSOLE_SCRIPTS:
        assert f"{script} = " in entry_points


@pytest.mark.slow
def test_layers_from_the_wheel_run_on_torch_without_tensorflow(wheel, tmp_path):
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
        timeout=train_testutil.HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert report["shape"] == "(2, 4)"
    assert report["backend"] == "torch"
    assert report["from"].startswith(str(tmp_path / "venv"))
    assert report["tensorflow_loaded"] == "False"
    assert report["tensorflow_importable"] == "False"


def test_script_venv_sees_what_a_virtualenv_runner_installed(tmp_path):
    """Run from a virtualenv, the scripts' venv still sees the packages installed there."""
    runner, _ = _venv(tmp_path / "runner", with_pip=False)
    purelib = subprocess.run(
        [runner, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with open(os.path.join(purelib, "only_in_runner.py"), "w") as f:
        f.write("")
    work = tmp_path / "elsewhere"
    work.mkdir()
    python, _ = _venv(tmp_path / "venv", runner, with_pip=False)
    _see_packages_of(python, runner, cwd=work)
    result = subprocess.run(
        [python, "-c", "import only_in_runner"],
        cwd=work,
        capture_output=True,
        text=True,
        env=_script_env(),
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_console_scripts_answer_help(wheel, tmp_path):
    """The installed scripts: the wheel in a venv that sees the running interpreter's packages."""
    work = tmp_path / "elsewhere"  # away from the repository's sources
    work.mkdir()
    python, bin_dir = _venv(tmp_path / "venv")
    _see_packages_of(python, sys.executable, cwd=work)
    _pip(python, "install", "-q", "--no-deps", wheel)
    env = _script_env()
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
            timeout=train_testutil.HANG_GUARD_S,
        )
        assert flag in result.stdout, (script, result.stdout[-1000:], result.stderr[-2000:])
        assert "Traceback" not in result.stderr, (script, result.stderr[-2000:])
