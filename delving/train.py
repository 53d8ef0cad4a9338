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

from delving import config as config_lib
from delving import distribute, models


def _preset_help(name, text):
    values = {p: v[name] for p, v in config_lib.PRESETS.items()}
    shown = "; ".join(
        f"{p}: "
        + (
            "from the data"
            if v is None
            else ",".join(map(str, v))
            if isinstance(v, tuple)
            else str(v)
        )
        for p, v in values.items()
    )
    return f"{text} [preset {shown}]"


def _preset(define, name, text, **kwargs):
    return define(name, None, _preset_help(name, text), **kwargs)


D = config_lib.TrainConfig  # the non-preset defaults: the paper's values
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "ImageNet-schema TFRecords (train-*, validation-*); none: the built-in set."
)
_TFDS_NAME = flags.DEFINE_string(
    "tfds_name", None, "tensorflow-datasets name, e.g. imagenet2012 (instead of --data_dir)."
)
_TFDS_DATA_DIR = flags.DEFINE_string("tfds_data_dir", None, "tfds data_dir.")
_TFDS_MANUAL_DIR = flags.DEFINE_string("tfds_manual_dir", None, "tfds manual_dir.")
_LABELS_FILE = flags.DEFINE_string(
    "labels_file", None, "synset<TAB>name per line, in label order (default: from the data)."
)
_PRESET = flags.DEFINE_enum(
    "preset",
    None,
    list(config_lib.PRESETS),
    "where the flags shown with "
    "[preset ...] take their defaults; default: imagenet when --data_dir or "
    "--tfds_name is given, else builtin.",
)
_LABEL_OFFSET = flags.DEFINE_integer(
    "label_offset", D.label_offset, "first label in the records.", lower_bound=0
)
_MODEL = flags.DEFINE_enum("model", None, models.MODEL_NAMES, _preset_help("model", "network."))
_ACTIVATION = flags.DEFINE_enum(
    "activation", D.activation, models.ACTIVATIONS, "rectifier after every conv/fc1/fc2."
)
_INIT = flags.DEFINE_enum(
    "init", None, models.INITS, _preset_help("init", "he_fan_in is Eq. 10, he_fan_out Eq. 14.")
)
_NUM_CLASSES = _preset(flags.DEFINE_integer, "num_classes", "classes.", lower_bound=1)
_DROPOUT = _preset(
    flags.DEFINE_float, "dropout", "after fc1 and fc2.", lower_bound=0.0, upper_bound=0.99
)
_WIDTH = _preset(flags.DEFINE_float, "width_multiplier", "scales conv widths.", lower_bound=1e-3)
_FC_UNITS = _preset(flags.DEFINE_integer, "fc_units", "fc1/fc2 width.", lower_bound=1)
_IMAGE_SIZE = _preset(flags.DEFINE_integer, "image_size", "training crop side.", lower_bound=1)
_SCALE_RANGE = _preset(
    flags.DEFINE_list, "scale_range", "min,max shorter side before cropping (scale jitter)."
)
_EVAL_RESIZE = _preset(
    flags.DEFINE_integer,
    "eval_resize",
    "validation: shorter side before the centre crop.",
    lower_bound=1,
)
_LIGHTING = _preset(flags.DEFINE_float, "lighting_std", "PCA colour noise std.", lower_bound=0.0)
_INPUT_STD = _preset(
    flags.DEFINE_bool,
    "input_std",
    "after subtracting the mean RGB, also divide by the ImageNet std RGB.",
)
_CACHE = _preset(flags.DEFINE_bool, "cache_data", "cache encoded records in memory.")
_BATCH = _preset(flags.DEFINE_integer, "batch_size", "global batch size.", lower_bound=1)
_EPOCHS = _preset(flags.DEFINE_integer, "epochs", "epochs.", lower_bound=1)
_STEPS = flags.DEFINE_integer(
    "steps_per_epoch", None, "default: one pass over the training split.", lower_bound=1
)
_EVAL_STEPS = flags.DEFINE_integer(
    "eval_steps", None, "validation batches per epoch; default: the whole split.", lower_bound=1
)
_LR = _preset(flags.DEFINE_float, "learning_rate", "initial rate.", lower_bound=0.0)
_LR_SCHEDULE = flags.DEFINE_enum(
    "lr_schedule",
    D.lr_schedule,
    ["plateau", "step"],
    "/10 on a validation plateau, or at --lr_decay_epochs.",
)
_LR_EPOCHS = _preset(flags.DEFINE_list, "lr_decay_epochs", "epochs of the step schedule.")
_LR_PATIENCE = _preset(
    flags.DEFINE_integer,
    "lr_plateau_patience",
    "epochs without improvement before /10.",
    lower_bound=1,
)
_LR_FACTOR = flags.DEFINE_float(
    "lr_decay_factor", D.lr_decay_factor, "decay factor.", lower_bound=0.0, upper_bound=1.0
)
_LR_MAX_DECAYS = flags.DEFINE_integer(
    "lr_max_decays", D.lr_max_decays, "at most this many decays.", lower_bound=0
)
_MOMENTUM = flags.DEFINE_float(
    "momentum", D.momentum, "SGD momentum.", lower_bound=0.0, upper_bound=0.999
)
_WD = _preset(
    flags.DEFINE_float,
    "weight_decay",
    "Caffe-style L2 on conv/fc kernels (not PReLU slopes, not biases).",
    lower_bound=0.0,
)
_STRATEGY = flags.DEFINE_enum(
    "strategy", D.strategy, distribute.STRATEGIES, "auto: all local GPUs, else the CPU."
)
_TPU = flags.DEFINE_string("tpu", None, "TPU name or address for --strategy=tpu.")
_MIXED = flags.DEFINE_enum(
    "mixed_precision", D.mixed_precision, ["none", "float16", "bfloat16"], "compute dtype."
)
_JIT = flags.DEFINE_bool("jit_compile", D.jit_compile, "XLA-compile the train step.")
_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "run directory; default runs/<preset>_<model>_<activation> (rerun resumes)."
)
_SEED = flags.DEFINE_integer("seed", D.seed, "weights, dropout, data order.")
_CKPT_EVERY = _preset(
    flags.DEFINE_integer,
    "checkpoint_every_steps",
    "checkpoint period (also at every epoch end).",
    lower_bound=1,
)
_KEEP = flags.DEFINE_integer(
    "keep_checkpoints", D.keep_checkpoints, "checkpoints kept.", lower_bound=1
)
_LOG_EVERY = _preset(flags.DEFINE_integer, "log_every_steps", "TensorBoard period.", lower_bound=1)

