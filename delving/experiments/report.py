r"""Runs the reproduction experiments; writes docs/REPRODUCTION.md or REPRODUCTION_PHOTOS.md.

Without `--data_dir` on the built-in shapes (docs/REPRODUCTION.md); given
`--data_dir`, on real photos (docs/REPRODUCTION_PHOTOS.md).

Each experiment runs as its own process with the exact command printed in
the report, writes its tables, JSON and figures into `--work_dir`; this
binary then copies the figures to `--figures_dir` and writes the report from
the JSON files: every number in it comes from these runs (the paper's numbers
beside them come from `delving.experiments.common`).

The photo report is its own file, not a section of the shapes one: the two
run hours apart on different data, and each is regenerated (or
`--render_only`-ed) without the other's runs. It runs Table 2 (and Table 1
from its PReLU runs) and, with `--convergence`, Fig. 2/3; signal propagation
does not depend on the data and stays in the shapes report. Its figures go
to `--figures_dir` as `photos_*.png`.

Usage (from the repository root):
  python -m delving.experiments.report          # shapes: under an hour on 2 idle cores
  python -m delving.experiments.report --quick --output=/tmp/r/REPRODUCTION.md \
      --figures_dir=/tmp/r/figures --work_dir=/tmp/r/work       # seconds, for tests
  python -m delving.experiments.report --data_dir=$DATA_DIR     # photos: 2-2.5 h, see PHOTO_EPOCHS
"""

import datetime
import glob
import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time

from absl import app, flags

# The photo report's plan, from runs on Imagenette records (9,469 train /
# 3,925 val images, batch 64, 147 steps an epoch), in CPU seconds (user +
# sys) on a 2-core Xeon @ 2.8 GHz: small_14 (x0.25) 16-18 s per epoch at 64-px
# crops, 35 s at the photos preset's 96 px; about 60 s per run for the start,
# decoding the split and its 10-view test. Table 2 = 4 activations x 5 seeds:
# at 96 px and 20 epochs over 4 h, so its runs take 64-px crops (the ratio of
# the activations compare, not the best error, is what Table 2 is about):
# 20 x (60 s + 20 x 17 s) = 2.2 h of CPU, under 2 h on two cores. Fig. 2/3 =
# 2 inits x 2 seeds x (small_30 + model B) x 15 epochs: small_30 (x0.25) about
# 29 s and model B (x0.125) about 40 s per epoch at 64 px (the convergence runs
# keep the preset's 96 px: about twice that), 1.2 h or more, hence
# off by default (--convergence).
PHOTO_EPOCHS = 20
PHOTO_IMAGE_SIZE = 64
PHOTO_CONVERGENCE_EPOCHS = 15
PHOTO_CONVERGENCE_DEFAULT = False
#: Flags each experiment gets in the photo report (before --experiment_flag's).
PHOTO_FLAGS = {
    "activations": (f"--epochs={PHOTO_EPOCHS}", f"--image_size={PHOTO_IMAGE_SIZE}"),
    "convergence": (f"--epochs={PHOTO_CONVERGENCE_EPOCHS}", "--seeds=0,1"),
}
#: The same with --quick: every activation and two seeds, to fill every column.
PHOTO_QUICK_FLAGS = {
    "activations": ("--seeds=0,1", "--activations=relu,lrelu,prelu_shared,prelu"),
    "convergence": (),
}
PHOTO_DEFAULTS = {"output": "docs/REPRODUCTION_PHOTOS.md", "work_dir": "runs/reproduction_photos"}
PHOTO_FIGURE_PREFIX = "photos_"

_OUTPUT = flags.DEFINE_string("output", "docs/REPRODUCTION.md", "The report to (re)write.")
_FIGURES_DIR = flags.DEFINE_string("figures_dir", "docs/figures", "Where the report's PNGs go.")
_WORK_DIR = flags.DEFINE_string(
    "work_dir", "runs/reproduction", "Output directories of the experiments (runs, JSON, tables)."
)
_QUICK = flags.DEFINE_bool("quick", False, "Run every experiment with --quick (for tests).")
_JOBS = flags.DEFINE_integer(
    "jobs",
    2,
    "Experiments run at the same time, each on cores/jobs intra-op threads.",
    lower_bound=1,
)
_RENDER_ONLY = flags.DEFINE_bool(
    "render_only",
    False,
    "Run nothing: rewrite the report from the runs already in "
    "--work_dir (after changing the report's text).",
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir",
    None,
    "Real-photo TFRecords written by our builder (train-*, validation-*, labels.txt): "
    "write the photo report instead (default --output docs/REPRODUCTION_PHOTOS.md, "
    "--work_dir runs/reproduction_photos, figures named photos_*.png).",
)
_CONVERGENCE = flags.DEFINE_bool(
    "convergence",
    PHOTO_CONVERGENCE_DEFAULT,
    "With --data_dir: also run Fig. 2/3 (model B and the 30-layer net, 2 seeds per init) "
    "on the photos; see PHOTO_FLAGS in this binary for the time each part takes.",
)
_SHAPES_WORK_DIR = flags.DEFINE_string(
    "shapes_work_dir",
    "runs/reproduction",
    "With --data_dir: the shapes report's --work_dir, whose learned slopes the photo "
    "report's Table 1 shows beside its own when they are there.",
)
_SHAPES_REPORT = flags.DEFINE_string(
    "shapes_report",
    "docs/REPRODUCTION.md",
    "With --data_dir, when --shapes_work_dir has no results: the written shapes report "
    "whose Table 1 slopes the photo report shows instead.",
)
_EXTRA = flags.DEFINE_multi_string(
    "experiment_flag",
    [],
    "EXPERIMENT:--flag=value passed to one experiment, e.g. "
    "'activations:--seeds=0,1,2,3'. Repeatable.",
)

