"""The training configuration: one frozen dataclass, saved as `config.json`.

`delving.train` turns its flags into a `TrainConfig` exactly once, with
`resolve_config(**flag_values)`; every library below it takes the config (or
plain keyword arguments), never flags. Each field is declared with
`common.fields.field`: its help text, allowed values and check live there,
and both the flags (`common.cli.define_flags`) and `validate` read them.

The defaults of `TrainConfig` are the paper's recipe (Sec. 4; summarised in
docs/PAPER.md). A *preset* (`presets.PRESETS`) holds only the fields it changes:
`imagenet`, used for a dataset of more than `presets.PHOTOS_MAX_CLASSES` classes
(ImageNet's 1000), is the paper's recipe with two departures without which
model A diverges in its first SGD steps: inputs divided by the RGB std as
well as mean-subtracted, and a one-epoch learning-rate warm-up
(docs/SCALING.md, "Why the recipe departs at ImageNet's shape"). `photos`,
used for a smaller one (a set of real photographs such as Imagenette's 10
classes), is a recipe that trains on a CPU in hours, not weeks; `builtin`,
the offline default, shrinks the recipe to train on the generated built-in
dataset in a few CPU minutes. Beyond the size, `builtin` departs from the
paper where the tiny nets need it: Eq. 10 (fan-in) init, because Eq. 14's
fan-out variance makes the logits of the tiny head ~25x too large and the
first SGD steps diverge; inputs divided by the RGB std; and a warm-up,
without which the first steps at the rates that train these BN-free nets
fastest diverge; `photos` shares these departures. The sweeps behind every
value are in docs/RECIPE_SWEEPS.md. `presets.MODEL_OVERRIDES` holds a
preset's per-model values.

Precedence: a value given explicitly, else the preset's, else the default.
The resolved config (no `None` left in a recipe field) is what `config.json`
holds, so a run can be re-created from its model_dir alone: what only the
data can tell (`num_classes` of a named dataset, `steps_per_epoch`,
`data_dir` of the built-in set) `delving.training.setup.prepare` fills in. This module
imports no TensorFlow at import, and choosing the preset from a local labels
file loads none (a `--tfds_name` does), so flags are checked quickly.
"""

import dataclasses
import json
import os

from common import fields
from common.fields import AT_LEAST_ZERO, FRACTION, POSITIVE, field
from delving import paper
from delving.models.specs import ACTIVATIONS, INITS, MODEL_NAMES
from delving.training import presets
from pipelines import config as input_config
from pipelines import data_service

# Allowed values of the string fields.
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
#: --mixed_precision value -> Keras dtype policy.
MIXED_PRECISION_POLICIES = {
    "none": "float32",
    "float16": "mixed_float16",
    "bfloat16": "mixed_bfloat16",
}
MIXED_PRECISIONS = tuple(MIXED_PRECISION_POLICIES)
LR_SCHEDULES = ("plateau", "step")

#: Fields that define the network: a checkpoint only restores into the same.
ARCHITECTURE_FIELDS = ("model", "activation", "init", "num_classes", "width_multiplier", "fc_units")

#: Input copies held by the trainer, which a tf.data service's workers
#: cannot use: the decoded split is in the trainer's memory, and a worker's
#: cache would replay the shards of its first pass (a lost worker's for ever).
_NOT_WITH_DATA_SERVICE = ("in_memory", "cache_data")

