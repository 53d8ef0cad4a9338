"""The training configuration: one frozen dataclass, saved as `config.json`.

`delving.train` turns its flags into a `TrainConfig` exactly once, with
`resolve_config(**flag_values)`; every library below it takes the config (or
plain keyword arguments), never flags.

The defaults of `TrainConfig` are the paper's recipe (Sec. 4; summarised in
docs/PAPER.md): model A, PReLU, Eq. 14 init, batch 128, SGD momentum 0.9,
lr 1e-2 divided by 10 twice when the validation error plateaus, weight
decay 5e-4, dropout 0.5, shorter side jittered in [256, 512] and 224x224
crops, about 80 epochs. A *preset* holds only the fields it changes:

- `imagenet` (used as soon as `--data_dir` or `--tfds_name` is given): the
  recipe itself, no overrides.
- `builtin` (no data flags: the offline default): the recipe shrunk so that
  it trains on the generated built-in dataset (10 classes, 3000 training
  images) in a few CPU minutes -- `small_14` (Table 1) at a quarter of its
  width with 256-unit fc layers, 64x64 crops from shorter sides jittered in
  [64, 80], batch 64, lr 0.02 after a linear warm-up over 2 epochs,
  divided by 10 at epochs 30 and 36 of 40, no dropout (chosen from the
  measured sweeps in docs/RECIPE_SWEEPS.md). Three departures: Eq. 10
  (fan-in) instead of Eq. 14, whose fan-out variance would make the initial
  logits of the tiny head (fc 256 -> 10 classes) ~25x too large (the first
  SGD steps then diverge); inputs divided by the RGB std as well as
  mean-subtracted; and the warm-up, without which the first steps at the
  rates that train these BN-free nets fastest diverge (the paper has none).
  `MODEL_OVERRIDES` holds a preset's per-model values (the deep plain nets
  of Fig. 2 and 3 need a lower rate; the 30-layer one more epochs).

Precedence: a value given explicitly, else the preset's, else the default.
The allowed values of the string fields are the constants below; the flags,
`validate`, the trainer and the schedules all use them. The resolved config
(no `None` left in a recipe field) is what `config.json` holds, so a run can
be re-created from its model_dir alone. This module imports no TensorFlow
(only `save` and `load` do, when called), so flags are checked quickly.
"""

import dataclasses
import json
import os

from delving.models.specs import ACTIVATIONS, INITS, MODEL_NAMES
from pipelines import config as input_config

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

#: Preset name -> the TrainConfig fields it changes. `num_classes=None`: from the data.
PRESETS = {
    "imagenet": {},
    "builtin": dict(
        model="small_14",
        init="he_fan_in",
        num_classes=None,
        width_multiplier=0.25,
        fc_units=256,
        dropout=0.0,
        image_size=64,
        scale_range=(64, 80),
        eval_resize=72,
        batch_size=64,
        epochs=40,
        learning_rate=0.02,
        warmup_epochs=2.0,
        lr_schedule="step",
        lr_decay_epochs=(30, 36),
        lr_plateau_patience=2,
        input_std=True,
        checkpoint_every_steps=50,
        log_every_steps=10,
        cache_data=True,
        in_memory=True,
    ),
}

#: Per-model values of a preset, applied over it (explicit values still win):
#: deeper nets may need their own rate and length (docs/RECIPE_SWEEPS.md).
MODEL_OVERRIDES = {
    "imagenet": {},
    "builtin": {
        # The 30-layer plain net dies at lr >= 0.007 (dead ReLUs: the loss
        # returns to ln 10) and at 0.005 in some seeds; at 0.003 no run died,
        # and it needs the long first stage to get below 30%.
        "small_30": dict(learning_rate=0.003, epochs=110, lr_decay_epochs=(90, 102)),
        # Model B (22 layers) dies at 0.01 like small_30; at 0.005 half its
        # widths learn faster per epoch than x0.25 does, at a quarter of the cost.
        "model_b": dict(
            learning_rate=0.005, width_multiplier=0.125, epochs=30, lr_decay_epochs=(22, 27)
        ),
    },
}

