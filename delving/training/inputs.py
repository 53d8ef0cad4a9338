"""A `TrainConfig` mapped onto the input: its data source and training stream.

`input_config` turns the run's input fields into the one
`pipelines.config.InputConfig` its `pipelines.sources.DataSource` holds;
evaluation reads that config as it is (`delving.evaluation.validation`
sets only the batch, the scale and the dtype of each view), training adds
what only its stream has (`make_train_dataset`).
"""

import os

from delving.models import from_config
from pipelines import data_service, in_memory, sources
from pipelines.config import InputConfig


def input_config(cfg) -> InputConfig:
    """The run's `InputConfig`: batch, geometry, normalisation, bad input."""
    return InputConfig(
        batch_size=cfg.batch_size,  # global: the readers divide it
        image_size=cfg.image_size,
        scale_range=cfg.scale_range,
        resize_size=cfg.eval_resize,
        lighting_std=cfg.lighting_std,
        std=from_config.input_std(cfg),
        skip_corrupt=cfg.skip_corrupt,
    )


def source_from_config(cfg) -> sources.DataSource:
    """The DataSource of a TrainConfig; generates the built-in set if needed."""
    data_dir = cfg.data_dir
    if not data_dir and not cfg.tfds_name:
        from pipelines import builtin

        data_dir = builtin.ensure_dataset()
    return sources.DataSource(
        data_dir=data_dir,
        tfds_name=cfg.tfds_name,
        tfds_data_dir=cfg.tfds_data_dir,
        tfds_manual_dir=cfg.tfds_manual_dir,
        num_classes=cfg.num_classes,
        label_offset=cfg.label_offset,
        input=input_config(cfg),
    )


def make_train_dataset(cfg, source, strategy, *, seed):
    """The distributed, repeated training set: uint8 crops and lighting shifts,
    normalised on the device by the train step (the host's CPUs stay on the
    input, benchmarks/input_pipeline.py). With `cfg.data_service`, made by
    that tf.data service's workers (`service_dataset`)."""
    train = source.input.replace(seed=seed, cache=cfg.cache_data, repeat=True, normalize=False)
    if cfg.data_service:
        job = service_job_name(cfg, seed)
        read = lambda context: service_dataset(source, train, cfg.data_service, job, context)
    elif cfg.in_memory:
        split = source.decoded_train_split()
        read = lambda context: in_memory.make_dataset(split, train, input_context=context)
    else:
        read = lambda context: source.dataset(
            "train", train, is_training=True, input_context=context
        )
    return strategy.distribute_datasets_from_function(read)


def service_job_name(cfg, seed):
    """The tf.data service job of a run: the trainer replicas of one run (one
    model_dir, the same resumed step, so the same seed) read one job; another
    run, or this one resumed, a job of its own (a job's name fixes its graph)."""
    where = cfg.model_dir if "://" in cfg.model_dir else os.path.abspath(cfg.model_dir)
    return f"delving.train:{where}:seed{seed}"


def service_dataset(source, train, address, job_name, context=None):
    """The training stream of `source` (`train`: its `InputConfig`) made by
    the tf.data service at `address`.

    The graph sent is the unsharded stream, so every trainer replica sends
    the same one and they share the job; the service shards it. It batches
    per replica, as a local input pipeline does under a strategy, and draws
    the augmentation seeds on the workers (`seed_per_worker`).
    """
    batch = context.get_per_replica_batch_size(train.batch_size) if context else train.batch_size
    config = train.replace(batch_size=batch, seed_per_worker=True)
    dataset = source.dataset("train", config, is_training=True)
    return data_service.distribute(dataset, address, job_name=job_name)
