r"""Trains one of the paper's networks: `python -m delving.train [flags]`.

With no flags: the built-in dataset (generated offline on first use), the
`builtin` preset, a few CPU minutes. With `--data_dir` (ImageNet TFRecords)
or `--tfds_name`: the paper's recipe (`imagenet` preset), e.g.

  python -m delving.train --model=model_a --data_dir=/data/imagenet \
      --model_dir=/runs/model_a_prelu

Flags shown with "preset" defaults take their value from the preset unless
given. Running the same command again resumes from the last checkpoint in
--model_dir. Multi-worker: set TF_CONFIG on every machine and pass
--strategy=multi_worker with a --model_dir all workers can read.
"""

import sys

from absl import app, flags

# No TensorFlow at import: --help and bad flags answer at once; main()
# imports it after the config is resolved and validated.
from common import cli
from delving.training import config as config_lib


def _shown(value):
    if value is None:
        return "from the data"
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _define(define, name, text, **kwargs):
    """A flag for TrainConfig field `name`; `None` (not given) defers to the config.

    The help shows the default, per preset where a preset changes it. The
    values are checked once, by `config.validate`, not by the flag.
    """
    by_preset = {p: config_lib.preset_value(p, name) for p in config_lib.PRESETS}
    if len(set(map(_shown, by_preset.values()))) > 1:
        text += " [preset " + "; ".join(f"{p}: {_shown(v)}" for p, v in by_preset.items()) + "]"
    elif by_preset["imagenet"] is not None:
        text += f" [default {_shown(by_preset['imagenet'])}]"
    return define(name, None, text, **kwargs)


def _choices(names):
    return " (" + "|".join(names) + ")"


_DATA_DIR = _define(
    flags.DEFINE_string,
    "data_dir",
    "ImageNet-schema TFRecords (train-*, validation-*); none: the built-in set.",
)
_TFDS_NAME = _define(
    flags.DEFINE_string,
    "tfds_name",
    "tensorflow-datasets name, e.g. imagenet2012 (instead of --data_dir).",
)
_TFDS_DATA_DIR = _define(flags.DEFINE_string, "tfds_data_dir", "tfds data_dir.")
_TFDS_MANUAL_DIR = _define(flags.DEFINE_string, "tfds_manual_dir", "tfds manual_dir.")
_LABELS_FILE = _define(
    flags.DEFINE_string,
    "labels_file",
    "synset<TAB>name per line, in label order (default: from the data).",
)
_PRESET = flags.DEFINE_string(
    "preset",
    None,
    "where the flags shown with [preset ...] take their defaults"
    + _choices(config_lib.PRESETS)
    + "; default: imagenet when --data_dir or --tfds_name is given, else builtin.",
)
_LABEL_OFFSET = _define(flags.DEFINE_integer, "label_offset", "first label in the records.")
_MODEL = _define(flags.DEFINE_string, "model", "network" + _choices(config_lib.MODEL_NAMES) + ".")
_ACTIVATION = _define(
    flags.DEFINE_string,
    "activation",
    "rectifier after every conv/fc1/fc2" + _choices(config_lib.ACTIVATIONS) + ".",
)
_INIT = _define(
    flags.DEFINE_string,
    "init",
    "weight init" + _choices(config_lib.INITS) + "; he_fan_in is Eq. 10, he_fan_out Eq. 14.",
)
_NUM_CLASSES = _define(flags.DEFINE_integer, "num_classes", "classes.")
_DROPOUT = _define(flags.DEFINE_float, "dropout", "after fc1 and fc2.")
_WIDTH = _define(flags.DEFINE_float, "width_multiplier", "scales conv widths.")
_FC_UNITS = _define(flags.DEFINE_integer, "fc_units", "fc1/fc2 width.")
_IMAGE_SIZE = _define(flags.DEFINE_integer, "image_size", "training crop side.")
_SCALE_RANGE = _define(
    cli.define_int_list,
    "scale_range",
    "min,max shorter side before cropping (scale jitter).",
    example="256,512",
)
_EVAL_RESIZE = _define(
    flags.DEFINE_integer, "eval_resize", "validation: shorter side before the centre crop."
)
_LIGHTING = _define(flags.DEFINE_float, "lighting_std", "PCA colour noise std.")
_INPUT_STD = _define(
    flags.DEFINE_bool,
    "input_std",
    "after subtracting the mean RGB, also divide by the ImageNet std RGB.",
)
_CACHE = _define(flags.DEFINE_bool, "cache_data", "cache encoded records in memory.")
_IN_MEMORY = _define(
    flags.DEFINE_bool,
    "in_memory",
    "decode the training split once into memory and augment whole batches at once "
    "(for a dataset that fits in half the free memory).",
)
_SKIP_CORRUPT = _define(
    flags.DEFINE_bool,
    "skip_corrupt",
    "skip undecodable images and the unreadable rest of truncated shards (logged, "
    "counted) instead of stopping on the first.",
)
_BATCH = _define(flags.DEFINE_integer, "batch_size", "global batch size.")
_EPOCHS = _define(flags.DEFINE_integer, "epochs", "epochs.")
_STEPS = _define(
    flags.DEFINE_integer, "steps_per_epoch", "default: one pass over the training split."
)
_EVAL_STEPS = _define(
    flags.DEFINE_integer, "eval_steps", "validation batches per epoch; default: the whole split."
)
_LR = _define(flags.DEFINE_float, "learning_rate", "initial rate.")
_LR_SCHEDULE = _define(
    flags.DEFINE_string,
    "lr_schedule",
    "/10 on a validation plateau, or at --lr_decay_epochs"
    + _choices(config_lib.LR_SCHEDULES)
    + ".",
)
_LR_EPOCHS = _define(
    cli.define_int_list,
    "lr_decay_epochs",
    "epochs of the step schedule.",
    allow_empty=True,
    example="40,60",
)
_LR_PATIENCE = _define(
    flags.DEFINE_integer, "lr_plateau_patience", "epochs without improvement before /10."
)
_WARMUP = _define(
    flags.DEFINE_float,
    "warmup_epochs",
    "linear learning-rate warm-up from ~0 over this many epochs (not in the paper).",
)
_LR_MIN_DELTA = _define(
    flags.DEFINE_float, "lr_plateau_min_delta", "smallest drop of the error that counts."
)
_LR_FACTOR = _define(flags.DEFINE_float, "lr_decay_factor", "decay factor.")
_LR_MAX_DECAYS = _define(flags.DEFINE_integer, "lr_max_decays", "at most this many decays.")
_MOMENTUM = _define(flags.DEFINE_float, "momentum", "SGD momentum.")
_WD = _define(
    flags.DEFINE_float,
    "weight_decay",
    "Caffe-style L2 on conv/fc kernels (not PReLU slopes, not biases).",
)
_STRATEGY = _define(
    flags.DEFINE_string,
    "strategy",
    "auto: all local GPUs, else the CPU" + _choices(config_lib.STRATEGIES) + ".",
)
_TPU = _define(flags.DEFINE_string, "tpu", "TPU name or address for --strategy=tpu.")
_MIXED = _define(
    flags.DEFINE_string,
    "mixed_precision",
    "compute dtype" + _choices(config_lib.MIXED_PRECISIONS) + ".",
)
_JIT = _define(
    flags.DEFINE_bool,
    "jit_compile",
    "XLA-compile the train step; not given: on when the replicas are GPUs or TPUs, off on "
    "CPUs (measured in benchmarks/train_throughput.py --compare_xla).",
)
_MODEL_DIR = _define(
    flags.DEFINE_string,
    "model_dir",
    "run directory; default runs/<preset>_<model>_<activation> (rerun resumes).",
)
_SEED = _define(flags.DEFINE_integer, "seed", "weights, dropout, data order.")
_CKPT_EVERY = _define(
    flags.DEFINE_integer,
    "checkpoint_every_steps",
    "checkpoint period (also at every epoch end).",
)
_KEEP = _define(flags.DEFINE_integer, "keep_checkpoints", "checkpoints kept.")
_LOG_EVERY = _define(flags.DEFINE_integer, "log_every_steps", "TensorBoard period.")