#: Fields that define the network: a checkpoint only restores into the same.
ARCHITECTURE_FIELDS = ("model", "activation", "init", "num_classes", "width_multiplier", "fc_units")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; defaults are the paper's (Sec. 4)."""

    # Data. No `data_dir` and no `tfds_name` means the built-in dataset.
    data_dir: str | None = None
    tfds_name: str | None = None
    tfds_data_dir: str | None = None
    tfds_manual_dir: str | None = None
    labels_file: str | None = None
    label_offset: int = 1  # ImageNet TFRecords store labels 1..1000.
    preset: str = "imagenet"
    # Network.
    model: str = "model_a"
    activation: str = "prelu"
    init: str = "he_fan_out"  # Eq. 14, what the paper trains with.
    num_classes: int = 1000
    dropout: float = 0.5
    width_multiplier: float = 1.0
    fc_units: int = 4096
    # Input.
    image_size: int = input_config.IMAGE_SIZE
    scale_range: tuple = input_config.SCALE_RANGE
    eval_resize: int = input_config.RESIZE_SIZE
    lighting_std: float = input_config.LIGHTING_STD
    input_std: bool = False  # also divide by pipelines' STD_RGB after the mean
    cache_data: bool = False
    # Decode the training split once into memory and augment whole batches
    # (pipelines.in_memory): for datasets that fit, e.g. the built-in one.
    in_memory: bool = False
    # Skip undecodable images and the unreadable rest of truncated shards
    # (logged with counts) instead of stopping on them.
    skip_corrupt: bool = False
    # Optimisation.
    batch_size: int = 128  # global, over all replicas and workers
    epochs: int = 80
    steps_per_epoch: int | None = None  # None: one pass over the data
    eval_steps: int | None = None  # None: the whole validation split
    learning_rate: float = 1e-2
    lr_schedule: str = "plateau"
    lr_decay_epochs: tuple = (40, 60)
    lr_decay_factor: float = 0.1
    lr_max_decays: int = 2
    lr_plateau_patience: int = 3
    lr_plateau_min_delta: float = 1e-3
    warmup_epochs: float = 0.0  # linear ramp from ~0 over these epochs (not in the paper)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # Execution.
    strategy: str = "auto"
    tpu: str | None = None
    mixed_precision: str = "none"
    # XLA for the per-replica forward/backward pass; None: by the replicas'
    # devices (`train_step.uses_xla`: on for GPUs and TPUs, off on CPUs).
    jit_compile: bool | None = None
    model_dir: str | None = None
    seed: int = 0
    checkpoint_every_steps: int = 1000
    keep_checkpoints: int = 3
    log_every_steps: int = 100

    @property
    def dataset_name(self) -> str:
        """The tfds name, 'the built-in dataset' or the TFRecord directory."""
        if self.tfds_name:
            return self.tfds_name
        if self.preset == "builtin":
            return f"the built-in dataset ({self.data_dir or 'generated'})"
        return self.data_dir


def preset_for(data_dir=None, tfds_name=None) -> str:
    """`builtin` when no dataset is named, else `imagenet`."""
    return "imagenet" if (data_dir or tfds_name) else "builtin"


def default_model_dir(cfg: TrainConfig) -> str:
    """A stable default, so that running the same command again resumes."""
    return os.path.join("runs", f"{cfg.preset}_{cfg.model}_{cfg.activation}")


