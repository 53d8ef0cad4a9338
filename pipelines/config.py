"""How images become batches: one frozen `InputConfig` for every reader.

The TFRecord reader (`pipelines.imagenet`), the tfds reader
(`pipelines.tfds`) and the in-memory training input (`pipelines.in_memory`)
each take an `InputConfig` whole, next to what only they know (where the
records are, the split, `is_training`, a `tf.distribute.InputContext`), the
way Model Garden's readers take one `DataConfig`. A caller that needs a
variant (another batch size, the evaluation scale) writes
`config.replace(...)`.

The paper's recipe values live here and nowhere else (docs/PAPER.md):
`delving.training.config.TrainConfig` and `pipelines.preprocessing` take
their defaults from these names. This module imports no TensorFlow, so
the binaries' flag checks stay quick.

Example:
  >>> config = InputConfig(batch_size=128, seed=0)
  >>> ds = imagenet.make_dataset("/data/imagenet", "train", config, is_training=True)
  >>> evaluation = config.replace(batch_size=250, resize_size=384)
"""

import dataclasses
import numbers

# The paper's training and testing geometry (Sec. 4): 224x224 crops of
# images whose shorter side is jittered in [256, 512]; a 256 shorter side
# for the single-view test.
IMAGE_SIZE = 224
SCALE_RANGE = (256, 512)
RESIZE_SIZE = 256
# Std of AlexNet's PCA lighting coefficients (the paper follows AlexNet).
LIGHTING_STD = 0.1
# ImageNet statistics on the 0-255 scale, RGB order (docs/PAPER.md, "Constants").
MEAN_RGB = (123.68, 116.78, 103.94)
STD_RGB = (58.40, 57.12, 57.38)
SHUFFLE_BUFFER = 10_000  # records in the training shuffle buffer
DTYPES = ("float32", "bfloat16", "float16", "float64")


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """Batching, augmentation, normalisation and reading of one input stream.

    Attributes:
      batch_size: the global batch; with a `tf.distribute.InputContext` each
        input pipeline batches its per-replica share.
      image_size: side of the square crops.
      scale_range: `(low, high)`: training rescales the shorter side to
        `s ~ U[low, high]` before the random crop.
      resize_size: evaluation's shorter side before the centre crop.
      crop: evaluation only; False yields whole resized images (batch 1
        per replica: their sizes differ).
      flip: random horizontal flips in training.
      lighting_std: std of the PCA lighting coefficients; 0 disables.
      mean, std: per-channel normalisation (0-255 scale); None skips either.
      dtype: image dtype of normalised batches ("bfloat16" for mixed precision).
      normalize: True: float batches normalised on the host; False:
        `({"pixels": uint8, "lighting": float32 [B, 3]}, labels)` for
        `preprocessing.normalize` on the device (what the trainer does).
      seed: shuffling and augmentation seed; None draws a fresh one per
        dataset (the in-memory input needs one).
      seed_per_worker: draw each image's augmentation seed from the OS where
        the graph runs (`seed` then orders the files and the shuffle buffer
        only): a graph built once and run by several tf.data service
        workers (`pipelines.data_service`) would otherwise draw the same
        augmentations on each. Not reproducible.
      shuffle_buffer: records in the training shuffle buffer; 0 disables.
      cache: True caches the records in memory, a string to that file.
      repeat: repeat forever.
      deterministic: element order; None: ordered for evaluation or a
        given seed, unordered (faster) for unseeded training.
      drop_remainder: None: drop the last partial batch in training only.
      skip_corrupt: skip undecodable images and the unreadable rest of a
        truncated shard (logged with counts) instead of failing on them.
      check_images: name (or skip) undecodable images by the gap they leave
        after an ordered decode; False: a bad image fails with TensorFlow's
        error, which does not name its file.
    """

    batch_size: int
    image_size: int = IMAGE_SIZE
    scale_range: tuple = SCALE_RANGE
    resize_size: int = RESIZE_SIZE
    crop: bool = True
    flip: bool = True
    lighting_std: float = LIGHTING_STD
    mean: tuple | None = MEAN_RGB
    std: tuple | None = None
    dtype: str = "float32"
    normalize: bool = True
    seed: int | None = None
    seed_per_worker: bool = False
    shuffle_buffer: int = SHUFFLE_BUFFER
    cache: bool | str = False
    repeat: bool = False
    deterministic: bool | None = None
    drop_remainder: bool | None = None
    skip_corrupt: bool = False
    check_images: bool = True

    def __post_init__(self):
        for name in ("batch_size", "image_size", "resize_size"):
            value = getattr(self, name)
            _check(self, name, _is_int(value) and value >= 1, "must be a positive integer")
        _check(
            self,
            "shuffle_buffer",
            _is_int(self.shuffle_buffer) and self.shuffle_buffer >= 0,
            "must be an integer >= 0",
        )
        scales = _numbers(self.scale_range)
        _check(
            self,
            "scale_range",
            scales is not None and len(scales) == 2 and 0 < scales[0] <= scales[1],
            "must be two sizes (low, high) with 0 < low <= high",
        )
        _check(
            self,
            "lighting_std",
            _is_number(self.lighting_std) and self.lighting_std >= 0,
            "must be a number >= 0",
        )
        for name in ("mean", "std"):
            value = getattr(self, name)
            values = _numbers(value)
            _check(
                self,
                name,
                value is None or (values is not None and len(values) == 3),
                "must be None or 3 numbers, one per RGB channel",
            )
        _check(self, "std", self.std is None or min(self.std) > 0, "must be positive")
        _check(self, "dtype", self.dtype in DTYPES, f"must be one of {', '.join(DTYPES)}")
        _check(self, "seed", self.seed is None or _is_int(self.seed), "must be None or an integer")
        _check(self, "cache", isinstance(self.cache, bool | str), "must be a bool or a file path")
        _check(
            self,
            "skip_corrupt",
            not (self.skip_corrupt and not self.check_images),
            "needs check_images=True (skipping finds bad images by their checks)",
        )
        # Tuples, so that a config (and a DataSource holding it) is hashable.
        for name in ("scale_range", "mean", "std"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def replace(self, **changes):
        """A copy with `changes` (checked as a new config is)."""
        return dataclasses.replace(self, **changes)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _numbers(value):
    """`value` as a tuple of numbers, or None when it is not a sequence of them."""
    try:
        values = tuple(value)
    except TypeError:
        return None
    return values if all(_is_number(v) for v in values) else None


def _check(config, name, ok, why):
    if not ok:
        raise ValueError(f"InputConfig {name}={getattr(config, name)!r}: {why}")
