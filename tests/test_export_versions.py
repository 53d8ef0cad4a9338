"""Version directories: atomic claims between real concurrent processes,
cleanup of killed exports only, remote bases through tf.io.gfile."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import tensorflow as tf

from export import export_lib, serving_files, versions
from tests import export_testutil, train_testutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Writes one version whose three files take a while to write; `hold` makes
# it wait inside the write until that file exists (or for ever).
WRITER = textwrap.dedent(r"""
    import os, random, sys, time
    from export import versions

    base, count, hold = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    def write(directory):
        os.makedirs(directory)
        for name in ("a", "b", "complete"):
            time.sleep(random.uniform(0, 0.02))
            with open(os.path.join(directory, name), "w") as f:
                f.write(name)
        while hold != "-" and not os.path.exists(hold):
            time.sleep(0.05)

    for _ in range(count):
        print(versions.write_version(base, write), flush=True)
""")


def _python(*args, **kwargs):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen(
        [sys.executable, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _export(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "export.export_saved_model", *args],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
    )


def _wait_for(predicate, timeout=train_testutil.HANG_GUARD_S):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


@pytest.fixture
def writer(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return str(script)


def test_concurrent_exports_of_the_binary_get_distinct_versions(tmp_path):
    model_dir = export_testutil.write_model_dir(tmp_path / "run", model="small_14")
    base = tmp_path / "models" / "prelu"
    flags = [f"--model_dir={model_dir}", f"--export_base={base}", "--scales=64", "--flip=false"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    exports = [
        subprocess.Popen(
            [sys.executable, "-m", "export.export_saved_model", *flags],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=train_testutil.HANG_GUARD_S) for p in exports]
    for process, (_, err) in zip(exports, outputs):
        assert process.returncode == 0 and "Traceback" not in err, err[-3000:]
    written = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    assert written == [str(base / n) for n in ("1", "2", "3")]
    assert sorted(os.listdir(base)) == ["1", "2", "3", "models.config"]
    for directory in written:
        assert {"saved_model.pb", "variables", "assets.extra"} <= set(os.listdir(directory))


def test_concurrent_writers_each_publish_a_version_of_their_own(tmp_path, writer):
    """Six processes write four versions each into one base while a
    watcher lists it: 24 numbers, none twice, each complete when first seen."""
    base = tmp_path / "base"
    writers = [_python(writer, str(base), "4", "-") for _ in range(6)]
    seen_partial = set()
    while any(w.poll() is None for w in writers):
        if base.is_dir():
            for name in os.listdir(base):
                if name.isdigit() and not (base / name / "complete").exists():
                    seen_partial.add(name)
        time.sleep(0.002)
    outputs = [w.communicate() for w in writers]
    assert all(w.returncode == 0 for w in writers), [e[-2000:] for _, e in outputs]
    written = [line for out, _ in outputs for line in out.split()]
    assert sorted(written, key=lambda p: int(os.path.basename(p))) == [
        str(base / str(n)) for n in range(1, 25)
    ]
    assert not seen_partial
    assert sorted(os.listdir(base), key=int) == [str(n) for n in range(1, 25)]


def test_a_live_exports_claim_survives_another_export(tmp_path, writer):
    base, release = tmp_path / "base", tmp_path / "release"
    holder = _python(writer, str(base), "1", str(release))
    claim = base / f"{versions.CLAIM_PREFIX}1"
    _wait_for(lambda: (claim / "saved_model" / "complete").exists())
    other = _python(writer, str(base), "1", "-")
    assert other.communicate(timeout=train_testutil.HANG_GUARD_S)[0].strip() == str(base / "2")
    assert claim.is_dir()  # the other export neither removed nor took it
    release.touch()
    assert holder.communicate(timeout=train_testutil.HANG_GUARD_S)[0].strip() == str(base / "1")
    assert sorted(os.listdir(base)) == ["1", "2"]


def test_a_killed_exports_claim_is_removed_by_the_next(tmp_path, writer):
    base = tmp_path / "base"
    holder = _python(writer, str(base), "1", str(tmp_path / "never"))
    claim = base / f"{versions.CLAIM_PREFIX}1"
    _wait_for(lambda: (claim / "saved_model" / "complete").exists())
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert versions.provably_dead(versions.read_owner(str(claim)))
    other = _python(writer, str(base), "1", "-")
    assert other.communicate(timeout=train_testutil.HANG_GUARD_S)[0].strip() == str(base / "1")
    assert sorted(os.listdir(base)) == ["1"]


def test_a_claim_whose_pid_now_runs_another_process_is_removed(tmp_path):
    """Pids are reused: a claim naming a running pid but another start
    time is dead; one made on another host is never judged from here."""
    base = tmp_path / "base"
    for number, changes in ((1, {"start": -1}), (2, {"host": "elsewhere", "pid": 2**22})):
        claim = base / f"{versions.CLAIM_PREFIX}{number}"
        claim.mkdir(parents=True)
        (claim / versions.OWNER_FILE).write_text(json.dumps({**versions.owner(), **changes}))
    assert versions.remove_dead_claims(str(base)) == [f"{versions.CLAIM_PREFIX}1"]
    assert os.listdir(base) == [f"{versions.CLAIM_PREFIX}2"]


def test_a_remote_base_without_a_version_is_refused_in_one_line(tmp_path):
    result = _export("--model_dir=x", "--export_base=gs://bucket/models", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: --export_base=gs://bucket/models: give --version=N for a remote file system: "
        "it has no atomic create, so the next free version cannot be claimed safely against "
        "another export"
    ]
    assert os.listdir(tmp_path) == []  # no local "gs:" folder


def test_an_unreachable_remote_base_is_a_one_line_error(tmp_path):
    model_dir = export_testutil.write_model_dir(tmp_path / "run", model="small_14")
    work = tmp_path / "work"
    work.mkdir()
    result = _export(
        f"--model_dir={model_dir}",
        "--export_base=gs://no-bucket-here/models",
        "--version=1",
        "--scales=64",
        cwd=work,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: --export_base=gs://no-bucket-here/models: ")
    )
    assert os.listdir(work) == []


def test_a_remote_base_is_written_through_gfile(tmp_path, monkeypatch):
    """ram:// is TensorFlow's in-memory file system: every file of the
    version goes through tf.io.gfile, none to a local folder."""
    monkeypatch.chdir(tmp_path)
    model_dir = export_testutil.write_model_dir(tmp_path / "run", model="small_14")
    base = "ram://served/prelu"
    version_dir = export_lib.export_saved_model(
        [model_dir], base, version=3, scales=(64,), flip=False
    )
    assert version_dir == f"{base}/3"
    assert sorted(os.listdir(tmp_path)) == ["run"]
    assert {"saved_model.pb", "variables", "assets.extra"} <= {
        n.rstrip("/") for n in tf.io.gfile.listdir(version_dir)
    }
    assert tf.io.gfile.exists(f"{version_dir}/{serving_files.WARMUP_FILE}")
    with tf.io.gfile.GFile(f"{base}/{serving_files.MODELS_CONFIG}") as f:
        assert f'base_path: "{base}"' in f.read()
    loaded = tf.saved_model.load(version_dir)
    assert {"serving_default", "predict_images"} <= set(loaded.signatures)


def test_next_version(tmp_path):
    assert versions.next_version(str(tmp_path / "missing")) == 1
    for name in ("1", "7", "tmp", ".tmp-9-1", ".claim-12"):
        (tmp_path / name).mkdir()
    (tmp_path / "models.config").write_text("")
    assert versions.next_version(str(tmp_path)) == 8
