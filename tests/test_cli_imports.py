"""Every binary answers --help and rejects a bad flag without loading TensorFlow.

Each case runs the binary's module in a fresh interpreter (as `python -m`
does) and reports afterwards whether `tensorflow` is in `sys.modules`.
"""

import os
import subprocess
import sys

import pytest

from tests import train_testutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs one binary with the given argv, then reports what it imported.
_DRIVER = """
import runpy, sys
module, args = sys.argv[1], sys.argv[2:]
sys.argv = [module] + args
code = 0
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
if isinstance(code, str):
    print(code, file=sys.stderr)
    code = 1
print(f"@@tensorflow_imported={'tensorflow' in sys.modules}", file=sys.stderr)
sys.exit(code or 0)
"""

# binary -> (a flag its --help lists, [(bad argv, what the one error line says)])
BINARIES = {
    "delving.train": (
        "--scale_range",
        [
            (["--model=model_z"], "--model=model_z: must be one of small_14"),
            (["--batch_size=0"], "--batch_size=0: must be positive"),
            (["--scale_range=a,b"], "--scale_range: expected integers"),
            (["--image_size=500"], "--scale_range=64,80: must be"),
            (["--data_service=localhost:5050"], "--data_service=localhost:5050: expected grpc://"),
        ],
    ),
    "delving.evaluate": (
        "--views",
        [
            (["--model_dir=x", "--scale=0"], "--scale: expected integers >= 1"),
            (["--model_dir=x", "--views=sideways"], "--views: expected names among"),
        ],
    ),
    "delving.summary": ("--image_size", [(["--model=model_z"], "--model")]),
    "export.export_saved_model": (
        "--export_base",
        [(["--model_dir=x", "--export_base=y", "--scales=big"], "--scales: expected integers")],
    ),
    "export.client": ("--server", [(["--timeout=soon"], "--timeout")]),
    "pipelines.build_tfrecords": (
        "--num_shards",
        [(["--input_dir=x", "--output_dir=y", "--num_shards=0"], "--num_shards")],
    ),
    "pipelines.data_service_server": (
        "--worker_timeout_ms",
        [
            (["--role=worker"], "--role=worker needs --dispatcher"),
            (["--role=worker", "--dispatcher=nohost"], "--dispatcher=nohost: expected host:port"),
            (["--role=dispatcher", "--dispatcher=a:1"], "--dispatcher is for --role=worker"),
        ],
    ),
    "pipelines.generate_imagenet_shaped": (
        "--images_per_class",
        [(["--output_dir=y", "--images_per_class=0"], "--images_per_class")],
    ),
    "delving.experiments.activations": ("--seeds", [(["--seeds=a"], "--seeds: expected")]),
    "delving.experiments.convergence": ("--models", [(["--models=model_z"], "--models")]),
    "delving.experiments.signal_propagation": (
        "--image_sizes",
        [(["--image_sizes=0"], "--image_sizes: expected integers >= 1")],
    ),
    "delving.experiments.report": ("--figures_dir", [(["--quick=maybe"], "--quick")]),
}


def _run(module, args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER, module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=train_testutil.HANG_GUARD_S,  # nothing heavy should load at all
    )
    lines = result.stderr.splitlines()
    assert lines and lines[-1].startswith("@@tensorflow_imported="), result.stderr[-2000:]
    imported = lines[-1].endswith("True")
    errors = [
        line
        for line in lines[:-1]
        if line.strip() and not line.startswith(("Pass --helpshort", "WARNING: All log"))
    ]
    return result.returncode, result.stdout, errors, imported


@pytest.mark.parametrize("module", sorted(BINARIES))
def test_help_does_not_import_tensorflow(module):
    flag, _ = BINARIES[module]
    code, out, errors, imported = _run(module, ["--help"])
    assert flag in out, out[-2000:]
    assert not any("Traceback" in line for line in errors), errors
    assert not imported, f"{module} --help imported tensorflow"


@pytest.mark.parametrize(
    "module,args,expected",
    [(m, args, expected) for m, (_, cases) in sorted(BINARIES.items()) for args, expected in cases],
)
def test_bad_flag_fails_in_one_line_without_tensorflow(module, args, expected):
    code, _, errors, imported = _run(module, args)
    assert code != 0
    assert len(errors) == 1, errors
    assert expected in errors[0], errors[0]
    assert not imported, f"{module} {' '.join(args)} imported tensorflow"


def test_evaluate_knows_the_views_evaluation_registers():
    script = (
        "from delving import evaluate; from delving.evaluation import validation; "
        "assert evaluate.VIEW_NAMES == tuple(validation.VIEWS), validation.VIEWS"
    )
    subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, check=True, timeout=train_testutil.HANG_GUARD_S
    )


def test_build_tfrecords_help_states_the_shard_size():
    from pipelines import tfrecord_builder

    _, out, _, _ = _run("pipelines.build_tfrecords", ["--help"])
    assert f"({tfrecord_builder.IMAGES_PER_SHARD}) images each" in out
