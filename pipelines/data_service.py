"""The training input made by a tf.data service: decoded and augmented elsewhere.

A dispatcher (`start_dispatcher`) hands out work; workers (`start_worker`,
any number, added or lost at any time) run the dataset graph a trainer sends
them and stream its batches back. `distribute` turns a reader's dataset into
one that is processed there.

Processing mode: `ShardingPolicy.DYNAMIC` ("distributed_epoch"). The
dispatcher runs the dataset's source, the list of TFRecord shards, and hands
each shard of a pass to one worker; the workers run the rest (reading,
decoding, augmentation, batching). TF's guarantee (the module docstring of
`tf.data.experimental.service`, "Dynamic Sharding"): "If no workers are
restarted during training, dynamic sharding mode will visit every example
exactly once. If workers are restarted during training, the splits they were
processing will not be fully visited" -- at most once. A lost worker costs
the rest of its shards' images for that pass, never a duplicate, and the
remaining workers go on. The alternatives were rejected: `OFF` makes every
worker produce the whole split (each image once per worker per pass), and
the static `FILE`/`DATA` policies need a fixed list of workers and a worker
on every trainer host.

The graph sent is built once, by the trainer, so anything random in it is
the same on every worker unless drawn where it runs: the readers draw each
image's augmentation seed on the worker when `InputConfig.seed_per_worker`
is set (`pipelines.bad_input`), which `delving.training.inputs` sets here.

A worker runs the graph with its own TensorFlow: it needs the same
TensorFlow version as the trainer, this package to start it
(`delving-data-service`), and read access to the records at the trainer's
path.

Example:
  >>> dispatcher = start_dispatcher(5050)
  >>> worker = start_worker("localhost:5050", port=5051, host="localhost")
  >>> ds = distribute(reader_dataset, "grpc://localhost:5050", job_name="run1")
"""

import re

SCHEME = "grpc"
# grpc://host:port; host a name, an IPv4 address or a bracketed IPv6 one.
_ADDRESS = re.compile(r"^grpc://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


def parse_address(value: str) -> tuple[str, int]:
    """`grpc://host:port` -> `(host, port)`.

    Raises:
      ValueError: one line saying what the address should look like.
    """
    match = _ADDRESS.match(value or "")
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"expected {SCHEME}://host:port (the dispatcher), got {value!r}")
    return match.group(1), int(match.group(2))


def is_address(value: str) -> bool:
    """Whether `value` is a dispatcher address `parse_address` accepts."""
    try:
        parse_address(value)
    except ValueError:
        return False
    return True


def distribute(dataset, address, *, job_name):
    """`dataset` processed by the tf.data service at `address`
    (`grpc://host:port`), in the mode above.

    Every consumer passing the same `job_name` (and the same dataset) reads
    from one job: the trainer replicas of one run share its batches, first
    come first served, instead of each getting the whole split.
    """
    import tensorflow as tf

    service = tf.data.experimental.service
    parse_address(address)
    return dataset.apply(
        service.distribute(
            processing_mode=service.ShardingPolicy.DYNAMIC,
            service=address,
            job_name=job_name,
        )
    ).prefetch(tf.data.AUTOTUNE)


def start_dispatcher(port, *, worker_timeout_ms=None):
    """A started `DispatchServer` on `port` (0: any free port).

    Args:
      worker_timeout_ms: how long a worker may miss heartbeats before the
        dispatcher gives its shards up and tells the trainers; None: TF's
        default.
    """
    import tensorflow as tf

    service = tf.data.experimental.service
    return service.DispatchServer(
        service.DispatcherConfig(port=port, worker_timeout_ms=worker_timeout_ms)
    )


def start_worker(dispatcher, *, port, host, heartbeat_interval_ms=None):
    """A started `WorkerServer` on `port` (0: any free port) that registers
    with `dispatcher` (`host:port`) and tells trainers to reach it at `host`."""
    import tensorflow as tf

    service = tf.data.experimental.service
    return service.WorkerServer(
        service.WorkerConfig(
            dispatcher_address=dispatcher,
            worker_address=f"{host}:%port%",
            port=port,
            heartbeat_interval_ms=heartbeat_interval_ms,
        )
    )


def bound_port(server) -> int:
    """The port a started dispatcher or worker listens on (its own port 0: the
    one it picked)."""
    # Neither server type states its port publicly but through `target` (the
    # dispatcher only); the worker's lives on its C++ server object.
    return int(server._server.bound_port())
