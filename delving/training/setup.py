"""Everything a run needs before its first step, and nothing written yet.

`prepare` turns a resolved `TrainConfig` into a `Prepared` run: the
`tf.distribute` strategy (and who is chief), the data source with the epoch
length and the class list, the decision on XLA, and a fresh `TrainState`
(model, optimizer, schedule, counters) that the run directory's checkpoint
restores into next. Every check that can refuse the command happens here, so
a refused command leaves the model_dir as it was.
"""

import contextlib
import dataclasses
import json
import os
import socket
from typing import NamedTuple

import keras
import tensorflow as tf

from common import errors, memory
from delving.models import from_config, stats
from delving.training import config as config_lib
from delving.training import inputs, run_dir
from delving.training import optimizer as optimizer_lib
from pipelines import sources

GIB = 2**30


class BatchSizeError(ValueError):
    """The global batch does not split evenly over the replicas, or its
    activations cannot fit in memory."""


class EpochSums(NamedTuple):
    """The current epoch's running sums, checkpointed as a float64 vector in
    this order, so that a resumed epoch's logged means cover all its steps."""

    loss: float  # sum of loss * images
    top1_hits: float
    top5_hits: float
    images: float

    def add(self, rows):
        """These sums plus the train step's rows (loss, top-1, top-5, images)."""
        loss, top1, top5, images = rows.T
        return EpochSums(
            self.loss + (loss * images).sum(),
            self.top1_hits + top1.sum(),
            self.top5_hits + top5.sum(),
            self.images + images.sum(),
        )

    def means(self):
        """(mean loss, top-1 error, top-5 error); NaN before the first image."""
        if not self.images:
            return (float("nan"),) * 3
        n = self.images
        return self.loss / n, 1 - self.top1_hits / n, 1 - self.top5_hits / n


@dataclasses.dataclass
class TrainState:
    """What the loop updates and the checkpoints hold."""

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    schedule: optimizer_lib.LearningRateSchedule
    epoch_rate: tf.Variable  # the schedule's rate this epoch, before the warm-up ramp
    step: tf.Variable  # global step
    epoch: tf.Variable  # epochs finished
    epoch_step: tf.Variable  # steps done in the current epoch
    epoch_sums: tf.Variable  # `EpochSums` of the current epoch


@dataclasses.dataclass
class Prepared:
    """A run ready to open its directory and train."""

    cfg: config_lib.TrainConfig  # data_dir, num_classes and steps_per_epoch filled in
    strategy: tf.distribute.Strategy
    chief: bool  # writes the model_dir's files
    task: tuple  # (task type, task id); (None, 0) when not multi-worker
    source: sources.DataSource
    classes: list
    jit_compile: bool
    state: TrainState


def prepare(cfg, strategy=None) -> Prepared:
    """Checks and builds everything before the first step; writes nothing.

    Raises:
      BatchSizeError, run_dir.ConfigMismatch, common.errors.DataError.
    """
    if strategy is None:
        # Before creating it: a multi-worker strategy starts its server.
        check_batch_size(cfg, expected_replicas(cfg.strategy))
        strategy = make_strategy(cfg.strategy, tpu=cfg.tpu)
    check_batch_size(cfg, strategy.num_replicas_in_sync)
    source = inputs.source_from_config(cfg)
    cfg = dataclasses.replace(cfg, data_dir=source.data_dir)
    # The class count first: the readers check labels against it, and
    # config.json (compared on resume) holds the resolved count.
    classes = source.class_list(cfg.labels_file)
    if cfg.num_classes is None:
        cfg = dataclasses.replace(cfg, num_classes=len(classes))
        source = dataclasses.replace(source, num_classes=len(classes))
    elif len(classes) != cfg.num_classes:  # beyond it: NaN losses; below: a wasted run
        raise errors.DataError(
            f"--num_classes={cfg.num_classes} but {cfg.dataset_name} has {len(classes)} "
            f"classes; pass --num_classes={len(classes)}"
        )
    if cfg.steps_per_epoch is None:
        steps = config_lib.steps_for(source.num_examples("train"), cfg.batch_size)
        cfg = dataclasses.replace(cfg, steps_per_epoch=steps)
    run_dir.check_compatible(cfg)
    _check_batch_fits(cfg, strategy)  # before building: model A takes minutes and GBs
    state = _create_state(cfg, strategy)
    return Prepared(
        cfg=cfg,
        strategy=strategy,
        chief=is_chief(strategy),
        task=task_info(strategy),
        source=source,
        classes=classes,
        jit_compile=uses_xla(cfg, strategy),
        state=state,
    )


def _create_state(cfg, strategy) -> TrainState:
    """A fresh model, optimizer, schedule and counters (the restore comes later)."""
    keras.utils.set_random_seed(cfg.seed)
    with strategy.scope():
        model = from_config.build(cfg, seed=cfg.seed)
        optimizer, schedule, epoch_rate = optimizer_lib.for_config(cfg, model, cfg.steps_per_epoch)
    counters = {
        name: tf.Variable(0, dtype=tf.int64, trainable=False, name=name)
        for name in ("step", "epoch", "epoch_step")
    }
    sums = tf.Variable(tf.zeros(len(EpochSums._fields), tf.float64), trainable=False)
    return TrainState(model, optimizer, schedule, epoch_rate, epoch_sums=sums, **counters)


