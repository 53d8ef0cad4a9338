"""Converts an ImageNet-style image folder into standard TFRecord shards.

Layouts of `input_dir` (or of its folder of the split, `input_dir/<split>`,
for validation also `val` or `valid`, when one exists):
  * class folders: `<class>/<any name>.JPEG` (also .jpg, .jpeg, .png, ...;
    train, or validation sorted into folders). The folder name is the class
    id ("synset"): a WordNet id such as `n01440764`, or any name such as
    `golf ball`;
  * flat: image files directly inside, with `validation_labels_file` giving
    the synset of each: one synset per line in sorted file-name order
    (ImageNet's `imagenet_2012_validation_synset_labels.txt`), or
    `<file name> <synset>` lines.

Class order (label = position + 1): `labels_file` (synset per line, an
optional name after it), else an existing `output_dir/labels.txt` (so the
second split gets the first split's labels), else the sorted synsets found.

Every image is decoded once to check it. JPEGs in RGB or grayscale are kept
byte for byte; anything else (CMYK JPEG, PNG under a .JPEG name, GIF, ...) is
re-encoded as an RGB JPEG. Files are shuffled with a fixed seed, so shards
mix classes and the assignment is the same on every run; each shard is
written under a temporary name and renamed when complete, and a re-run skips
the shards that exist: an interrupted conversion resumes and loses nothing.
It resumes only a conversion of the same images into the same shards, which
`<split>.manifest.json` records (pipelines/build_manifest.py); anything else
is refused, as the old shards would duplicate or lose images.
"""

import collections
import concurrent.futures
import io
import os
import random
import re
import threading

import tensorflow as tf
from absl import logging
from PIL import Image

from common import errors, files, progress
from pipelines import build_manifest, labels, records

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".gif", ".bmp", ".webp")
IMAGES_PER_SHARD = 1024

BuildResult = collections.namedtuple(
    "BuildResult", ["num_images", "shards_written", "shards_skipped", "reencoded", "skipped_files"]
)


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _read_validation_labels(path, image_paths):
    what = "validation labels file"
    lines = [(n, line.split()) for n, line in labels.read_text_lines(path, what) if line.strip()]
    if all(len(parts) >= 2 for _, parts in lines):
        by_name, line_of = {}, {}
        for number, parts in lines:
            if parts[0] in line_of:  # one of the two synsets would be dropped unseen
                raise errors.DataError(
                    f"{what} {path} names {parts[0]} twice, on lines {line_of[parts[0]]} and "
                    f"{number}"
                )
            by_name[parts[0]], line_of[parts[0]] = parts[1], number
        missing = [f for f in image_paths if os.path.basename(f) not in by_name]
        if missing:
            raise errors.DataError(f"{path} gives no synset for {os.path.basename(missing[0])}")
        return [by_name[os.path.basename(f)] for f in image_paths]
    if len(lines) != len(image_paths):
        raise errors.DataError(
            f"{path} lists {len(lines)} synsets but the folder holds {len(image_paths)} images"
        )
    return [parts[0] for _, parts in lines]


#: Folder names of a split inside `input_dir`, first found wins: Imagenette,
#: fast.ai and Kaggle sets name their validation folder `val` or `valid`.
SPLIT_FOLDERS = {"train": ("train",), "validation": ("validation", "val", "valid")}


def image_root(input_dir, split):
    """The folder of `split`'s images: the first of `SPLIT_FOLDERS[split]`
    inside `input_dir` that exists, else `input_dir` itself.

    Raises:
      DataError: `input_dir` does not exist, or has no folder of `split`
        but one of another split (its folders are splits, not classes).
    """
    if not tf.io.gfile.isdir(input_dir):
        raise errors.DataError(f"input directory {input_dir} does not exist")
    names = SPLIT_FOLDERS.get(split, (split,))
    for name in names:
        root = os.path.join(input_dir, name)
        if tf.io.gfile.isdir(root):
            return root
    others = [
        n
        for split_names in SPLIT_FOLDERS.values()
        for n in split_names
        if n not in names and tf.io.gfile.isdir(os.path.join(input_dir, n))
    ]
    if others:
        raise errors.DataError(
            f"{input_dir} holds {others[0]}/ but no {'/ '.join(names)}/ folder for split {split!r}"
        )
    return input_dir


