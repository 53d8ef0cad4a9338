"""Real image bytes and real TFRecord shards for tests (no mocks).

Images:
  pattern(height, width, seed=0)       uint8 [H, W, 3] smooth colourful image
  encode(image, fmt, **kw)             bytes in "jpeg", "png", "gif", "bmp",
                                       "webp", "cmyk_jpeg", "gray_jpeg",
                                       "gray_png", "rgba_png"
  image_bytes(fmt, height, width, seed=0)   pattern + encode in one call
  decode_pil(data)                     uint8 [H, W, 3] via Pillow (reference)

Shards (standard ImageNet schema, see pipelines/records.py):
  write_shards(data_dir, split, num_shards=2, per_shard=4, num_classes=3,
               label_offset=1, height=40, width=56, fmt="jpeg", seed=0)
      -> list of (path, [(label, synset, text), ...])
  write_records(path, examples)        a shard from serialized examples
  example(encoded, label, **kw)        = pipelines.records.make_example
  truncate(path, keep_fraction=0.6)    cut a file in place (a broken shard)

Image folders for the converter, and what it wrote:
  write_image_folder(root, classes={"n001": 3, ...}, fmt="jpeg", size=(40, 56))
  read_examples(output_dir, split)     [{filename, label, synset, ...}, ...]
"""

import io
import os

import numpy as np
from PIL import Image

from pipelines import records

example = records.make_example


def pattern(height, width, seed=0):
    """A smooth, colourful, non-flat image (gradients plus a disc)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(30, 220, size=3)
    image = np.stack(
        [
            base[0] + 30 * np.sin(x / max(width, 1) * 6.28 + rng.uniform(0, 6)),
            base[1] + 30 * np.cos(y / max(height, 1) * 6.28 + rng.uniform(0, 6)),
            base[2] + 25 * np.sin((x + y) / max(height + width, 1) * 9.0),
        ],
        axis=-1,
    )
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    disc = (y - cy) ** 2 + (x - cx) ** 2 < (0.25 * min(height, width)) ** 2
    image[disc] = 255 - image[disc]
    return np.clip(image, 0, 255).astype(np.uint8)


def encode(image, fmt="jpeg", quality=95):
    """Encodes uint8 `[H, W, 3]` with Pillow in the named format (see above)."""
    pil = Image.fromarray(np.asarray(image, np.uint8))
    out = io.BytesIO()
    if fmt == "jpeg":
        pil.save(out, "JPEG", quality=quality)
    elif fmt == "cmyk_jpeg":
        pil.convert("CMYK").save(out, "JPEG", quality=quality)
    elif fmt == "gray_jpeg":
        pil.convert("L").save(out, "JPEG", quality=quality)
    elif fmt == "gray_png":
        pil.convert("L").save(out, "PNG")
    elif fmt == "rgba_png":
        pil.convert("RGBA").save(out, "PNG")
    elif fmt in ("png", "gif", "bmp", "webp"):
        pil.save(out, fmt.upper())
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return out.getvalue()


def image_bytes(fmt="jpeg", height=40, width=56, seed=0):
    return encode(pattern(height, width, seed), fmt)


def decode_pil(data):
    """Reference decode with Pillow, as RGB uint8."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def write_records(path, examples):
    """Writes serialized examples as a TFRecord file at `path`."""
    records.write_shard(path, examples)
    return path


def write_shards(
    data_dir,
    split,
    num_shards=2,
    per_shard=4,
    num_classes=3,
    label_offset=1,
    height=40,
    width=56,
    fmt="jpeg",
    seed=0,
):
    """Writes `num_shards` shards `<split>-0000i-of-0000n` of real images.

    Labels cycle through `label_offset .. label_offset + num_classes - 1`;
    synsets are `s0000`, `s0001`, ... and texts `class 0`, `class 1`, ...

    Returns:
      list of `(path, [(label, synset, text), ...])`, one per shard.
    """
    os.makedirs(data_dir, exist_ok=True)
    out, n = [], 0
    for shard in range(num_shards):
        path = os.path.join(data_dir, records.shard_name(split, shard, num_shards))
        rows, serialized = [], []
        for _ in range(per_shard):
            cls = n % num_classes
            label, synset, text = cls + label_offset, f"s{cls:04d}", f"class {cls}"
            serialized.append(
                example(
                    image_bytes(fmt, height, width, seed=seed * 100003 + n),
                    label,
                    synset=synset,
                    text=text,
                    height=height,
                    width=width,
                    filename=f"{split}_{n}.JPEG",
                )
            )
            rows.append((label, synset, text))
            n += 1
        write_records(path, serialized)
        out.append((path, rows))
    return out


def truncate(path, keep_fraction=0.6):
    """Cuts the file at `path` to `keep_fraction` of its bytes, in place."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep_fraction)])
    return path


def write_image_folder(root, classes, fmt="jpeg", size=(40, 56), seed=0, extension=".JPEG"):
    """Writes `root/<synset>/<synset>_<i><extension>` image files.

    Args:
      classes: dict synset -> number of images.
      fmt: an `encode` format; the extension stays `extension` whatever the
        format (ImageNet has a PNG and CMYK files named .JPEG).

    Returns:
      sorted list of written paths.
    """
    paths = []
    for c, (synset, count) in enumerate(sorted(classes.items())):
        os.makedirs(os.path.join(root, synset), exist_ok=True)
        for i in range(count):
            path = os.path.join(root, synset, f"{synset}_{i}{extension}")
            with open(path, "wb") as f:
                f.write(image_bytes(fmt, size[0], size[1], seed=seed + 1000 * c + i))
            paths.append(path)
    return sorted(paths)


def read_examples(output_dir, split):
    """The converter's records of `split` in `output_dir`, as dicts."""
    import tensorflow as tf

    from pipelines import imagenet

    out = []
    for path in imagenet.list_files(output_dir, split):
        for record in tf.data.TFRecordDataset(path):
            f = tf.train.Example.FromString(record.numpy()).features.feature
            out.append(
                dict(
                    filename=f["image/filename"].bytes_list.value[0].decode(),
                    label=f["image/class/label"].int64_list.value[0],
                    synset=f["image/class/synset"].bytes_list.value[0].decode(),
                    text=f["image/class/text"].bytes_list.value[0].decode(),
                    height=f["image/height"].int64_list.value[0],
                    encoded=f["image/encoded"].bytes_list.value[0],
                )
            )
    return out