# ------------------------------------------------------------------ strategy
def make_strategy(name: str = "auto", *, tpu: str | None = None) -> tf.distribute.Strategy:
    """The strategy called `name`.

    - `auto`: `MirroredStrategy` over all local GPUs if there is one, else the CPU.
    - `one_device`: the first GPU if any, else the CPU.
    - `mirrored`: all local GPUs, or the logical CPU devices when there is no
      GPU (how the tests get two replicas).
    - `multi_worker`: `MultiWorkerMirroredStrategy`, the cluster from `TF_CONFIG`.
    - `tpu`: `TPUStrategy` over `TPUClusterResolver(tpu)`.
    """
    if name == "multi_worker":  # before anything initialises the runtime
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy=multi_worker needs the TF_CONFIG environment variable "
                "(cluster and task)"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return (
            tf.distribute.MirroredStrategy() if gpus else tf.distribute.OneDeviceStrategy("/cpu:0")
        )
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
    raise ValueError(f"--strategy must be one of {', '.join(config_lib.STRATEGIES)}, got {name!r}")


def expected_replicas(name: str) -> int | None:
    """Replicas of `make_strategy(name)` without creating it (creating one
    initialises the runtime); None where unknown before the cluster is up (TPU)."""
    gpus = tf.config.list_physical_devices("GPU")
    if name in ("auto", "one_device"):
        return max(1, len(gpus)) if name == "auto" else 1
    if name == "mirrored":
        return len(gpus) if gpus else len(tf.config.list_logical_devices("CPU"))
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
    """The process that writes the model_dir's files: the `chief` task if the
    cluster has one, else worker 0 (TF's convention); any single process."""
    task_type, task_id = task_info(strategy)
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def uses_xla(cfg, strategy):
    """`cfg.jit_compile`, or when not given the default for the replicas'
    devices: on for GPUs and TPUs (Keras' own default there), off on CPUs,
    where it makes the step slower (docs/BENCHMARKS.md). Only each replica's
    forward and backward pass is compiled, so the choice holds under every
    strategy."""
    if cfg.jit_compile is not None:
        return cfg.jit_compile
    try:
        kind = tf.DeviceSpec.from_string(strategy.extended.worker_devices[0]).device_type
    except RuntimeError:  # the default strategy: TensorFlow's default device
        kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    return kind in ("GPU", "TPU")


# -------------------------------------------------------------- batch checks
def check_batch_size(cfg, replicas):
    """The one check that the global batch splits over `replicas` (None: unknown)."""
    if replicas and cfg.batch_size % replicas:
        raise BatchSizeError(
            f"--batch_size={cfg.batch_size} is not divisible by the "
            f"{replicas} replicas of --strategy={cfg.strategy}"
        )


def step_activation_bytes(cfg, *, batch_size, bytes_per_element=4):
    """A lower bound on one training step's memory: every layer's output kept
    for the backward pass plus a gradient of the same size (no weights, slots,
    input or workspace), so a refused batch would certainly not fit. Read
    from the model's spec, so it is known before the model is built."""
    per_image = 3 * cfg.image_size**2 + stats.activation_elements(
        cfg.model,
        cfg.image_size,
        width_multiplier=cfg.width_multiplier,
        fc_units=cfg.fc_units,
        num_classes=cfg.num_classes,
        dropout=cfg.dropout,
    )
    return 2 * batch_size * per_image * bytes_per_element


def _check_batch_fits(cfg, strategy):
    """`BatchSizeError` (one line, both numbers) when this host's share of the
    batch cannot fit in the host's free memory. CPU replicas only: accelerators
    report no total memory through TensorFlow."""
    try:
        devices = strategy.extended.worker_devices  # this host's replicas
    except RuntimeError:  # the default strategy: TensorFlow's default device
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or ["/cpu:0"]
    if any("CPU" not in d.upper() for d in devices):
        return
    available = memory.host_available_bytes()
    if available is None:
        return
    sharing = 1
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        sharing = workers_on_this_host(os.environ.get("TF_CONFIG"))
    available //= sharing  # every local worker checks the same free memory
    host_batch = cfg.batch_size * len(devices) // strategy.num_replicas_in_sync
    needed = step_activation_bytes(
        cfg, batch_size=host_batch, bytes_per_element=4 if cfg.mixed_precision == "none" else 2
    )
    if needed > available:
        replicas = strategy.num_replicas_in_sync  # the batch it names must split over them
        fits = max(replicas, int(cfg.batch_size * available / needed) // replicas * replicas)
        raise BatchSizeError(
            f"--batch_size={cfg.batch_size} needs at least {needed / GIB:.1f} GiB for the "
            f"activations of one training step, more than the {available / GIB:.1f} GiB "
            f"of memory available{_share(sharing)} (pid {os.getpid()}); use "
            f"--batch_size={fits} or less"
        )


def _share(workers):
    return f" to each of the {workers} workers on this host" if workers > 1 else ""


def workers_on_this_host(tf_config):
    """How many training tasks (chief, worker) of a TF_CONFIG cluster run on
    this machine, at least 1: they share its memory."""
    try:
        cluster = json.loads(tf_config or "{}").get("cluster", {})
    except (ValueError, AttributeError):
        return 1  # MultiWorkerMirroredStrategy reports a bad TF_CONFIG itself
    names = {"localhost", "::1", socket.gethostname()}
    with contextlib.suppress(OSError):  # a host name /etc/hosts does not resolve
        names.add(socket.gethostbyname(socket.gethostname()))
    hosts = [
        address.rsplit(":", 1)[0].strip("[]")
        for kind in ("chief", "worker")
        for address in cluster.get(kind, [])
    ]
    return max(1, sum(h in names or h.startswith("127.") for h in hosts))