_HOLDERS = [v for k, v in dict(globals()).items() if isinstance(v, flags.FlagHolder)]


def _config_from_flags():
    return config_lib.resolve_config(**{h.name: h.value for h in _HOLDERS})


def _ints(values, count=None):
    try:
        ok = all(int(v) >= 0 for v in values)
    except ValueError:
        return False
    return ok and (count is None or len(values) == count)


flags.register_validator(
    "scale_range", lambda v: v is None or _ints(v, 2), "--scale_range: expected two sizes min,max"
)
flags.register_validator(
    "lr_decay_epochs", lambda v: v is None or _ints(v), "--lr_decay_epochs: expected epochs a,b,..."
)


def _check_before_work(cfg):
    """Checks that need several flags, the presets or the file system."""
    replicas = distribute.expected_replicas(cfg.strategy)
    if replicas and cfg.batch_size % replicas:
        raise ValueError(
            f"--batch_size={cfg.batch_size} is not divisible by the "
            f"{replicas} replicas of --strategy={cfg.strategy}"
        )
    if cfg.data_dir:
        from pipelines import errors, imagenet

        try:
            for split in ("train", "validation"):
                imagenet.list_files(cfg.data_dir, split)
        except errors.DataError as e:
            raise errors.DataError(f"--data_dir: {e}") from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        cfg = _config_from_flags()
        _check_before_work(cfg)
    except ValueError as e:  # DataError included
        sys.exit(f"delving.train: error: {e}")
    import tensorflow as tf

    from delving import trainer
    from pipelines import errors

    tf.get_logger().setLevel("WARNING")  # no INFO line per checkpoint save
    with errors.exit_on_user_error(
        "delving.train", also=(trainer.TrainingDiverged, trainer.ConfigMismatch)
    ):
        trainer.train(cfg)


if __name__ == "__main__":
    app.run(main)
