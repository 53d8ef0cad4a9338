r"""Converts an ImageNet-style image folder into standard TFRecord shards.

  python -m pipelines.build_tfrecords --input_dir=/raw/train \
      --output_dir=/data/imagenet --split=train \
      --labels_file=/raw/synset_words.txt --num_shards=1024

  python -m pipelines.build_tfrecords --input_dir=/raw/val \
      --output_dir=/data/imagenet --split=validation --num_shards=128 \
      --validation_labels_file=/raw/imagenet_2012_validation_synset_labels.txt

A dataset root holding `train/` and `val/` (Imagenette, say) is given as
it is: each split reads its own folder.

  python -m pipelines.build_tfrecords --input_dir=/path/to/imagenette2-160 \
      --output_dir=/data/imagenette --split=validation

Re-running the same command resumes an interrupted conversion; a re-run
with other images, --num_shards, --seed or classes is refused, naming what
changed. See pipelines/tfrecord_builder.py for layouts and what gets
re-encoded.
"""

import sys

from absl import app, flags

# No TensorFlow at import (tfrecord_builder loads it): --help and bad flags
# answer at once.

_INPUT_DIR = flags.DEFINE_string(
    "input_dir",
    None,
    "Image folder: <class>/*.JPEG (.jpg, .png, ...; the folder name is the class), or "
    "flat images with --validation_labels_file. Its folder of the split is used if there "
    "is one: train/, or validation/ (else val/, valid/).",
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where shards go.")
_SPLIT = flags.DEFINE_enum(
    "split", "train", ["train", "validation"], "Shard name prefix: train or validation."
)
_LABELS_FILE = flags.DEFINE_string(
    "labels_file",
    None,
    "Class order and names, one `synset[<TAB>name]` per "
    "line, UTF-8 (e.g. synset_words.txt). Default: output_dir/labels.txt if present,"
    " else the sorted synset folders.",
)
_VALIDATION_LABELS_FILE = flags.DEFINE_string(
    "validation_labels_file",
    None,
    "Synsets of a flat folder's images (UTF-8): one "
    "per line in sorted file order, or `<file> <synset>` lines.",
)
_NUM_SHARDS = flags.DEFINE_integer(
    "num_shards",
    None,
    "Number of shards; default: about tfrecord_builder.IMAGES_PER_SHARD (1024) images each.",
    lower_bound=1,
)
_NUM_WORKERS = flags.DEFINE_integer(
    "num_workers", None, "Shards converted in parallel; default: CPU count.", lower_bound=1
)
_SKIP_CORRUPT = flags.DEFINE_bool(
    "skip_corrupt", False, "Leave undecodable image files out (logged) instead of stopping."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the file shuffle.")

flags.mark_flags_as_required(["input_dir", "output_dir"])


def main(argv):
    from common import cli, errors, quiet_start

    cli.no_arguments("build_tfrecords", argv)
    quiet_start.start()  # before tfrecord_builder imports TensorFlow
    from pipelines import tfrecord_builder

    try:
        cli.check_paths(
            dirs={"input_dir": _INPUT_DIR.value},
            output_dirs={"output_dir": _OUTPUT_DIR.value},
            files={
                "labels_file": _LABELS_FILE.value,
                "validation_labels_file": _VALIDATION_LABELS_FILE.value,
            },
        )
        result = tfrecord_builder.build(
            _INPUT_DIR.value,
            _OUTPUT_DIR.value,
            _SPLIT.value,
            labels_file=_LABELS_FILE.value,
            validation_labels_file=_VALIDATION_LABELS_FILE.value,
            num_shards=_NUM_SHARDS.value,
            num_workers=_NUM_WORKERS.value,
            skip_corrupt=_SKIP_CORRUPT.value,
            seed=_SEED.value,
        )
    except errors.DataError as e:
        sys.exit(f"build_tfrecords: error: {e}")
    print(
        f"{_SPLIT.value}: {result.num_images} images, {result.shards_written} shards written, "
        f"{result.shards_skipped} already complete, {result.reencoded} re-encoded as RGB JPEG, "
        f"{len(result.skipped_files)} skipped"
    )


if __name__ == "__main__":
    app.run(main)