_DECAY_FACTOR = fields.Check(lambda v: 0 < v <= 1, "must be in (0, 1]")
_EPOCHS = fields.Check(lambda v: all(e >= 0 for e in v), "must be epochs >= 0")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; defaults are the paper's (Sec. 4)."""

    # Data. No `data_dir` and no `tfds_name` means the built-in dataset.
    data_dir: str | None = field(
        None, "ImageNet-schema TFRecords (train-*, validation-*); none: the built-in set."
    )
    tfds_name: str | None = field(
        None, "tensorflow-datasets name, e.g. imagenet2012 (instead of --data_dir)."
    )
    tfds_data_dir: str | None = field(None, "tfds data_dir.")
    tfds_manual_dir: str | None = field(None, "tfds manual_dir.")
    labels_file: str | None = field(
        None, "synset<TAB>name per line, in label order (default: from the data)."
    )
    label_offset: int = field(
        1, "first label in the records (ImageNet TFRecords store 1..1000).", check=AT_LEAST_ZERO
    )
    preset: str = field(
        "imagenet",
        "where the flags shown with [preset ...] take their defaults; default: photos for data "
        f"of at most {presets.PHOTOS_MAX_CLASSES} classes (its labels file or tfds label), else "
        "imagenet when --data_dir or --tfds_name is given, else builtin.",
        choices=presets.PRESETS,
        show_default=False,
    )
    # Network.
    model: str = field("model_a", "network.", choices=MODEL_NAMES)
    activation: str = field("prelu", "rectifier after every conv/fc1/fc2.", choices=ACTIVATIONS)
    init: str = field(
        "he_fan_out",
        "weight init; he_fan_in is Eq. 10, he_fan_out Eq. 14 (what the paper trains with).",
        choices=INITS,
    )
    num_classes: int | None = field(
        None,
        "classes; from the data: --labels_file, labels.txt of --data_dir or the tfds label "
        "feature (records with neither: ImageNet's 1000).",
        check=POSITIVE,
        none_means="from the data",
    )
    dropout: float = field(0.5, "after fc1 and fc2.", check=FRACTION)
    width_multiplier: float = field(1.0, "scales conv widths.", check=POSITIVE)
    fc_units: int = field(4096, "fc1/fc2 width.", check=POSITIVE)
    # Input.
    image_size: int = field(input_config.IMAGE_SIZE, "training crop side.", check=POSITIVE)
    scale_range: tuple[int, ...] = field(
        input_config.SCALE_RANGE, "min,max shorter side before cropping (scale jitter)."
    )
    eval_resize: int = field(
        input_config.RESIZE_SIZE,
        "validation: shorter side before the centre crop.",
        check=POSITIVE,
    )
    lighting_std: float = field(
        input_config.LIGHTING_STD, "PCA colour noise std.", check=AT_LEAST_ZERO
    )
    input_std: bool = field(
        False, "after subtracting the mean RGB, also divide by the ImageNet std RGB."
    )
    cache_data: bool = field(False, "cache encoded records in memory.")
    in_memory: bool = field(
        False,
        "decode the training split once into memory and augment whole batches at once "
        "(for a dataset that fits in half the free memory).",
    )
    data_service: str | None = field(
        None,
        "grpc://host:port of a tf.data service dispatcher (delving-data-service): its workers "
        "read, decode and augment the training split, each shard of a pass on one worker "
        "(docs/TRAINING.md); not with --in_memory or --cache_data, which a preset's values "
        "then drop.",
        check=fields.Check(data_service.is_address, "expected grpc://host:port (the dispatcher)"),
    )
    skip_corrupt: bool = field(
        False,
        "skip undecodable images and the unreadable rest of truncated shards (logged, "
        "counted) instead of stopping on the first.",
    )
    # Optimisation.
    batch_size: int = field(
        128, "global batch size, over all replicas and workers.", check=POSITIVE
    )
    epochs: int = field(paper.TRAINING_EPOCHS, "epochs.", check=POSITIVE)
    steps_per_epoch: int | None = field(
        None, "default: one pass over the training split.", check=POSITIVE
    )
    eval_steps: int | None = field(
        None, "validation batches per epoch; default: the whole split.", check=POSITIVE
    )
    learning_rate: float = field(1e-2, "initial rate.", check=POSITIVE)
    lr_schedule: str = field(
        "plateau", "/10 on a validation plateau, or at --lr_decay_epochs.", choices=LR_SCHEDULES
    )
    lr_decay_epochs: tuple[int, ...] = field(
        (40, 60), "epochs of the step schedule.", check=_EPOCHS
    )
    lr_decay_factor: float = field(0.1, "decay factor.", check=_DECAY_FACTOR)
    lr_max_decays: int = field(2, "at most this many decays.", check=AT_LEAST_ZERO)
    lr_plateau_patience: int = field(3, "epochs without improvement before /10.", check=POSITIVE)
    lr_plateau_min_delta: float = field(
        1e-3, "smallest drop of the error that counts.", check=AT_LEAST_ZERO
    )
    warmup_epochs: float = field(
        0.0,
        "linear learning-rate warm-up from ~0 over this many epochs (not in the paper).",
        check=AT_LEAST_ZERO,
    )
    momentum: float = field(0.9, "SGD momentum.", check=FRACTION)
    weight_decay: float = field(
        5e-4,
        "Caffe-style L2 on conv/fc kernels (not PReLU slopes, not biases).",
        check=AT_LEAST_ZERO,
    )
    # Execution.
    strategy: str = field(
        "auto", "where to train; auto: all local GPUs, else the CPU.", choices=STRATEGIES
    )
    tpu: str | None = field(None, "TPU name or address for --strategy=tpu.")
    mixed_precision: str = field("none", "compute dtype.", choices=MIXED_PRECISIONS)
    jit_compile: bool | None = field(
        None,
        "XLA-compile the train step; not given: on when the replicas are GPUs or TPUs, off "
        "on CPUs (measured in benchmarks/train_throughput.py --compare_xla).",
    )
    model_dir: str | None = field(
        None, "run directory; default runs/<preset>_<model>_<activation> (rerun resumes)."
    )
    seed: int = field(0, "weights, dropout, data order.", check=AT_LEAST_ZERO)
    checkpoint_every_steps: int = field(
        1000, "checkpoint period (also at every epoch end).", check=POSITIVE
    )
    keep_checkpoints: int = field(3, "checkpoints kept.", check=POSITIVE)
    log_every_steps: int = field(100, "TensorBoard period.", check=POSITIVE)

    @property
    def builtin_data(self) -> bool:
        """Whether the data is the generated built-in set (no data flag, or
        the directory it is generated in)."""
        if self.tfds_name:
            return False
        from pipelines import builtin

        return not self.data_dir or self.data_dir == builtin.default_dir()

    @property
    def dataset_name(self) -> str:
        """The tfds name, 'the built-in dataset' or the TFRecord directory:
        what the data is, whichever preset the recipe came from."""
        if self.tfds_name:
            return self.tfds_name
        if self.builtin_data:
            return f"the built-in dataset ({self.data_dir or 'generated'})"
        return self.data_dir


