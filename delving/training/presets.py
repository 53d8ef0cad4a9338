"""The presets: named recipes, each the TrainConfig fields it changes, and
which one a run gets when no --preset is given.

`imagenet` is the paper's recipe (with the two departures model A needs at
ImageNet's shape), `builtin` the offline default on the generated set,
`photos` a CPU recipe for small sets of real photos. The choice needs only
the data's class count, read from a local labels file without TensorFlow.
`delving.training.config.resolve_config` applies them: a value given
explicitly, else the preset's, else the default.
"""

from common import errors

_BUILTIN = dict(
    model="small_14",
    init="he_fan_in",
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
)

#: Preset name -> the TrainConfig fields it changes.
PRESETS = {
    "imagenet": dict(
        # 0-255 inputs give model A logits of std ~110 at init (loss ~280, not ln 1000);
        # and from a neutral start lr 0.01 still diverges in 3 steps, 0.001 does not
        # (docs/SCALING.md).
        input_std=True,
        warmup_epochs=1.0,
    ),
    "builtin": _BUILTIN,
    # Real photographs on a CPU (Imagenette: 9,469 training images of 10
    # classes): the built-in recipe at larger crops, chosen on Imagenette
    # (docs/RECIPE_SWEEPS.md, "Real photos"): per epoch, every step up from
    # 64 to 128 px took error off, and 128 px reaches 18% on 10 views in 15
    # minutes on 2 idle cores. The training split is decoded once, at twice
    # the smallest scale (1.9 GB for Imagenette); the encoded records are not
    # cached besides (1.5 GB at full size).
    "photos": dict(
        _BUILTIN,
        image_size=128,
        scale_range=(128, 160),
        eval_resize=144,
        epochs=30,
        lr_decay_epochs=(25, 28),
        cache_data=False,
    ),
}

#: A dataset of at most this many classes gets the `photos` preset when no
#: --preset is given, one with more (or with no count: ImageNet's records
#: come without a labels file) the paper's `imagenet`. Sets of up to a few
#: hundred classes (Imagenette 10, CIFAR-100 100, Food-101 101, Tiny ImageNet
#: 200) hold at most a tenth of ImageNet's images, where a CPU recipe is what
#: a user can run; ImageNet (1000), Places365 (365) and larger are what the
#: paper's recipe is for.
PHOTOS_MAX_CLASSES = 200

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
    "photos": {},
}


def preset_for(data_dir=None, tfds_name=None, num_classes=None) -> str:
    """`builtin` when no dataset is named; else `photos` for a dataset of at
    most `PHOTOS_MAX_CLASSES` classes, `imagenet` for more or an unknown count."""
    if not (data_dir or tfds_name):
        return "builtin"
    if num_classes is not None and num_classes <= PHOTOS_MAX_CLASSES:
        return "photos"
    return "imagenet"


def data_class_count(*, data_dir=None, labels_file=None, tfds_name=None, tfds_data_dir=None):
    """The classes the data states without reading its records, as the
    trainer will count them: tfds' label feature (unless a labels file is
    given), else the labels file (`labels_file`, else `data_dir/labels.txt`);
    None when none says or the labels file cannot be read. A local labels
    file is read without TensorFlow.

    Raises:
      DataError: the tfds name is unknown.
    """
    if tfds_name and not labels_file:
        from pipelines import tfds as reader  # loads TensorFlow: only for --tfds_name

        return reader.num_classes(tfds_name, tfds_data_dir)
    from pipelines import labels

    try:
        return labels.count_classes(data_dir=data_dir, labels_file=labels_file)
    except (errors.DataError, OSError):  # a directory, unreadable, not UTF-8, ...:
        return None  # the path checks and the class list report it, naming the flag


def preset_reason(cfg) -> str:
    """Which preset the run's recipe came from and why, for its header;
    `cfg.num_classes` is the data's count (as `setup.prepare` fills it in)."""
    kind = {"photos": " (a CPU recipe for small photo sets)", "imagenet": " (the paper's recipe)"}
    line = f"Preset {cfg.preset}{kind.get(cfg.preset, '')}, "
    if cfg.builtin_data:
        default, data = "builtin", "the built-in dataset"
        rule = "the default for the built-in dataset"
    else:
        default = preset_for(cfg.data_dir, cfg.tfds_name, cfg.num_classes)
        data = f"{cfg.dataset_name} ({cfg.num_classes} classes)"
        bound = "at most" if default == "photos" else "more than"
        rule = f"the default for data of {bound} {PHOTOS_MAX_CLASSES} classes: {data}"
    if cfg.preset != default:
        return line + f"given by --preset; the default for {data} is {default}"
    line += rule
    if cfg.preset == "photos":
        line += "; --preset=imagenet trains the paper's recipe instead"
    return line
