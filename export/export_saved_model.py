r"""Exports trained models as a SavedModel for TensorFlow Serving.

    python -m export.export_saved_model --model_dir=runs/model_a \
        --export_base=/models/prelu [--version=N] \
        [--scales=256,384,480] [--flip=true] [--top_k=5]

writes `/models/prelu/<N>/` (N: one more than the largest existing version,
claimed atomically: exports may run side by side) and
`/models/prelu/models.config`, then serve it with

    tensorflow_model_server --port=8500 --rest_api_port=8501 \
        --model_config_file=/models/prelu/models.config

Give `--model_dir` several times to export an ensemble that averages the
models' probabilities. See `export/export_lib.py` for the signatures, and
docs/SERVING.md for the per-request limits and the memory they bound. A
remote `--export_base` (gs://...) needs `--version`.
"""

import sys

from absl import app, flags, logging

from common import cli

_MODEL_DIR = flags.DEFINE_multi_string(
    "model_dir",
    None,
    "Training run directory (config.json, classes.tsv, model.keras). Repeat for an ensemble.",
)
_EXPORT_BASE = flags.DEFINE_string(
    "export_base", None, "TF Serving base path; the version goes under it."
)
_VERSION = flags.DEFINE_integer(
    "version", None, "Version number; default the next free integer.", lower_bound=1
)
_MODEL_NAME = flags.DEFINE_string(
    "model_name", None, "Model name in models.config; default the basename of --export_base."
)
_SCALES = cli.define_int_list(
    "scales",
    None,
    "Shorter sides for dense testing, averaged (the paper's multi-scale); default: the "
    "paper's 256,384,480 scaled to the run's crop size (config.json's image_size / 224; "
    "the 64-px built-in runs: 73,110,137).",
    minimum=1,
    example="256,384,480",
)
_FLIP = flags.DEFINE_bool("flip", True, "Also test horizontal flips.")
_TOP_K = flags.DEFINE_integer("top_k", 5, "Classes in the top-k outputs.", lower_bound=1)
_MAX_ASPECT_RATIO = flags.DEFINE_float(
    "max_aspect_ratio",
    4.0,
    "Centre-crop the longer side to this many times the shorter side first "
    "(bounds the work on extreme panoramas); 0 disables.",
    lower_bound=0,
)
_MAX_IMAGE_PIXELS = flags.DEFINE_integer(
    "max_image_pixels",
    100_000_000,
    "Refuse requests holding an image that decodes to more pixels (read from its header, "
    "the size the decoder allocates) with InvalidArgument; 0 disables.",
    lower_bound=0,
)
_MAX_REQUEST_IMAGES = flags.DEFINE_integer(
    "max_request_images",
    32,
    "Refuse requests of more images, in either signature, with InvalidArgument; 0 disables.",
    lower_bound=0,
)
_MAX_REQUEST_PIXELS = flags.DEFINE_integer(
    "max_request_pixels",
    100_000_000,
    "Refuse requests whose images decode to more pixels in all with InvalidArgument; 0 disables.",
    lower_bound=0,
)

flags.mark_flags_as_required(["model_dir", "export_base"])


def main(argv):
    from common import errors, quiet_start

    cli.no_arguments("export.export_saved_model", argv)
    quiet_start.start()
    from export import versions  # no TensorFlow at import

    try:  # an unwritable or unusable --export_base: one line before TensorFlow loads
        cli.check_paths(output_dirs={"export_base": _EXPORT_BASE.value})
        versions.check_base(_EXPORT_BASE.value, _VERSION.value)
    except (errors.DataError, versions.ExportError) as e:
        sys.exit(f"error: {e}")
    from export import export_lib  # after flag parsing: TF loads slowly

    with cli.exit_on_user_error("export.export_saved_model"):
        path = _export(export_lib)
    logging.info("exported %s", path)
    print(path)


def _export(export_lib):
    import tensorflow as tf

    from export import request_limits, versions

    limits = request_limits.RequestLimits(
        max_images=_MAX_REQUEST_IMAGES.value or None,
        max_pixels=_MAX_REQUEST_PIXELS.value or None,
        max_image_pixels=_MAX_IMAGE_PIXELS.value or None,
    )
    try:
        path = export_lib.export_saved_model(
            _MODEL_DIR.value,
            _EXPORT_BASE.value,
            version=_VERSION.value,
            model_name=_MODEL_NAME.value,
            scales=[int(s) for s in _SCALES.value] if _SCALES.value else None,
            flip=_FLIP.value,
            top_k=_TOP_K.value,
            max_aspect_ratio=_MAX_ASPECT_RATIO.value or None,
            limits=limits,
        )
    except export_lib.ExportError as e:  # a user mistake: one line
        sys.exit(f"error: {e}")
    except tf.errors.OpError as e:
        if versions.is_local(_EXPORT_BASE.value):
            raise
        # A remote base that cannot be reached or written: one line.
        sys.exit(f"error: --export_base={_EXPORT_BASE.value}: {e.message.splitlines()[0]}")
    return path


if __name__ == "__main__":
    app.run(main)
