"""Every binary answers a user's mistake in one line (`common.cli`): no
traceback, a non-zero exit, and nothing written.

Each binary gets at least five wrong inputs: unknown names, missing paths,
wrong-kind paths (a directory where a file is expected and the reverse; the
tests run as root, which reads mode-000 files:
`test_permission_denied_is_one_line` runs them without root's file-permission
override), out-of-range numbers, and a model_dir of another network. The cases
of one binary run one after the other in one test (each process imports
TensorFlow); timeouts are only hang guards.
"""

import os
import shutil
import subprocess
import sys

import pytest

from delving.training import presets
from tests import export_testutil, imaging_testutil, train_testutil


class Paths:
    """Wrong-kind and missing paths, and real inputs, under one root."""

    def __init__(self, root):
        self.root = root
        self.a_file = root / "a_file.txt"
        self.a_file.write_text("not a directory\n")
        self.a_dir = root / "a_dir"
        self.a_dir.mkdir()
        self.missing = root / "missing"
        self.out = root / "out"  # never created by a refused command


def _snapshot(root):
    """Every path under root with its size and modification time."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            stat = os.lstat(path)
            found[os.path.relpath(path, root)] = (stat.st_size, stat.st_mtime_ns)
    return found


def _check_cases(module, cases, root, prefix=()):
    """Runs `python -m module` once per case, in `root/cwd` (relative
    defaults land there), and checks each failed in one line. `prefix` goes
    before the interpreter (e.g. `setpriv` dropping capabilities)."""
    cwd = root / "cwd"
    cwd.mkdir(exist_ok=True)
    failures = []
    for args, expected, *env in cases:
        args = [str(a) for a in args]
        before = _snapshot(root)
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", module, *args],
            cwd=cwd,
            env=train_testutil.subprocess_env(**(env[0] if env else {})),
            capture_output=True,
            text=True,
            timeout=train_testutil.HANG_GUARD_S,
        )
        lines = train_testutil.error_lines(proc.stderr)
        written = sorted(set(_snapshot(root).items()) - set(before.items()))
        problems = []
        if proc.returncode == 0:
            problems.append("exit status 0")
        if "Traceback" in proc.stderr:
            problems.append("a traceback")
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr")
        elif expected not in lines[0]:
            problems.append(f"no {expected!r} in the line")
        if written:
            problems.append(f"wrote {written}")
        if problems:
            failures.append(
                f"{module} {' '.join(args)}: {', '.join(problems)}\n  "
                + ("\n  ".join(lines[-6:]) if lines else proc.stderr[-800:])
            )
    assert not failures, "\n".join(failures)


@pytest.fixture
def paths(tmp_path):
    return Paths(tmp_path)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return train_testutil.tiny_data_dir(tmp_path_factory)


def test_train_answers_each_mistake_in_one_line(paths, data_dir):
    three_classes = paths.root / "three.tsv"
    three_classes.write_text("".join(f"n0{i}\tclass {i}\n" for i in range(3)))
    other = export_testutil.write_model_dir(
        paths.root / "other_run", model="small_14", data_dir=data_dir
    )
    model_dir = paths.root / "run"
    low, high = presets.PRESETS["builtin"]["scale_range"]
    cases = [
        (["--model=model_z"], "--model"),
        (["--tfds_name=no_such_dataset", f"--model_dir={model_dir}"], "no_such_dataset"),
        (
            [
                "--tfds_name=imagenet2012",
                f"--tfds_manual_dir={paths.a_dir}",
                f"--tfds_data_dir={paths.root / 'tfds'}",
                f"--model_dir={model_dir}",
            ],
            "imagenet2012",
        ),
        ([f"--data_dir={paths.missing}", f"--model_dir={model_dir}"], "does not exist"),
        ([f"--data_dir={paths.a_file}", f"--model_dir={model_dir}"], "--data_dir"),
        ([f"--data_dir={data_dir}", f"--model_dir={paths.a_file}"], "--model_dir"),
        (
            [f"--data_dir={data_dir}", f"--labels_file={paths.a_dir}", f"--model_dir={model_dir}"],
            "--labels_file",
        ),
        (
            [f"--data_dir={data_dir}", f"--labels_file={three_classes}", "--num_classes=10"]
            + [f"--model_dir={model_dir}"],
            "3",
        ),
        (["--batch_size=0"], "--batch_size"),
        (  # activations of ~100 GiB: refused before any work, both numbers named
            [f"--data_dir={data_dir}", "--preset=builtin", "--batch_size=100000"]
            + [f"--model_dir={model_dir}"],
            "--batch_size=100000 needs at least",
        ),
        ([f"--data_dir={data_dir}", "--num_classes=7", f"--model_dir={other}"], "num_classes"),
        (["--scale_range=300"], "--scale_range"),
        ([f"--image_size={high + 1}"], f"--scale_range={low},{high}: must be"),
        (
            ["--strategy=multi_worker", "--batch_size=3"],
            "--batch_size=3 is not divisible by the 2 replicas",
            {"TF_CONFIG": train_testutil.tf_config([1, 2], 0)},
        ),
        (
            [f"--model_dir={model_dir}", "--epochs=1"],
            f"{paths.a_file} is a file, not a directory (set $DELVING_DATA_DIR",
            {"DELVING_DATA_DIR": str(paths.a_file)},
        ),
    ]
    if os.geteuid() != 0:  # root reads mode-000 files: no mistake for root
        unreadable = paths.root / "unreadable.tsv"
        unreadable.write_text("n01\tone\n")
        unreadable.chmod(0)
        cases.append(([f"--labels_file={unreadable}"], "is not readable"))
    _check_cases("delving.train", cases, paths.root)


def test_evaluate_answers_each_mistake_in_one_line(paths, data_dir):
    import tensorflow as tf

    from delving.models import networks

    run = export_testutil.write_model_dir(paths.root / "run", model="small_14", data_dir=data_dir)
    other_checkpoint = tf.train.Checkpoint(
        model=networks.build_model("model_a", num_classes=3, width_multiplier=1 / 32, fc_units=8)
    ).write(str(paths.root / "other" / "ckpt"))
    cases = [
        ([f"--model_dir={paths.missing}"], str(paths.missing)),
        ([f"--model_dir={paths.a_file}"], str(paths.a_file)),
        ([f"--model_dir={paths.a_dir}"], str(paths.a_dir)),
        ([f"--model_dir={run}", "--views=sideways"], "sideways"),
        ([f"--model_dir={run}", "--scale=0"], "--scale"),
        ([f"--model_dir={run}", f"--checkpoint={other_checkpoint}"], "--checkpoint"),
        ([f"--model_dir={run}", f"--checkpoint={paths.missing}"], "does not exist"),
        ([f"--model_dir={run}", f"--data_dir={paths.a_dir}"], "no files match"),
        ([f"--model_dir={run}", "--batch_size=-1"], "--batch_size"),
    ]
    _check_cases("delving.evaluate", cases, paths.root)


def test_summary_answers_each_mistake_in_one_line(paths):
    cases = [
        (["--model=model_z"], "--model"),
        (["--activation=tanh"], "--activation"),
        (["--image_size=0"], "--image_size"),
        (["--num_classes=0"], "--num_classes"),
        (["--width_multiplier=-1"], "--width_multiplier"),
        (["--data_format=NCHW"], "--data_format"),
        (["--fc_units=0"], "--fc_units"),
        (["extra_argument"], "extra_argument"),
    ]
    _check_cases("delving.summary", cases, paths.root)


def test_export_saved_model_answers_each_mistake_in_one_line(paths):
    run = export_testutil.write_model_dir(paths.root / "run", model="small_14")
    other = export_testutil.write_model_dir(paths.root / "other", model="small_14")
    (paths.root / "other" / "classes.tsv").write_text(
        "".join(f"{c.index}\tn9{c.index}\t{c.name}\n" for c in export_testutil.CLASSES)
    )
    base = paths.out / "serving"
    cases = [
        ([f"--model_dir={paths.missing}", f"--export_base={base}"], str(paths.missing)),
        ([f"--model_dir={paths.a_file}", f"--export_base={base}"], str(paths.a_file)),
        ([f"--model_dir={run}", f"--export_base={paths.a_file}"], "--export_base"),
        ([f"--model_dir={run}", f"--export_base={base}", "--scales=0"], "--scales"),
        ([f"--model_dir={run}", f"--export_base={base}", "--top_k=0"], "--top_k"),
        ([f"--model_dir={run}", f"--model_dir={other}", f"--export_base={base}"], "classes"),
        ([f"--model_dir={run}"], "--export_base"),
    ]
    _check_cases("export.export_saved_model", cases, paths.root)


def test_client_answers_each_mistake_in_one_line(paths):
    image = paths.root / "cat.jpg"
    image.write_bytes(imaging_testutil.image_bytes())
    server = "--server=127.0.0.1:1"  # nothing listens there
    cases = [
        ([server], "image"),
        ([server, paths.missing], str(paths.missing)),
        ([server, paths.a_dir], str(paths.a_dir)),
        ([server, "--timeout=0", image], "--timeout"),
        ([server, "--version=0", image], "--version"),
        ([server, image], "127.0.0.1:1"),
        (["--server=", image], "--server"),
    ]
    _check_cases("export.client", cases, paths.root)


def test_build_tfrecords_answers_each_mistake_in_one_line(paths):
    images = paths.root / "images"
    imaging_testutil.write_image_folder(str(images), {"n01": 2, "n02": 2})
    out = paths.out
    cases = [
        ([f"--input_dir={paths.missing}", f"--output_dir={out}"], str(paths.missing)),
        ([f"--input_dir={paths.a_file}", f"--output_dir={out}"], "--input_dir"),
        ([f"--input_dir={images}", f"--output_dir={paths.a_file}"], "--output_dir"),
        ([f"--input_dir={images}", f"--output_dir={out}", "--num_shards=0"], "--num_shards"),
        ([f"--input_dir={images}", f"--output_dir={out}", "--num_shards=128"], "--num_shards"),
        (
            [f"--input_dir={images}", f"--output_dir={out}", f"--labels_file={paths.a_dir}"],
            "--labels_file",
        ),
        ([f"--input_dir={images}", f"--output_dir={out}", "--split=tset"], "--split"),
        ([f"--input_dir={images}"], "--output_dir"),
    ]
    _check_cases("pipelines.build_tfrecords", cases, paths.root)


def test_experiments_answers_each_mistake_in_one_line(paths):
    out = f"--output_dir={paths.out}"
    cases = {
        "activations": [
            ([out, "--activations=tanh"], "--activations"),
            ([out, "--seeds=x"], "--seeds"),
            ([out, "--epochs=0"], "--epochs"),
            ([f"--output_dir={paths.a_file}", "--quick"], "--output_dir"),
            ([out, f"--data_dir={paths.missing}"], "--data_dir"),
            ([out, f"--data_dir={paths.a_file}"], "--data_dir"),
        ],
        "convergence": [
            ([out, "--models=model_z"], "--models"),
            ([out, "--seeds=x"], "--seeds"),
            ([out, "--he_init=sideways"], "--he_init"),
            ([f"--output_dir={paths.a_file}", "--quick"], "--output_dir"),
            ([out, f"--data_dir={paths.missing}"], "--data_dir"),
        ],
        "signal_propagation": [
            ([out, "--inits=sideways"], "--inits"),
            ([out, "--image_sizes=0"], "--image_sizes"),
            ([out, "--batch_size=0"], "--batch_size"),
            ([out, "--stack_depth=0"], "--stack_depth"),
            ([f"--output_dir={paths.a_file}", "--quick"], "--output_dir"),
        ],
        "report": [
            (["--render_only", f"--work_dir={paths.a_dir}"], "--render_only"),
            (["--render_only", f"--work_dir={paths.missing}"], "--work_dir"),
            ([f"--work_dir={paths.a_file}", "--quick"], "--work_dir"),
            (["--experiment_flag=sideways:--x=1"], "--experiment_flag"),
            ([f"--output={paths.a_dir}", f"--work_dir={paths.out}", "--quick"], "--output"),
            ([f"--figures_dir={paths.a_file}", f"--work_dir={paths.out}", "--quick"], "--figures"),
        ],
    }
    for name, name_cases in cases.items():
        _check_cases(f"delving.experiments.{name}", name_cases, paths.root)


def test_check_paths_names_the_flag_with_its_problem(paths):
    from common import cli, errors

    cases = [
        (dict(files={"labels_file": paths.a_dir}), "--labels_file=.* is a directory, not a file"),
        (dict(files={"labels_file": paths.missing}), "--labels_file=.* does not exist"),
        (dict(dirs={"data_dir": paths.a_file}), "--data_dir=.* is a file, not a directory"),
        (dict(dirs={"data_dir": paths.missing}), "--data_dir=.* does not exist"),
        (dict(output_dirs={"model_dir": paths.a_file}), "--model_dir=.* is a file"),
        (dict(output_files={"output": paths.a_dir}), "--output=.* is a directory"),
    ]
    # Unwritable outputs (root writes anywhere but on a read-only file system).
    locked = paths.root / "locked"
    locked.mkdir(mode=0o555)
    if os.access(locked, os.W_OK):
        locked = "/proc/sys"  # read-only in containers
    if not os.access(locked, os.W_OK):
        cases += [
            (
                dict(output_dirs={"model_dir": f"{locked}/run"}),
                "--model_dir=.* not writable .*denied",
            ),
            (dict(output_dirs={"export_base": locked}), "--export_base=.* not writable: perm"),
            (dict(output_files={"output": f"{locked}/r.md"}), "--output=.* not writable .*denied"),
        ]
    for kwargs, pattern in cases:
        with pytest.raises(errors.DataError, match=pattern):
            cli.check_paths(**kwargs)
    # Not given, not yet there (outputs), or remote: nothing to refuse here.
    cli.check_paths(
        files={"labels_file": None},
        dirs={"data_dir": "gs://bucket/imagenet"},
        output_dirs={"model_dir": paths.missing},
        output_files={"output": paths.missing},
    )


# Root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH obeys file modes like
# any user: mode-000 inputs and mode-555 output parents are then real mistakes.
_NO_DAC_OVERRIDE = (
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
)


def test_permission_denied_is_one_line(paths, data_dir):
    if shutil.which("setpriv") is None:
        pytest.skip("needs util-linux setpriv to drop root's permission override")
    locked = paths.root / "locked"  # mode 000: nothing inside can be read
    locked.mkdir()
    (locked / "labels.tsv").write_text("n00\tclass 0\n")
    read_only = paths.root / "read_only"  # mode 555: nothing can be created inside
    read_only.mkdir()
    unreadable = paths.root / "unreadable.tsv"
    unreadable.write_text("n00\tclass 0\n")
    # A readable run whose config.json is not (read through tf.io.gfile).
    run_dir = export_testutil.write_model_dir(
        paths.root / "closed_run", model="small_14", data_dir=data_dir
    )
    closed_config = os.path.join(run_dir, "config.json")
    os.chmod(locked, 0)
    os.chmod(read_only, 0o555)
    os.chmod(unreadable, 0)
    os.chmod(closed_config, 0)
    try:
        run = f"--model_dir={paths.root / 'run'}"
        _check_cases(
            "delving.train",
            [
                ([f"--data_dir={locked}", run], "permission denied"),
                ([f"--data_dir={data_dir}", f"--model_dir={read_only / 'run'}"], "not writable"),
                ([f"--data_dir={data_dir}", f"--labels_file={unreadable}", run], "permission"),
            ],
            paths.root,
            prefix=_NO_DAC_OVERRIDE,
        )
        _check_cases(
            "delving.evaluate",
            [
                ([f"--model_dir={locked}"], "permission denied"),
                ([f"--model_dir={run_dir}"], "config.json: permission denied"),
            ],
            paths.root,
            prefix=_NO_DAC_OVERRIDE,
        )
        _check_cases(
            "export.export_saved_model",
            [
                (
                    [f"--model_dir={run_dir}", f"--export_base={paths.out}"],
                    "config.json: permission denied",
                )
            ],
            paths.root,
            prefix=_NO_DAC_OVERRIDE,
        )
        _check_cases(
            "pipelines.build_tfrecords",
            [
                ([f"--input_dir={locked}", f"--output_dir={paths.out}"], "permission denied"),
                ([f"--input_dir={paths.a_dir}", f"--output_dir={read_only / 'o'}"], "not writable"),
            ],
            paths.root,
            prefix=_NO_DAC_OVERRIDE,
        )
    finally:
        for path in (locked, read_only, unreadable, closed_config):
            os.chmod(path, 0o755)