_HOLDERS = [v for k, v in dict(globals()).items() if isinstance(v, flags.FlagHolder)]

# Not part of the run's config (defined after _HOLDERS, which lists those).
_FORCE = flags.DEFINE_bool(
    "force",
    False,
    "take --model_dir over from the run that holds it (its lock.json), e.g. one "
    "on another host that is known to be gone; a dead process's lock on this "
    "host is taken over without it.",
)


def _config_from_flags():
    return config_lib.resolve_config(**{h.name: h.value for h in _HOLDERS})


def _check_paths(cfg):
    """Every path flag names what it should: one line naming the flag if not."""

    cli.check_paths(
        files={"labels_file": cfg.labels_file},
        dirs={"data_dir": cfg.data_dir, "tfds_manual_dir": cfg.tfds_manual_dir},
        output_dirs={"model_dir": cfg.model_dir, "tfds_data_dir": cfg.tfds_data_dir},
    )


def _check_data_dir(cfg):
    """The TFRecord shards exist (reads the file system, so after the config)."""
    from common import errors
    from pipelines import imagenet

    try:
        for split in ("train", "validation"):
            imagenet.list_files(cfg.data_dir, split)
    except errors.DataError as e:
        raise errors.DataError(f"--data_dir: {e}") from None


def main(argv):
    from common import quiet_start

    cli.no_arguments("delving.train", argv)
    quiet_start.start()  # before anything below imports TensorFlow
    try:
        cfg = _config_from_flags()
        _check_paths(cfg)
        if cfg.data_dir:
            _check_data_dir(cfg)
    except ValueError as e:  # DataError included
        sys.exit(f"delving.train: error: {e}")
    import tensorflow as tf

    from delving.training import loop

    tf.get_logger().setLevel("WARNING")  # no INFO line per checkpoint save
    with cli.exit_on_user_error("delving.train", also=(loop.TrainingDiverged, *loop.USER_ERRORS)):
        loop.train(cfg, force=_FORCE.value)


if __name__ == "__main__":
    app.run(main)