# Longest first: with --jobs > 1 the order is the schedule.
EXPERIMENTS = ("convergence", "activations", "signal_propagation")

flags.register_validator(
    "experiment_flag",
    lambda values: all(":--" in v and v.split(":", 1)[0] in EXPERIMENTS for v in values),
    f"expected EXPERIMENT:--flag=value with EXPERIMENT one of {', '.join(EXPERIMENTS)}",
)


def _command(name, work_dir, quick, extra, data_dir=None):
    cmd = ["python", "-m", f"delving.experiments.{name}", f"--output_dir={work_dir}/{name}"]
    if quick:
        cmd.append("--quick")
    if data_dir:
        cmd.append(f"--data_dir={data_dir}")
        cmd += (PHOTO_QUICK_FLAGS if quick else PHOTO_FLAGS)[name]
    return cmd + [e.split(":", 1)[1] for e in extra if e.split(":", 1)[0] == name]


def experiments(data_dir, convergence):
    """The experiments this report runs, longest first."""
    if not data_dir:
        return EXPERIMENTS
    return ("convergence", "activations") if convergence else ("activations",)


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _forward(name, stream, lock):
    """Copies one experiment's output to ours, each line tagged with its name."""
    for line in stream:
        with lock:
            sys.stdout.write(f"[{name}] {line}")
            sys.stdout.flush()


