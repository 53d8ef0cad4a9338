"""The export binary (export.export_saved_model): versions, leftovers of killed
exports, and user errors in one line."""

import json
import os
import subprocess
import sys

from export import versions
from tests import export_testutil, train_testutil


def _export(*args):
    """Runs the export binary: (exit code, stdout, stderr)."""
    return train_testutil.run("export.export_saved_model", list(args))


def test_writes_the_next_version(tmp_path):
    model_dir = export_testutil.write_model_dir(tmp_path / "run", model="small_14")
    base = tmp_path / "models" / "prelu"
    (base / "3").mkdir(parents=True)  # an older version already served
    # What a killed export leaves (its pid is gone), and a live one's.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], stdout=-1)
    killed = base / f"{versions.CLAIM_PREFIX}2"
    live = base / f"{versions.CLAIM_PREFIX}9"
    for claim, pid in ((killed, int(dead.stdout)), (live, os.getpid())):
        (claim / "saved_model" / "variables").mkdir(parents=True)
        owner = dict(versions.owner(), pid=pid, start=versions.start_time(pid))
        (claim / versions.OWNER_FILE).write_text(json.dumps(owner))
    code, out, err = _export(
        f"--model_dir={model_dir}",
        f"--export_base={base}",
        "--scales=80",
        "--flip=false",
        "--top_k=2",
    )
    assert code == 0, err[-3000:]
    assert out.strip().splitlines()[-1] == str(base / "4")
    assert sorted(os.listdir(base)) == [live.name, "3", "4", "models.config"]
    assert {"saved_model.pb", "variables", "assets.extra"} <= set(os.listdir(base / "4"))


def test_a_model_dir_without_a_run_is_a_one_line_error(tmp_path):
    code, out, err = _export(f"--model_dir={tmp_path}", f"--export_base={tmp_path / 'out'}")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"error: {tmp_path}: missing config.json, classes.tsv, model.keras "
        f"(is it the --model_dir of a finished training run?)"
    )


def test_a_bad_scale_is_a_one_line_error():
    code, out, err = _export("--model_dir=x", "--export_base=y", "--scales=256,big")
    assert code == 1 and "--scales: expected integers >= 1" in err
    assert "Traceback" not in err
