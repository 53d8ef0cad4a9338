"""TensorFlow's start-up notices stay off stderr; everything else gets through."""

import os
import subprocess
import sys

import pytest

from common import quiet_start
from tests import train_testutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Loads TensorFlow the way a binary's main does (quiet start first), runs an op,
# and writes one line of its own to stderr from C (os.write) and from Python.
_SCRIPT = """
import os, sys, warnings
from common import quiet_start
quiet_start.install()
import tensorflow as tf
tf.constant(1.0) + 1.0
os.write(2, b"native line\\n")
warnings.warn("python warning")
"""


def _python(script, level=None):
    """Runs `python -c script` with TF_CPP_MIN_LOG_LEVEL unset or `level`."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
        check=True,
    )


def _stderr(level):
    result = _python(_SCRIPT, level)
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_default_start_prints_only_what_is_not_tensorflow_chatter():
    lines = _stderr(None)
    assert "native line" in lines, lines
    assert any("UserWarning: python warning" in line for line in lines), lines
    assert not [line for line in lines if quiet_start.START_UP_NOTICES.search(line)], lines
    assert not [line for line in lines if line[:5] in ("I0000", "W0000", "E0000")], lines


def test_explicit_low_log_level_keeps_tensorflow_notices():
    # What the default run hides is really printed: oneDNN announces itself on
    # every x86 CPU, and the absl pre-init notice comes with it.
    lines = _stderr("0")
    assert [line for line in lines if quiet_start.START_UP_NOTICES.search(line)], lines


@pytest.mark.parametrize(
    "argv",
    [
        ["delving.summary", "--model=small_14", "--image_size=64"],
        # gRPC client: loads TensorFlow (the serving API's protos) and fails.
        ["export.client", "--server=127.0.0.1:1", "--timeout=5", "{image}"],
    ],
)
def test_binaries_that_load_tensorflow_print_no_start_up_lines(argv, tmp_path):
    image = tmp_path / "cat.jpg"
    image.write_bytes(b"x")
    argv = [arg.format(image=image) for arg in argv]
    result = subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if argv[0] == "export.client":
        assert result.returncode == 1 and len(lines) == 1, lines
        assert lines[0].startswith("error: 127.0.0.1:1:"), lines
    else:
        assert result.returncode == 0 and not lines, lines


def test_filter_replays_other_lines_in_order(capfd):
    with quiet_start.filtered_native_stderr():
        os.write(2, b"first\n")
        os.write(2, b"I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers\n")
        os.write(2, b"second\n")
    assert capfd.readouterr().err == "first\nsecond\n"


def test_importing_the_packages_leaves_the_process_as_it_was():
    # A library user's process: no import hook, no log level set behind its
    # back (TensorFlow itself sets TF_CPP_MIN_LOG_LEVEL when it loads).
    script = (
        "import os, sys; import tensorflow; before = os.environ.get('TF_CPP_MIN_LOG_LEVEL'); "
        "import delving, pipelines, export, keras_layers; "
        "from delving.training import loop; "
        "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL') == before, "
        "[type(f).__name__ for f in sys.meta_path if 'Quiet' in type(f).__name__])"
    )
    out = _python(script).stdout
    assert out.split() == ["True", "[]"], out


@pytest.mark.parametrize("visible, kept", [("0", True), ("", False), ("-1", False)])
def test_cuinit_failure_is_kept_where_a_gpu_is_expected(visible, kept, monkeypatch, capfd):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    line = "E0000 00:00:1.0 1 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n"
    with quiet_start.filtered_native_stderr():
        os.write(2, line.encode())
    assert (capfd.readouterr().err == line) == kept