def resolve_config(preset=None, **values) -> TrainConfig:
    """TrainConfig from explicit values, the preset's, then the defaults; validated.

    Args:
      preset: a name in `PRESETS`; default from the data flags (`preset_for`).
      **values: TrainConfig fields. A value of None means "not given".
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TypeError(f"unknown TrainConfig fields: {', '.join(unknown)}")
    preset = preset or preset_for(values.get("data_dir"), values.get("tfds_name"))
    if preset not in PRESETS:
        raise ValueError(f"--preset={preset}: must be one of {', '.join(PRESETS)}")
    given = {k: v for k, v in values.items() if v is not None}
    merged = {k: v for k, v in PRESETS[preset].items() if v is not None}
    model = given.get("model", merged.get("model", TrainConfig.model))
    merged.update(MODEL_OVERRIDES.get(preset, {}).get(model, {}))
    merged.update(given)
    if merged.get("num_classes") is None and preset == "builtin":
        from pipelines import builtin  # the generated set fixes its classes

        merged["num_classes"] = builtin.NUM_CLASSES
    for key in ("scale_range", "lr_decay_epochs"):
        if key in merged:
            try:
                merged[key] = tuple(int(v) for v in merged[key])
            except (TypeError, ValueError):
                value = merged[key]
                text = ",".join(map(str, value)) if isinstance(value, list | tuple) else value
                raise ValueError(f"--{key}={text}: expected integers a,b,...") from None
    cfg = TrainConfig(preset=preset, **merged)
    if cfg.model_dir is None:
        cfg = dataclasses.replace(cfg, model_dir=default_model_dir(cfg))
    validate(cfg)
    return cfg


def preset_value(preset: str, field: str):
    """What `preset` gives `field` when no flag does (None: from the data)."""
    return PRESETS[preset].get(field, getattr(TrainConfig, field))


_POSITIVE = (
    "num_classes",
    "image_size",
    "batch_size",
    "epochs",
    "eval_resize",
    "fc_units",
    "checkpoint_every_steps",
    "log_every_steps",
    "keep_checkpoints",
    "learning_rate",
    "width_multiplier",
    "lr_plateau_patience",
)
_CHOICES = {
    "model": MODEL_NAMES,
    "activation": ACTIVATIONS,
    "init": INITS,
    "strategy": STRATEGIES,
    "mixed_precision": MIXED_PRECISIONS,
    "lr_schedule": LR_SCHEDULES,
}


def validate(cfg: TrainConfig) -> None:
    """Every check of a config, in one place: a one-line ValueError naming the flag.

    `resolve_config` calls it, so every run (command line or library) is
    checked here and only here; the flags themselves only parse.
    """

    def check(ok, field, why):
        if not ok:
            value = getattr(cfg, field)
            if isinstance(value, tuple):
                value = ",".join(map(str, value))
            raise ValueError(f"--{field}={value}: {why}")

    for field, choices in _CHOICES.items():
        check(getattr(cfg, field) in choices, field, f"must be one of {', '.join(choices)}")
    for field in _POSITIVE:
        check(getattr(cfg, field) > 0, field, "must be positive")
    for field in ("steps_per_epoch", "eval_steps"):
        check(getattr(cfg, field) is None or getattr(cfg, field) > 0, field, "must be positive")
    for field in ("label_offset", "lr_max_decays", "seed"):
        check(getattr(cfg, field) >= 0, field, "must be >= 0")
    for field in ("weight_decay", "lighting_std", "lr_plateau_min_delta", "warmup_epochs"):
        check(getattr(cfg, field) >= 0, field, "must be >= 0")
    for field in ("dropout", "momentum"):
        check(0 <= getattr(cfg, field) < 1, field, "must be in [0, 1)")
    check(0 < cfg.lr_decay_factor <= 1, "lr_decay_factor", "must be in (0, 1]")
    lo, hi = (cfg.scale_range + (0, 0))[:2]
    check(
        len(cfg.scale_range) == 2 and cfg.image_size <= lo <= hi,
        "scale_range",
        f"must be two sizes min<=max, both >= image_size ({cfg.image_size})",
    )
    check(all(e >= 0 for e in cfg.lr_decay_epochs), "lr_decay_epochs", "must be epochs >= 0")
    check(
        cfg.eval_resize >= cfg.image_size,
        "eval_resize",
        f"must be >= image_size ({cfg.image_size})",
    )
    check(
        not (cfg.data_dir and cfg.tfds_name),
        "tfds_name",
        "give either --data_dir or --tfds_name, not both",
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


def to_json(cfg: TrainConfig) -> str:
    data = dataclasses.asdict(cfg)
    for key in _UNUSED_BY_SCHEDULE.get(cfg.lr_schedule, ()):
        del data[key]
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def from_json(text: str) -> TrainConfig:
    """Inverse of `to_json`; fields unknown to this version are ignored."""
    data = json.loads(text)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    data = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
    return TrainConfig(**data)


def save(cfg: TrainConfig, path: str) -> None:
    """Write `config.json` atomically (write a temporary file, then rename)."""
    import tensorflow as tf  # gfile: works for gs:// model dirs too

    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(to_json(cfg))
    tf.io.gfile.rename(tmp, path, overwrite=True)


def load(path: str) -> TrainConfig:
    import tensorflow as tf

    with tf.io.gfile.GFile(path) as f:
        return from_json(f.read())


def architecture_diff(old: TrainConfig, new: TrainConfig) -> dict:
    """Network-defining fields that differ: {field: (old, new)}."""
    return {
        k: (getattr(old, k), getattr(new, k))
        for k in ARCHITECTURE_FIELDS
        if getattr(old, k) != getattr(new, k)
    }