def run_experiments(work_dir, quick, extra, jobs=1, names=EXPERIMENTS, data_dir=None):
    """Runs each experiment binary, `jobs` at a time; returns {name: (command, seconds)}.

    Longest first (`names` is in that order), each next one as soon as a
    slot is free. With more than one at a time each process gets
    `cores // at a time` intra-op threads (TF_NUM_INTRAOP_THREADS): the small
    nets of the built-in preset keep one core busy per process better than
    two cores in one process.
    """
    env = dict(os.environ)
    jobs = min(jobs, len(names))
    if jobs > 1:
        env["TF_NUM_INTRAOP_THREADS"] = str(max(1, _cores() // jobs))
    pending, running, done = list(names), {}, {}
    lock = threading.Lock()
    failed = None
    while pending or running:
        while pending and len(running) < jobs and failed is None:
            name = pending.pop(0)
            cmd = _command(name, work_dir, quick, extra, data_dir)
            with lock:
                print(f"\n=== {shlex.join(cmd)}", flush=True)
            proc = subprocess.Popen(
                [sys.executable] + cmd[1:],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            reader = threading.Thread(target=_forward, args=(name, proc.stdout, lock), daemon=True)
            reader.start()
            running[name] = (proc, reader, cmd, time.time())
        if failed is not None and not running:
            break
        time.sleep(0.2)
        for name, (proc, reader, cmd, start) in list(running.items()):
            if proc.poll() is None:
                continue
            reader.join()
            del running[name]
            seconds = time.time() - start
            if proc.returncode:
                failed = failed or f"error: {shlex.join(cmd)} exited with status {proc.returncode}"
                for other, *_ in running.values():  # the report cannot be written
                    other.terminate()
                continue
            done[name] = (cmd, seconds)
            with lock:
                print(f"=== {name}: done in {seconds / 60:.1f} min", flush=True)
    if failed:
        raise SystemExit(failed)
    return {name: done[name] for name in names}


def main(argv):
    from common import cli, quiet_start

    program = "delving.experiments.report"
    cli.no_arguments(program, argv)
    quiet_start.start()
    data_dir = _DATA_DIR.value
    output, work_dir = _OUTPUT.value, _WORK_DIR.value
    if data_dir:  # the photo report's own files unless told otherwise
        output = output if flags.FLAGS["output"].present else PHOTO_DEFAULTS["output"]
        work_dir = work_dir if flags.FLAGS["work_dir"].present else PHOTO_DEFAULTS["work_dir"]
    # Before any experiment runs (tens of minutes), not when writing at the end.
    cli.exit_on_bad_paths(
        program,
        dirs={"work_dir": work_dir if _RENDER_ONLY.value else None, "data_dir": data_dir},
        output_dirs={"work_dir": work_dir, "figures_dir": _FIGURES_DIR.value},
        output_files={"output": output},
    )
    if data_dir:
        missing = [
            p for p in ("train-*", "validation-*") if not glob.glob(os.path.join(data_dir, p))
        ]
        if missing:  # before hours of runs, and before any output is written
            raise SystemExit(
                f"{program}: error: --data_dir={data_dir} has no {' or '.join(missing)} "
                "TFRecord shards (write them with python -m pipelines.build_tfrecords)"
            )
    names = experiments(data_dir, _CONVERGENCE.value)
    run_file = os.path.join(work_dir, "report_run.json")
    if _RENDER_ONLY.value:
        done, started, total, load, jobs = _recorded_run(run_file, work_dir, names)
    else:
        started = datetime.datetime.now(datetime.UTC)
        start, load_start = time.time(), os.getloadavg()[0]
        jobs = min(_JOBS.value, len(names))
        done = run_experiments(work_dir, _QUICK.value, _EXTRA.value, jobs, names, data_dir)
        total, load = time.time() - start, (load_start, os.getloadavg()[0])
        with open(run_file, "w") as f:
            json.dump(
                {
                    "runs": done,
                    "started": started.isoformat(),
                    "seconds": total,
                    "load": load,
                    "jobs": jobs,
                },
                f,
                indent=1,
            )
    os.makedirs(_FIGURES_DIR.value, exist_ok=True)
    prefix = PHOTO_FIGURE_PREFIX if data_dir else ""
    figures = {}
    for name in names:
        src_dir = os.path.join(work_dir, name)
        for file in sorted(os.listdir(src_dir)):
            if file.endswith(".png"):
                dest = os.path.join(_FIGURES_DIR.value, prefix + file)
                shutil.copyfile(os.path.join(src_dir, file), dest)
                figures[file[:-4]] = _link(dest, output)
    versions = {p: _version(p) for p in ("tensorflow", "keras", "numpy", "matplotlib")}
    command = shlex.join(["python", "-m", "delving.experiments.report"] + _flag_args())
    context = dict(
        work_dir=work_dir,
        runs=done,
        total_seconds=total,
        started=started,
        quick=_QUICK.value,
        versions=versions,
        load=load,
        jobs=jobs,
        report_command=command,
    )
    if data_dir:
        # pylint: disable-next=import-outside-toplevel
        from delving.experiments import common, report_photos

        for name, fig in report_photos.figures(work_dir):
            dest = os.path.join(_FIGURES_DIR.value, f"{prefix}{name}.png")
            common.save_figure(fig, dest)
            figures[name] = _link(dest, output)
        text = report_photos.render(
            data_dir=data_dir,
            figures=figures,
            shapes_work_dir=_SHAPES_WORK_DIR.value,
            shapes_report=_SHAPES_REPORT.value,
            **context,
        )
    else:
        from delving.experiments import report_text  # pylint: disable=import-outside-toplevel

        text = report_text.render(figures=figures, **context)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as f:
        f.write(text)
    print(
        f"\nWrote {output} and {len(figures)} figures in {_FIGURES_DIR.value} "
        f"({total / 60:.1f} min)"
    )


def _link(path, output):
    """`path` as the report at `output` links it."""
    return os.path.relpath(path, os.path.dirname(os.path.abspath(output)))


def _recorded_run(run_file, work_dir, names):
    """(runs, started, total seconds, load, jobs) of the run that filled --work_dir.

    From `report_run.json`; for a work_dir written before that file existed,
    from each experiment's own JSON (its `seconds`, the start from the file
    times) with the load average unknown.
    """
    if os.path.exists(run_file):
        with open(run_file) as f:
            rec = json.load(f)
        runs = {name: (cmd, sec) for name, (cmd, sec) in rec["runs"].items()}
        return (
            runs,
            datetime.datetime.fromisoformat(rec["started"]),
            rec["seconds"],
            tuple(rec["load"]),
            rec.get("jobs", 1),
        )
    runs, starts = {}, []
    for name in names:
        path = os.path.join(work_dir, name, f"{name}.json")
        if not os.path.exists(path):
            raise SystemExit(f"error: --render_only: no {path}; run the report first")
        with open(path) as f:
            seconds = json.load(f)["seconds"]
        runs[name] = (
            _command(name, work_dir, _QUICK.value, _EXTRA.value, _DATA_DIR.value),
            seconds,
        )
        starts.append(os.path.getmtime(path) - seconds)
    started = datetime.datetime.fromtimestamp(min(starts), datetime.UTC)
    return runs, started, sum(sec for _, sec in runs.values()), None, 1


def _flag_args():
    """The flags this run was given, as they were written."""
    names = {
        "output",
        "figures_dir",
        "work_dir",
        "quick",
        "experiment_flag",
        "jobs",
        "data_dir",
        "convergence",
        "shapes_work_dir",
        "shapes_report",
    }
    return [
        a
        for a in sys.argv[1:]
        if a.lstrip("-").split("=")[0] in names or a.lstrip("-") in {f"no{n}" for n in names}
    ]


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    app.run(main)
