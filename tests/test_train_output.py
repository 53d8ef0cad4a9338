"""What delving.train prints: plain lines off a terminal, a NaN stop on a line
of its own on one, and the right epoch when a finished run is run again."""

import os
import pty
import subprocess
import sys

import pytest

from delving.training import config, loop
from tests import train_testutil as util


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return util.tiny_data_dir(tmp_path_factory)


def test_log_lines_without_ansi_and_a_finished_run_announces_no_new_epoch(
    data_dir, tmp_path, capsys
):
    cfg = config.resolve_config(
        **dict(util.TINY_RECIPE, data_dir=data_dir, model_dir=str(tmp_path / "run"))
    )
    loop.train(cfg)
    out = capsys.readouterr().out
    # stdout is not a terminal here: no escape codes or carriage returns,
    # one progress line per epoch.
    assert "\x1b[" not in out and "\r" not in out, repr(out[-2000:])
    assert sum("img/s:" in line for line in out.splitlines()) == cfg.epochs
    loop.train(cfg)  # the same command again: nothing left to do
    out = capsys.readouterr().out
    assert f"all {cfg.epochs} epochs already done" in out, out
    assert f"epoch {cfg.epochs + 1}" not in out.lower()
    # TensorBoard (in requirements.txt) reads the logs the run wrote.
    from tensorboard.backend.event_processing import event_accumulator

    logs = event_accumulator.EventAccumulator(str(tmp_path / "run" / "logs" / "validation"))
    logs.Reload()
    assert {"loss", "top1_err", "top5_err"} <= set(logs.Tags()["scalars"]) | set(
        logs.Tags().get("tensors", [])
    )


def test_nan_stop_starts_its_own_line_on_a_terminal(data_dir, tmp_path):
    args = util.as_flags(
        **dict(
            util.TINY_RECIPE,
            data_dir=data_dir,
            model_dir=tmp_path / "run",
            steps_per_epoch=6,
            learning_rate=1e9,
        )
    )
    leader, follower = pty.openpty()  # stdout and stderr on one terminal
    proc = subprocess.Popen(
        [sys.executable, "-m", "delving.train", *args],
        cwd=util.ROOT,
        env=util.subprocess_env(),
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait() != 0
    text = b"".join(chunks).decode(errors="replace")
    assert "delving.train: error: " in text, text[-2000:]
    before = text[: text.index("delving.train: error: ")]
    assert before.endswith("\n"), repr(text[-600:])
    assert "img/s" in before  # the bar was drawn in place before the stop
