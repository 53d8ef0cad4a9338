"""Everything a run needs before its first step, and nothing written yet.

`delving.training.loop.train` runs these in order: `check_batch_size`,
`prepare_run` (data source, epoch length, class list; reads only),
`create_train_state` (model from `delving.models.from_config`, optimizer with
the warm-up ramp, schedule, counters, checkpointer: a `TrainState`),
`restore` (the latest checkpoint, or a one-line `ConfigMismatch`), and the
validation: `make_evaluator` (the training input: `delving.training.inputs`).
"""

import dataclasses

import keras
import tensorflow as tf

from delving.evaluation import validation
from delving.models import from_config
from delving.training import checkpointing, inputs, run_dir
from delving.training import config as config_lib
from delving.training import optimizer as optimizer_lib
from delving.training import step as train_step_lib
from delving.training.schedules import LearningRateSchedule, WarmupRate


class ConfigMismatch(ValueError):
    """model_dir holds a run of a different network."""


class BatchSizeError(ValueError):
    """The global batch does not split evenly over the replicas, or its
    activations cannot fit in memory."""


@dataclasses.dataclass
class TrainState:
    """What the loop updates and the checkpoints hold."""

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    schedule: LearningRateSchedule
    epoch_rate: tf.Variable  # the schedule's rate this epoch, before the warm-up ramp
    step: tf.Variable  # global step
    epoch: tf.Variable  # epochs finished
    epoch_step: tf.Variable  # steps done in the current epoch
    # Running sums of the epoch so far (loss * images, top-1 hits, top-5
    # hits, images): a resumed epoch's logged means cover all its steps.
    epoch_sums: tf.Variable
    checkpointer: checkpointing.Checkpointer


def check_batch_size(cfg, replicas):
    """The one check that the global batch splits over `replicas` (None: unknown)."""
    if replicas and cfg.batch_size % replicas:
        raise BatchSizeError(
            f"--batch_size={cfg.batch_size} is not divisible by the "
            f"{replicas} replicas of --strategy={cfg.strategy}"
        )


def prepare_run(cfg, strategy):
    """The data source and the config with the data read and epoch length filled in.

    Checks that model_dir holds no other network; writes nothing there (the
    trainer writes `config.json` and `classes.tsv` once the restore worked).

    Returns:
      (resolved TrainConfig, `inputs.DataSource`, the class list)
    """
    source = inputs.source_from_config(cfg)
    cfg = dataclasses.replace(cfg, data_dir=source.data_dir)
    if cfg.steps_per_epoch is None:
        examples = source.num_examples("train")
        cfg = dataclasses.replace(
            cfg, steps_per_epoch=config_lib.steps_for(examples, cfg.batch_size)
        )
    run_dir.check_compatible(cfg, ConfigMismatch)
    return cfg, source, source.class_list(cfg.labels_file)


def create_train_state(cfg, strategy) -> TrainState:
    """A fresh model, optimizer, schedule and counters (restore comes later)."""
    keras.utils.set_random_seed(cfg.seed)
    with strategy.scope():
        model = from_config.build(cfg, seed=cfg.seed)
        # The rate of the current epoch, set from the schedule at each epoch
        # start; the optimizer reads it through the warm-up ramp every step.
        epoch_rate = tf.Variable(
            cfg.learning_rate, dtype=tf.float32, trainable=False, name="epoch_rate"
        )
        warmup_steps = round(cfg.warmup_epochs * cfg.steps_per_epoch)
        optimizer = optimizer_lib.CaffeSGD(
            WarmupRate(epoch_rate, warmup_steps),
            momentum=cfg.momentum,
            l2_decay=cfg.weight_decay,
        )
        if cfg.mixed_precision == "float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        # Slots exist before restore, so their values come back too.
        optimizer.build(model.trainable_variables)
    schedule = LearningRateSchedule(
        cfg.learning_rate,
        kind=cfg.lr_schedule,
        factor=cfg.lr_decay_factor,
        max_decays=cfg.lr_max_decays,
        patience=cfg.lr_plateau_patience,
        min_delta=cfg.lr_plateau_min_delta,
        decay_epochs=cfg.lr_decay_epochs,
    )
    counters = {
        name: tf.Variable(0, dtype=tf.int64, trainable=False, name=name)
        for name in ("step", "epoch", "epoch_step")
    }
    counters["epoch_sums"] = tf.Variable(
        tf.zeros(4, tf.float64), trainable=False, name="epoch_sums"
    )
    checkpointer = checkpointing.Checkpointer(
        cfg.model_dir,
        strategy,
        keep=cfg.keep_checkpoints,
        model=model,
        optimizer=optimizer,
        lr_schedule=schedule,
        **counters,
    )
    return TrainState(model, optimizer, schedule, epoch_rate, checkpointer=checkpointer, **counters)


def restore(cfg, state):
    """Restores the latest checkpoint (None if there is none); a checkpoint of
    another network is a one-line `ConfigMismatch`, before anything is written."""
    try:
        return state.checkpointer.restore()
    except (AssertionError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigMismatch(
            f"--model_dir={cfg.model_dir} holds checkpoints of a different network "
            f"than --model={cfg.model} ({first[:200]}); use another --model_dir or "
            "the flags that run was trained with"
        ) from None


def make_evaluator(cfg, state, source, strategy):
    """The per-epoch validation: centre crops at `eval_resize`."""
    return validation.Evaluator(
        state.model,
        source,
        view="center",
        scales=(cfg.eval_resize,),
        image_size=cfg.image_size,
        batch_size=cfg.batch_size,
        steps=cfg.eval_steps,
        strategy=strategy,
        dtype=train_step_lib.input_dtype(),
        jit_compile=train_step_lib.uses_xla(cfg, strategy),
    )
