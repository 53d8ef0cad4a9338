r"""Generates an ImageNet-shaped TFRecord set offline, for dry runs at full size.

  python -m pipelines.generate_imagenet_shaped --output_dir=/tmp/shaped \
      --split=train --images_per_class=2
  python -m pipelines.generate_imagenet_shaped --output_dir=/tmp/shaped \
      --split=validation --images_per_class=1

1000 classes (synsets n0xxxxxxx), JPEGs sized and compressed like ImageNet's
(shorter side 300-500 px, 1:1 to 16:9 either way, ~100 kB), a few grayscale
and CMYK ones; drawn into <image_dir>/<split>/<synset>/*.JPEG and converted by
pipelines.tfrecord_builder into <output_dir>/<split>-* and labels.txt. See
pipelines/imagenet_shaped.py. The same flags write the same bytes; re-running
resumes an interrupted conversion.
"""

import sys

from absl import app, flags

# No TensorFlow at import: --help and bad flags answer at once.

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the shards and labels.txt go.")
_SPLIT = flags.DEFINE_enum("split", "train", ["train", "validation"], "Which split to generate.")
_IMAGES_PER_CLASS = flags.DEFINE_integer(
    "images_per_class", 2, "Images drawn per class.", lower_bound=1
)
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 1000, "Classes.", lower_bound=1)
_IMAGE_DIR = flags.DEFINE_string(
    "image_dir", None, "Where the JPEG folders go; default: <output_dir>/images."
)
_NUM_SHARDS = flags.DEFINE_integer(
    "num_shards", None, "Shards; default: the builder's (about 1024 images each).", lower_bound=1
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the images, synsets and shuffle.", lower_bound=0)

flags.mark_flags_as_required(["output_dir"])


def main(argv):
    from common import cli, errors, quiet_start

    cli.no_arguments("generate_imagenet_shaped", argv)
    quiet_start.start()  # before the builder imports TensorFlow
    from pipelines import imagenet_shaped

    try:
        cli.check_paths(
            output_dirs={"output_dir": _OUTPUT_DIR.value, "image_dir": _IMAGE_DIR.value}
        )
        if _NUM_SHARDS.value and _NUM_SHARDS.value > _NUM_CLASSES.value * _IMAGES_PER_CLASS.value:
            raise errors.DataError(
                f"--num_shards={_NUM_SHARDS.value} is more than the "
                f"{_NUM_CLASSES.value * _IMAGES_PER_CLASS.value} images to generate"
            )
        result = imagenet_shaped.generate(
            _OUTPUT_DIR.value,
            _SPLIT.value,
            images_per_class=_IMAGES_PER_CLASS.value,
            image_dir=_IMAGE_DIR.value,
            num_classes=_NUM_CLASSES.value,
            num_shards=_NUM_SHARDS.value,
            seed=_SEED.value,
            progress=True,
        )
    except errors.DataError as e:
        sys.exit(f"generate_imagenet_shaped: error: {e}")
    print(
        f"{_SPLIT.value}: {result.num_images} images in {result.shards_written} shards "
        f"({result.shards_skipped} already complete), {result.reencoded} re-encoded as RGB JPEG"
    )


if __name__ == "__main__":
    app.run(main)
