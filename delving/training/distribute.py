"""Creating the `tf.distribute` strategy and asking who writes files.

One training loop (`delving.training.loop`) serves every strategy; this module only
picks the strategy and answers the questions that differ between them: how
many replicas, and which worker is the chief (the only one that writes the
model_dir's final files, logs and CSV).
"""

import json
import os

import tensorflow as tf

from delving.training.config import STRATEGIES


def make_strategy(name: str = "auto", *, tpu: str | None = None) -> tf.distribute.Strategy:
    """The strategy called `name`.

    - `auto`: `MirroredStrategy` over all local GPUs if there is at least one,
      else `OneDeviceStrategy` on the CPU.
    - `one_device`: the first GPU if any, else the CPU.
    - `mirrored`: `MirroredStrategy` over all local GPUs, or over the logical
      CPU devices when there is no GPU (how the tests get two replicas).
    - `multi_worker`: `MultiWorkerMirroredStrategy`; the cluster comes from the
      `TF_CONFIG` environment variable, one process per machine.
    - `tpu`: `TPUStrategy` over `TPUClusterResolver(tpu)` (`tpu` may be empty
      on a TPU VM, a name or a grpc:// address).
    """
    if name == "multi_worker":  # before anything initialises the runtime
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy=multi_worker needs the TF_CONFIG "
                "environment variable (cluster and task)"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if gpus:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")


def expected_replicas(name: str) -> int | None:
    """Replica count of `make_strategy(name)` computed without creating it.

    Creating a strategy initialises the runtime (and for multi_worker starts
    a server), so flag checks use this instead. None where it cannot be known
    before the cluster is up (TPU).
    """
    gpus = tf.config.list_physical_devices("GPU")
    if name in ("auto", "one_device"):
        return max(1, len(gpus)) if name == "auto" else 1
    if name == "mirrored":
        if gpus:
            return len(gpus)
        return len(tf.config.list_logical_devices("CPU"))
    if name == "multi_worker":
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
        workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
        return max(1, workers) * max(1, len(gpus))
    return None


def task_info(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    """(task type, task id) of this process; (None, 0) when not multi-worker."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the process that writes the model_dir's files.

    In a multi-worker cluster that is the `chief` task if the cluster has one,
    else worker 0 (TF's convention); every single-process strategy is chief.
    """
    task_type, task_id = task_info(strategy)
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    resolver = strategy.cluster_resolver
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief
