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
# The written shapes report, whose Table 1 the photo report shows beside its own.
SHAPES_REPORT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "REPRODUCTION.md"
)


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
    with train_testutil.once_per_run(tmp_path_factory, "quick_report") as out:
        return _quick_report(out)


def _quick_report(out):
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


def write_photo_folders(root, per_class=(6, 3), size=72, seed=0):
    """`root/{train,validation}/<synset>/*.JPEG`: crops of a real photograph,
    one region of it per class (matplotlib's sample photo: no download)."""
    import matplotlib.cbook  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel

    photo = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    width, height = photo.size
    # Face, background beside it, uniform below: three distinct-looking regions.
    regions = {
        "n00000001": (150, 60, 400, 310),
        "n00000002": (0, 0, 150, 250),
        "n00000003": (100, 400, width, height),
    }
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "validation"), per_class):
        for synset, (left, top, right, bottom) in regions.items():
            os.makedirs(os.path.join(root, split, synset), exist_ok=True)
            for i in range(count):
                side = int(
                    rng.integers(
                        min(right - left, bottom - top) // 2, 1 + min(right - left, bottom - top)
                    )
                )
                x = int(rng.integers(left, right - side + 1))
                y = int(rng.integers(top, bottom - side + 1))
                crop = photo.crop((x, y, x + side, y + side)).resize((size, size))
                crop.save(os.path.join(root, split, synset, f"{i}.JPEG"), quality=90)
    return root


def photo_records(out_dir):
    """Our builder's TFRecords of `write_photo_folders`: train, validation, labels.txt."""
    from pipelines import tfrecord_builder  # pylint: disable=import-outside-toplevel

    raw = write_photo_folders(os.path.join(out_dir, "raw"))
    records = os.path.join(out_dir, "records")
    for split in ("train", "validation"):
        tfrecord_builder.build(raw, records, split, num_workers=1, progress=False)
    return records


def quick_photo_report(tmp_path_factory):
    """The photo report, --quick, on `photo_records`: {"report", "figures", "work",
    "data", "stdout"}; run once per pytest session."""
    with train_testutil.once_per_run(tmp_path_factory, "quick_photo_report") as out:
        return _quick_photo_report(out)


def _quick_photo_report(out):
    paths = {
        "report": out / "REPRODUCTION_PHOTOS.md",
        "figures": out / "figures",
        "work": out / "work",
        "data": out / "data" / "records",
    }
    done = out / "stdout.txt"  # written last: a failed run is run again
    if not done.exists():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        photo_records(str(out / "data"))
        proc = run_module(
            [
                "delving.experiments.report",
                "--quick",
                f"--data_dir={paths['data']}",
                f"--output={paths['report']}",
                f"--figures_dir={paths['figures']}",
                f"--work_dir={paths['work']}",
                f"--shapes_work_dir={out / 'no_shapes'}",
                f"--shapes_report={SHAPES_REPORT}",
            ],
            timeout=train_testutil.HANG_GUARD_S,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        done.write_text(proc.stdout)
    paths["stdout"] = done.read_text()
    return paths
