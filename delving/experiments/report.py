r"""Runs every reproduction experiment and regenerates docs/REPRODUCTION.md.

Each experiment runs as its own process with the exact command printed in
the report, writes its tables, JSON and figures into `--work_dir`; this
binary then copies the figures to `--figures_dir` and writes the report from
the JSON files: every number in it comes from these runs (the paper's numbers
beside them come from `delving.experiments.common`).

Usage (from the repository root; under an hour on 2 idle CPU cores):
  python -m delving.experiments.report
  python -m delving.experiments.report --quick --output=/tmp/r/REPRODUCTION.md \
      --figures_dir=/tmp/r/figures --work_dir=/tmp/r/work       # seconds, for tests
"""

import datetime
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


def _command(name, work_dir, quick, extra):
    cmd = ["python", "-m", f"delving.experiments.{name}", f"--output_dir={work_dir}/{name}"]
    if quick:
        cmd.append("--quick")
    return cmd + [e.split(":", 1)[1] for e in extra if e.split(":", 1)[0] == name]


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _forward(name, stream, lock):
    """Copies one experiment's output to ours, each line tagged with its name."""
    for line in stream:
        with lock:
            sys.stdout.write(f"[{name}] {line}")
            sys.stdout.flush()


def run_experiments(work_dir, quick, extra, jobs=1):
    """Runs each experiment binary, `jobs` at a time; returns {name: (command, seconds)}.

    Longest first (EXPERIMENTS is in that order), each next one as soon as a
    slot is free. With jobs > 1 each process gets `cores // jobs` intra-op
    threads (TF_NUM_INTRAOP_THREADS): the small nets of the built-in preset
    keep one core busy per process better than two cores in one process.
    """
    env = dict(os.environ)
    if jobs > 1:
        env["TF_NUM_INTRAOP_THREADS"] = str(max(1, _cores() // jobs))
    pending, running, done = list(EXPERIMENTS), {}, {}
    lock = threading.Lock()
    failed = None
    while pending or running:
        while pending and len(running) < jobs and failed is None:
            name = pending.pop(0)
            cmd = _command(name, work_dir, quick, extra)
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
    return {name: done[name] for name in EXPERIMENTS}


def main(argv):
    from common import cli, quiet_start

    program = "delving.experiments.report"
    cli.no_arguments(program, argv)
    quiet_start.start()
    # Before any experiment runs (tens of minutes), not when writing at the end.
    cli.exit_on_bad_paths(
        program,
        dirs={"work_dir": _WORK_DIR.value if _RENDER_ONLY.value else None},
        output_dirs={"work_dir": _WORK_DIR.value, "figures_dir": _FIGURES_DIR.value},
        output_files={"output": _OUTPUT.value},
    )
    from delving.experiments import report_text  # pylint: disable=import-outside-toplevel

    run_file = os.path.join(_WORK_DIR.value, "report_run.json")
    if _RENDER_ONLY.value:
        done, started, total, load, jobs = _recorded_run(run_file)
    else:
        started = datetime.datetime.now(datetime.UTC)
        start, load_start = time.time(), os.getloadavg()[0]
        jobs = _JOBS.value
        done = run_experiments(_WORK_DIR.value, _QUICK.value, _EXTRA.value, jobs)
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
    figures = {}
    for name in EXPERIMENTS:
        src_dir = os.path.join(_WORK_DIR.value, name)
        for file in sorted(os.listdir(src_dir)):
            if file.endswith(".png"):
                shutil.copyfile(os.path.join(src_dir, file), os.path.join(_FIGURES_DIR.value, file))
                figures[file[:-4]] = os.path.relpath(
                    os.path.join(_FIGURES_DIR.value, file),
                    os.path.dirname(os.path.abspath(_OUTPUT.value)),
                )
    versions = {p: _version(p) for p in ("tensorflow", "keras", "numpy", "matplotlib")}
    text = report_text.render(
        work_dir=_WORK_DIR.value,
        runs=done,
        total_seconds=total,
        started=started,
        figures=figures,
        quick=_QUICK.value,
        versions=versions,
        load=load,
        jobs=jobs,
        report_command=shlex.join(["python", "-m", "delving.experiments.report"] + _flag_args()),
    )
    os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
    with open(_OUTPUT.value, "w") as f:
        f.write(text)
    print(
        f"\nWrote {_OUTPUT.value} and {len(figures)} figures in {_FIGURES_DIR.value} "
        f"({total / 60:.1f} min)"
    )


def _recorded_run(run_file):
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
    for name in EXPERIMENTS:
        path = os.path.join(_WORK_DIR.value, name, f"{name}.json")
        if not os.path.exists(path):
            raise SystemExit(f"error: --render_only: no {path}; run the report first")
        with open(path) as f:
            seconds = json.load(f)["seconds"]
        runs[name] = (_command(name, _WORK_DIR.value, _QUICK.value, _EXTRA.value), seconds)
        starts.append(os.path.getmtime(path) - seconds)
    started = datetime.datetime.fromtimestamp(min(starts), datetime.UTC)
    return runs, started, sum(sec for _, sec in runs.values()), None, 1


def _flag_args():
    """The flags this run was given, as they were written."""
    names = {"output", "figures_dir", "work_dir", "quick", "experiment_flag", "jobs"}
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
