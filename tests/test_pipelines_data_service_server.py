"""pipelines.data_service_server (`delving-data-service`): real processes on
localhost, stopped by real signals."""

import signal

import pytest

from tests import train_testutil

PROGRAM = "pipelines.data_service_server"


def _start(*args):
    """The started process and the line it printed first."""
    proc = train_testutil.start(PROGRAM, list(args))
    return proc, proc.stdout.readline()


@pytest.fixture
def dispatcher():
    proc, line = _start("--role=dispatcher")
    yield proc, line
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=train_testutil.HANG_GUARD_S)


def _port(line):
    return int(line.rsplit("(port ", 1)[1].rstrip(")\n"))


def test_dispatcher_prints_the_address_it_serves(dispatcher):
    _, line = dispatcher
    assert line.startswith("delving-data-service: dispatcher serving at grpc://"), line
    assert line.split("grpc://", 1)[1].split()[0].endswith(f":{_port(line)}")


def test_worker_prints_the_address_it_serves(dispatcher):
    worker, line = _start(
        "--role=worker", f"--dispatcher=localhost:{_port(dispatcher[1])}", "--host=localhost"
    )
    try:
        assert line.startswith("delving-data-service: worker serving at localhost:"), line
        assert f"for the dispatcher at localhost:{_port(dispatcher[1])}" in line
    finally:
        worker.kill()
        worker.communicate(timeout=train_testutil.HANG_GUARD_S)


def test_sigterm_stops_the_dispatcher_cleanly(dispatcher):
    proc, _ = dispatcher
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=train_testutil.HANG_GUARD_S)
    assert proc.returncode == 0, err[-2000:]
    assert out.strip() == "delving-data-service: stopped (SIGTERM)"
    assert "Traceback" not in err


def test_sigterm_stops_a_worker_cleanly(dispatcher):
    worker, _ = _start(
        "--role=worker", f"--dispatcher=localhost:{_port(dispatcher[1])}", "--host=localhost"
    )
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=train_testutil.HANG_GUARD_S)
    assert worker.returncode == 0, err[-2000:]
    assert out.strip() == "delving-data-service: stopped (SIGTERM)"
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "args,line",
    [
        ([], "--role"),
        (["--role=worker", "--dispatcher=grpc://h"], "--dispatcher=grpc://h: expected host:port"),
        (["--role=worker", "--dispatcher=h:1", "--worker_timeout_ms=5"], "for --role=dispatcher"),
        (["--role=dispatcher", "--host=h"], "--host is for --role=worker"),
        (["--role=dispatcher", "--port=70000"], "--port"),
        (["--role=dispatcher", "extra"], "unexpected arguments: extra"),
    ],
)
def test_bad_flags_fail_in_one_line(args, line):
    code, out, err = train_testutil.run(PROGRAM, args)
    errors = train_testutil.error_lines(err)
    assert code != 0 and out == ""
    assert len(errors) == 1 and line in errors[0], errors