def list_images(root, split, *, validation_labels_file=None):
    """`[(path, synset), ...]` sorted by path, from either layout of `root`
    (`image_root`'s folder of `split`)."""
    entries, flat = [], []
    for name in sorted(tf.io.gfile.listdir(root)):
        path = os.path.join(root, name.rstrip("/"))
        if tf.io.gfile.isdir(path):
            entries += [
                (os.path.join(path, f), name.rstrip("/"))
                for f in sorted(tf.io.gfile.listdir(path))
                if _is_image(f)
            ]
        elif _is_image(name):
            flat.append(path)
    if flat:
        if not validation_labels_file:
            raise errors.DataError(
                f"{root} holds {len(flat)} images outside class folders; pass "
                "--validation_labels_file to label them"
            )
        entries += zip(flat, _read_validation_labels(validation_labels_file, flat))
    if not entries:
        raise errors.DataError(
            "no images ({}) found in {} for split {!r}".format(
                "/".join(IMAGE_EXTENSIONS), root, split
            )
        )
    return sorted(entries)


def class_list(entries, *, labels_file=None, output_dir=None):
    """`[(synset, name), ...]` in label order (see the module doc)."""
    existing = output_dir and os.path.join(output_dir, labels.LABELS_FILE)
    if labels_file:
        pairs = labels.read_labels_file(labels_file)
    elif existing and tf.io.gfile.exists(existing):
        pairs = labels.read_labels_file(existing)
    else:
        pairs = [(s, s) for s in sorted({synset for _, synset in entries})]
    known = {synset for synset, _ in pairs}
    unknown = sorted({s for _, s in entries} - known)
    if unknown:
        raise errors.DataError(
            f"synset {unknown[0]} ({len(unknown)} unknown in all) is not in the class list "
            f"{labels_file or existing or 'found in the folders'}"
        )
    return pairs


def encode_checked(path):
    """Reads and decodes one image file; returns (jpeg_bytes, h, w, reencoded).

    Raises:
      DataError: the file cannot be decoded (truncated, not an image).
    """
    data = tf.io.gfile.GFile(path, "rb").read()
    try:
        image = Image.open(io.BytesIO(data))
        image_format, mode = image.format, image.mode
        image.load()  # Full decode: catches truncated and corrupt files.
    except (OSError, SyntaxError, ValueError) as e:
        raise errors.DataError(f"cannot decode image file {path}: {e}") from None
    width, height = image.size
    if image_format == "JPEG" and mode in ("RGB", "L"):
        return data, height, width, False
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=95)
    return out.getvalue(), height, width, True


class _Progress:
    """Thread-safe counters, shown as `common.progress.counter` shows them."""

    def __init__(self, total, show, label):
        self.lock = threading.Lock()
        self.done = self.reencoded = 0
        self.skipped = []
        self.bar = progress.counter(total, label=label, unit="image") if show else None

    def add(self, done=0, reencoded=0, skipped=None):
        with self.lock:
            self.done += done
            self.reencoded += reencoded
            if skipped:
                self.skipped.append(skipped)

    def show(self, final=False):
        if self.bar:
            self.bar.update(self.done, finalize=final)


def _shard_examples(entries, label_of, names, skip_corrupt, progress):
    for path, synset in entries:
        try:
            data, height, width, reencoded = encode_checked(path)
        except errors.DataError as e:
            if not skip_corrupt:
                raise errors.DataError(f"{e} (pass --skip_corrupt to leave it out)") from None
            logging.warning("Skipping %s", e)
            progress.add(done=1, skipped=path)
            continue
        progress.add(done=1, reencoded=int(reencoded))
        yield records.make_example(
            data,
            label_of[synset],
            synset=synset,
            text=names[synset],
            height=height,
            width=width,
            filename=os.path.basename(path),
        )