_INT_LISTS = tuple(
    f.name
    for f in dataclasses.fields(TrainConfig)
    if fields.value_type(TrainConfig, f.name)[0] is tuple
)


def default_model_dir(cfg: TrainConfig) -> str:
    """A stable default, so that running the same command again resumes."""
    return os.path.join("runs", f"{cfg.preset}_{cfg.model}_{cfg.activation}")


def resolve_config(preset=None, **values) -> TrainConfig:
    """TrainConfig from explicit values, the preset's, then the defaults; validated.

    Args:
      preset: a name in `presets.PRESETS`; default from the data flags and the
        class count they state (`preset_for`, `data_class_count`).
      **values: TrainConfig fields. A value of None means "not given".
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TypeError(f"unknown TrainConfig fields: {', '.join(unknown)}")
    given = {k: v for k, v in values.items() if v is not None}
    if preset is None:
        data = {k: given.get(k) for k in ("data_dir", "tfds_name")}
        count = given.get("num_classes")
        if count is None and len([v for v in data.values() if v]) == 1:  # both: refused below
            count = presets.data_class_count(
                labels_file=given.get("labels_file"),
                tfds_data_dir=given.get("tfds_data_dir"),
                **data,
            )
        preset = presets.preset_for(num_classes=count, **data)
    fields.check_field(TrainConfig, "preset", preset)
    merged = {k: v for k, v in presets.PRESETS[preset].items() if v is not None}
    model = given.get("model", merged.get("model", TrainConfig.model))
    merged.update(presets.MODEL_OVERRIDES.get(preset, {}).get(model, {}))
    if given.get("data_service"):
        # The workers stream the records: a preset's in-trainer copies do not apply.
        for key in _NOT_WITH_DATA_SERVICE:
            merged.pop(key, None)
    merged.update(given)
    no_data = not (merged.get("data_dir") or merged.get("tfds_name"))
    if merged.get("num_classes") is None and no_data:
        from pipelines import builtin  # the generated set fixes its classes

        merged["num_classes"] = builtin.NUM_CLASSES
    for key in _INT_LISTS:  # flags give lists of strings
        if key in merged:
            try:
                merged[key] = tuple(int(v) for v in merged[key])
            except (TypeError, ValueError):
                raise fields.error(key, merged[key], "expected integers a,b,...") from None
    cfg = TrainConfig(preset=preset, **merged)
    if cfg.model_dir is None:
        cfg = dataclasses.replace(cfg, model_dir=default_model_dir(cfg))
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Every check of a config, in one place: a one-line ValueError naming the flag.

    Each field's own check is in its declaration (`fields.check` reads it);
    the checks that relate fields are below. `resolve_config` calls this, so
    every run (command line or library) is checked here and only here; the
    flags themselves only parse.
    """
    fields.check(cfg)
    lo, hi = (cfg.scale_range + (0, 0))[:2]
    if not (len(cfg.scale_range) == 2 and cfg.image_size <= lo <= hi):
        raise fields.error(
            "scale_range",
            cfg.scale_range,
            f"must be two sizes min<=max, both >= image_size ({cfg.image_size})",
        )
    if cfg.eval_resize < cfg.image_size:
        raise fields.error(
            "eval_resize", cfg.eval_resize, f"must be >= image_size ({cfg.image_size})"
        )
    for key in _NOT_WITH_DATA_SERVICE:
        if cfg.data_service and getattr(cfg, key):
            raise fields.error(
                "data_service",
                cfg.data_service,
                f"not with --{key}: the service's workers read the records themselves "
                f"(drop --{key})",
            )
    if cfg.data_dir and cfg.tfds_name:
        raise fields.error(
            "tfds_name", cfg.tfds_name, "give either --data_dir or --tfds_name, not both"
        )


