r"""Starts a tf.data service dispatcher or worker for `delving.train --data_service`.

  delving-data-service --role=dispatcher --port=5050
  delving-data-service --role=worker --dispatcher=trainer-host:5050 --port=5051

One dispatcher per cluster; any number of workers, on any machines, started
or stopped at any time. It prints the address it serves and runs until
SIGTERM or Ctrl-C, which stop it cleanly (exit status 0). Trainers pass the
dispatcher's address: `delving.train --data_service=grpc://trainer-host:5050`.

A worker runs the dataset graph the trainer sends it (reading, decoding,
augmentation), so it needs the same TensorFlow version as the trainer and
read access to the trainer's --data_dir at the same path. See
pipelines/data_service.py for the processing mode and its guarantee.
"""

import signal
import socket
import sys
import threading

from absl import app, flags

# No TensorFlow at import: --help and bad flags answer at once.

_ROLE = flags.DEFINE_enum("role", None, ["dispatcher", "worker"], "What to start.")
_PORT = flags.DEFINE_integer(
    "port", 0, "Port to serve on; 0: any free one (printed).", lower_bound=0, upper_bound=65535
)
_DISPATCHER = flags.DEFINE_string(
    "dispatcher", None, "worker: the dispatcher's host:port (or grpc://host:port)."
)
_HOST = flags.DEFINE_string(
    "host",
    None,
    "worker: the name trainers reach this worker by; default: this machine's host name.",
)
_WORKER_TIMEOUT_MS = flags.DEFINE_integer(
    "worker_timeout_ms",
    None,
    "dispatcher: a worker silent this long is given up and its shards' rest lost for the "
    "pass; default: TensorFlow's.",
    lower_bound=1,
)
_HEARTBEAT_INTERVAL_MS = flags.DEFINE_integer(
    "heartbeat_interval_ms",
    None,
    "worker: how often it reports to the dispatcher (keep it below the dispatcher's "
    "--worker_timeout_ms); default: TensorFlow's.",
    lower_bound=1,
)
flags.mark_flag_as_required("role")

PROGRAM = "delving-data-service"
# Flags that only one role reads: given to the other, a mistake worth a line.
_ROLE_FLAGS = {
    "dispatcher": (_WORKER_TIMEOUT_MS,),
    "worker": (_DISPATCHER, _HOST, _HEARTBEAT_INTERVAL_MS),
}


def _check_flags():
    """One line naming the first flag that does not fit --role."""
    from pipelines import data_service

    for role, owned in _ROLE_FLAGS.items():
        for flag in owned:
            if role != _ROLE.value and flag.present:
                raise ValueError(f"--{flag.name} is for --role={role}, not --role={_ROLE.value}")
    if _ROLE.value == "worker":
        if not _DISPATCHER.value:
            raise ValueError("--role=worker needs --dispatcher=host:port")
        address = _DISPATCHER.value
        if "://" not in address:
            address = f"{data_service.SCHEME}://{address}"
        try:
            host, port = data_service.parse_address(address)
        except ValueError:
            raise ValueError(
                f"--dispatcher={_DISPATCHER.value}: expected host:port of the dispatcher"
            ) from None
        return f"{host}:{port}"
    return None


def _serve(dispatcher):
    from pipelines import data_service

    if _ROLE.value == "dispatcher":
        server = data_service.start_dispatcher(
            _PORT.value, worker_timeout_ms=_WORKER_TIMEOUT_MS.value
        )
        port = data_service.bound_port(server)
        print(
            f"{PROGRAM}: dispatcher serving at {data_service.SCHEME}://"
            f"{socket.gethostname()}:{port} (port {port})",
            flush=True,
        )
        return server
    host = _HOST.value or socket.gethostname()
    server = data_service.start_worker(
        dispatcher, port=_PORT.value, host=host, heartbeat_interval_ms=_HEARTBEAT_INTERVAL_MS.value
    )
    print(
        f"{PROGRAM}: worker serving at {host}:{data_service.bound_port(server)} "
        f"for the dispatcher at {dispatcher}",
        flush=True,
    )
    return server


def main(argv):
    from common import cli, quiet_start

    cli.no_arguments(PROGRAM, argv)
    try:
        dispatcher = _check_flags()
    except ValueError as e:
        sys.exit(f"{PROGRAM}: error: {e}")
    stop = threading.Event()
    received = []

    def on_signal(signum, frame):
        received.append(signum)
        stop.set()

    # Before TensorFlow starts its threads, so that the signals come here.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    quiet_start.start()
    import tensorflow as tf

    try:
        server = _serve(dispatcher)
    except tf.errors.OpError as e:  # the port taken, the address unusable
        first = e.message.strip().splitlines()[0] if e.message.strip() else type(e).__name__
        sys.exit(f"{PROGRAM}: error: cannot serve on port {_PORT.value}: {first}")
    while not stop.wait(timeout=1.0):  # a timeout keeps the wait interruptible
        pass
    server.stop()
    print(f"{PROGRAM}: stopped ({signal.Signals(received[0]).name})", flush=True)


if __name__ == "__main__":
    app.run(main)