def build(
    input_dir,
    output_dir,
    split,
    *,
    labels_file=None,
    validation_labels_file=None,
    num_shards=None,
    num_workers=None,
    skip_corrupt=False,
    seed=0,
    progress=True,
):
    """Writes `<output_dir>/<split>-NNNNN-of-MMMMM` shards and `labels.txt`.

    Args:
      input_dir: the image folder (see the module doc for layouts).
      output_dir: where shards go (created; any tf.io.gfile path).
      split: "train" or "validation" (any plain name works).
      labels_file: class order and names, `synset[<TAB>name]` per line.
      validation_labels_file: synsets of a flat folder's images.
      num_shards: default: about `IMAGES_PER_SHARD` images per shard.
      num_workers: shards converted in parallel (threads); default CPU count.
      skip_corrupt: leave undecodable files out (logged) instead of failing.
      seed: the shuffle of files over shards.
      progress: print where the images come from and the progress (a bar
        on a terminal, plain lines elsewhere).

    Returns:
      `BuildResult(num_images, shards_written, shards_skipped, reencoded,
      skipped_files)`.

    Raises:
      DataError: missing or empty input, unknown synsets, an undecodable
        image (unless `skip_corrupt`), `output_dir` holding shards of another
        conversion. Completed shards stay; re-run to resume.
    """
    # The split names files (and input_dir/<split>): no path parts, no escape.
    if not re.fullmatch(r"[A-Za-z0-9_]+(?:[.-][A-Za-z0-9_]+)*", str(split)):
        raise errors.DataError(
            f"--split={split!r} is not a plain name (letters, digits, _ . -; no path parts)"
        )
    root = image_root(input_dir, split)
    entries = list_images(root, split, validation_labels_file=validation_labels_file)
    pairs = class_list(entries, labels_file=labels_file, output_dir=output_dir)
    label_of = {synset: i + 1 for i, (synset, _) in enumerate(pairs)}
    names = dict(pairs)
    random.Random(seed).shuffle(entries)
    num_shards = num_shards or max(1, -(-len(entries) // IMAGES_PER_SHARD))
    if num_shards > len(entries):  # the rest would be empty shards
        raise errors.DataError(
            f"--num_shards={num_shards} is more than the {len(entries)} images of "
            f"{input_dir}; give at most {len(entries)}"
        )
    if tf.io.gfile.exists(output_dir) and not tf.io.gfile.isdir(output_dir):
        raise errors.DataError(f"--output_dir={output_dir} is a file, not a directory")
    workers = num_workers or os.cpu_count() or 1
    manifest = build_manifest.describe(
        root,
        entries,
        pairs,
        num_shards=num_shards,
        seed=seed,
        num_workers=workers,
    )
    new_manifest = build_manifest.check_resumable(output_dir, split, manifest)
    new_labels = build_manifest.check_labels_file(output_dir, pairs)
    tf.io.gfile.makedirs(output_dir)
    records.remove_temporaries(output_dir)
    if new_labels:
        files.atomic_write(
            os.path.join(output_dir, labels.LABELS_FILE),
            "".join("{}\t{}\n".format(*pair) for pair in pairs),
        )
    if new_manifest:  # before the first shard: a shard is never of an unknown conversion
        build_manifest.write(output_dir, split, manifest)

    bounds = [len(entries) * i // num_shards for i in range(num_shards + 1)]
    todo, skipped_shards = [], 0
    tracker = _Progress(len(entries), progress, split)
    for shard in range(num_shards):
        path = os.path.join(output_dir, records.shard_name(split, shard, num_shards))
        shard_entries = entries[bounds[shard] : bounds[shard + 1]]
        if tf.io.gfile.exists(path):  # Complete: written under a temp name.
            skipped_shards += 1
            tracker.add(done=len(shard_entries))
        else:
            todo.append((path, shard_entries))
    plan = (
        f"{split}: {len(entries)} images of {len(pairs)} classes from {root}, "
        f"{len(todo)} of {num_shards} shards to write into {output_dir}"
    )
    if progress:  # where the images come from is news when a folder was guessed
        print(plan, flush=True)
    else:
        logging.info("%s", plan)

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = [
            pool.submit(
                records.write_shard,
                path,
                _shard_examples(shard_entries, label_of, names, skip_corrupt, tracker),
            )
            for path, shard_entries in todo
        ]
        pending = set(futures)
        try:
            while pending:
                finished, pending = concurrent.futures.wait(
                    pending, timeout=0.5, return_when=concurrent.futures.FIRST_EXCEPTION
                )
                tracker.show()
                for future in finished:
                    future.result()  # Raises the first error.
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    tracker.show(final=True)
    return BuildResult(len(entries), len(todo), skipped_shards, tracker.reencoded, tracker.skipped)