def steps_for(num_examples: int, batch_size: int) -> int:
    """Training steps in one pass (full batches only), at least one."""
    return max(1, num_examples // batch_size) if num_examples else 1


# Settings a learning-rate schedule ignores: left out of config.json, which
# lists only what shaped the run (`from_json` gives them their defaults).
_UNUSED_BY_SCHEDULE = {
    "plateau": ("lr_decay_epochs",),
    "step": ("lr_plateau_patience", "lr_plateau_min_delta"),
}


# Where the input is made, not what it is: left out of config.json when not
# used, so the config.json of a run from before these existed stays as it was.
_OMITTED_WHEN_UNSET = ("data_service",)


def to_json(cfg: TrainConfig) -> str:
    data = dataclasses.asdict(cfg)
    for key in _UNUSED_BY_SCHEDULE.get(cfg.lr_schedule, ()):
        del data[key]
    for key in _OMITTED_WHEN_UNSET:
        if data[key] is None:
            del data[key]
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def from_json(text: str) -> TrainConfig:
    """Inverse of `to_json`; fields unknown to this version are ignored."""
    data = json.loads(text)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    data = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
    return TrainConfig(**data)


def architecture_diff(old: TrainConfig, new: TrainConfig) -> dict:
    """Network-defining fields that differ: {field: (old, new)}."""
    return {
        k: (getattr(old, k), getattr(new, k))
        for k in ARCHITECTURE_FIELDS
        if getattr(old, k) != getattr(new, k)
    }
