r"""Top-1/top-5 error of a trained model_dir on its validation split.

  python -m delving.evaluate --model_dir=runs/builtin_small_14_prelu \
      --views=center,10view [--scale=256[,384,480]]

Reads the model (model.keras, or the latest checkpoint of a run still in
progress) and the data and preprocessing from the model_dir's config.json.
Views (see `delving.evaluation.validation.VIEWS`): `center` (centre crop), `10view`
(corners + centre and mirrors), `dense` (every window of the conv map, the
paper's dense testing, what the exported SavedModels run; `--scales` is an
alias of `--scale`, `--noflip` drops the mirrors); several scales are
averaged per image.
"""

import dataclasses

from absl import app, flags

from common import cli

# The views `delving.evaluation.validation` registers, named here so that flags are
# checked before TensorFlow loads (tests/test_cli_imports.py keeps the two equal).
VIEW_NAMES = ("center", "10view", "dense")

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "a delving.train model_dir.", required=True)
_VIEWS = flags.DEFINE_list(
    "views", ["center"], f"comma-separated test views ({', '.join(VIEW_NAMES)})."
)
_SCALE = cli.define_int_list(
    "scale",
    None,
    "shorter side(s) before cropping; default: the run's --eval_resize.",
    minimum=1,
    example="256,384",
)
_BATCH = flags.DEFINE_integer("batch_size", 32, "images per batch.", lower_bound=1)
_STEPS = flags.DEFINE_integer("steps", None, "at most this many batches.", lower_bound=1)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "override the run's data_dir.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "evaluate this checkpoint instead of model.keras."
)
_SKIP_CORRUPT = flags.DEFINE_bool(
    "skip_corrupt",
    False,
    "skip undecodable images and the unreadable rest of truncated shards (logged, counted).",
)
flags.DEFINE_alias("scales", "scale")
_FLIP = flags.DEFINE_bool(
    "flip", True, "dense view: also test the horizontal flips (the paper does)."
)


@flags.validator("views", f"--views: expected names among {', '.join(VIEW_NAMES)}")
def _check_views(values):
    return bool(values) and set(values) <= set(VIEW_NAMES)


def _register_dense_view(cfg):
    """The dense view with the run's own window (what its head saw at its
    crop size, as the export uses) and --flip."""
    import functools

    from delving.evaluation import dense, validation

    validation.register_view(
        dataclasses.replace(
            validation.VIEWS["dense"],
            scores=functools.partial(
                dense.evaluation_scores,
                flip=_FLIP.value,
                image_size=cfg.image_size,
            ),
        )
    )


def _check_classes(model, cfg, source):
    """The model scores as many classes as the data has (before any work)."""
    from common import errors

    outputs = model.output_shape[-1]
    try:
        classes = source.class_list(None if _DATA_DIR.value else cfg.labels_file)
    except errors.DataError as e:  # labels.txt of another class count
        raise errors.DataError(f"{e} (the model's classes: {outputs})") from None
    if len(classes) != outputs:
        raise errors.DataError(
            f"the model scores {outputs} classes but the data has {len(classes)}"
        )


def main(argv):
    from common import quiet_start

    cli.no_arguments("delving.evaluate", argv)
    quiet_start.start()
    cli.exit_on_bad_paths(
        "delving.evaluate", dirs={"model_dir": _MODEL_DIR.value, "data_dir": _DATA_DIR.value}
    )
    from delving.evaluation import validation
    from delving.training import inputs

    with cli.exit_on_user_error("delving.evaluate"):
        model, cfg = validation.load_model(_MODEL_DIR.value, checkpoint=_CHECKPOINT.value)
        _register_dense_view(cfg)
        if _DATA_DIR.value:
            cfg = dataclasses.replace(cfg, data_dir=_DATA_DIR.value)
        cfg = dataclasses.replace(cfg, skip_corrupt=_SKIP_CORRUPT.value)
        source = inputs.source_from_config(cfg)
        _check_classes(model, cfg, source)
        scales = tuple(int(s) for s in _SCALE.value or [cfg.eval_resize])
        print(
            f"{cfg.model} ({cfg.activation}) from {_MODEL_DIR.value} on "
            f"{cfg.dataset_name}, validation split, crops {cfg.image_size}"
        )
        rows = []
        for view in _VIEWS.value:
            result = validation.evaluate(
                model,
                source,
                view=view,
                scales=scales,
                image_size=cfg.image_size,
                batch_size=_BATCH.value,
                steps=_STEPS.value,
                progress=True,
            )
            rows.append((view, result))
    scale_text = ",".join(map(str, scales))
    print(f"{'view':<8} {'scales':<12} {'top-1 err':>9} {'top-5 err':>9} {'loss':>8} {'images':>7}")
    for view, r in rows:
        print(
            f"{view:<8} {scale_text:<12} {r['top1_error']:9.2%} "
            f"{r['top5_error']:9.2%} {r['loss']:8.4f} {r['count']:7d}"
        )
    # Counted as errors above; many point at a float16 model that overflows.
    if any(r["nonfinite"] for _, r in rows):
        print(
            "images with non-finite probabilities: "
            + ", ".join(f"{view} {r['nonfinite']}" for view, r in rows)
        )


if __name__ == "__main__":
    app.run(main)
