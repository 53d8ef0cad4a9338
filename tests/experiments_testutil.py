"""Shared by the experiments tests: the report in --quick mode, run once per
pytest session, and readers of what it wrote.

`quick_report` runs `python -m delving.experiments.report --quick`, which
runs the three experiment binaries as subprocesses on a tiny built-in
dataset; every experiments test file reads that one run (minutes) from the
session's base temporary directory.
"""

import json
import os
import shutil
import subprocess
import sys

from tests import train_testutil

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_module(args, **kwargs):
    """`python -m <args>` in the repository root; the CompletedProcess."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=train_testutil.ROOT)
    return subprocess.run(
        [sys.executable, "-m"] + args,
        cwd=train_testutil.ROOT,
        env=env,
        capture_output=True,
        text=True,
        **kwargs,
    )


def quick_report(tmp_path_factory):
    """{"report", "figures", "work": paths, "stdout": the report's output}."""
    out = tmp_path_factory.getbasetemp() / "quick_report"
    paths = {"report": out / "REPRODUCTION.md", "figures": out / "figures", "work": out / "work"}
    done = out / "stdout.txt"  # written last: a failed run is run again
    if not done.exists():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        proc = run_module(
            [
                "delving.experiments.report",
                "--quick",
                f"--output={paths['report']}",
                f"--figures_dir={paths['figures']}",
                f"--work_dir={paths['work']}",
            ],
            timeout=train_testutil.HANG_GUARD_S,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        done.write_text(proc.stdout)
    paths["stdout"] = done.read_text()
    return paths


def results(paths, name):
    """The results JSON experiment `name` wrote under the report's work dir."""
    with open(paths["work"] / name / f"{name}.json") as f:
        return json.load(f)


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC and os.path.getsize(path) > 5000


def assert_bad_flag_fails_in_one_line(args):
    """`python -m <module> <flag>` fails naming the flag, without a traceback."""
    proc = run_module(args, timeout=train_testutil.HANG_GUARD_S)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert args[1].split("=")[0] in proc.stderr
