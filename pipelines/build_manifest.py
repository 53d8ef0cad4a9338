"""What a TFRecord conversion is of, so that a re-run resumes only that one.

`tfrecord_builder.build` writes `<output_dir>/<split>.manifest.json` before
its first shard: the number of shards, the seed, the class list, and per
class the number of images and a digest of their (relative path, size).
Which image goes to which shard follows from all of these, so a shard left
by a conversion of other images, another shard count or seed, would sit
beside the new shards and duplicate some images and lose others. A re-run
therefore resumes only when everything matches and otherwise stops, naming
the first difference; it never removes or overwrites the user's shards. A
conversion that completed no shard yet describes nothing: its manifest is
simply replaced.

The name does not match `<split>-*`, the readers' shard pattern.
"""

import collections
import concurrent.futures
import hashlib
import json
import os

import tensorflow as tf

from common import errors, files
from pipelines import labels, records

VERSION = 1


def manifest_path(output_dir, split):
    return os.path.join(output_dir, f"{split}.manifest.json")


def _size(path):
    try:
        return tf.io.gfile.stat(path).length
    except tf.errors.OpError as e:  # removed or unreadable since the listing
        raise errors.DataError(f"cannot read image file {path}: {e.message}") from None


def describe(root, entries, classes, *, num_shards, seed, num_workers):
    """The manifest (a JSON-able dict) of a conversion.

    Args:
      root: the folder the image paths are under (their names are kept
        relative to it, so a moved input folder is still the same input).
      entries: `[(path, synset), ...]`, any order.
      classes: `[(synset, name), ...]` in label order.
      num_shards, seed: the layout.
      num_workers: parallel file-size look-ups (slow on remote file systems).
    """
    with concurrent.futures.ThreadPoolExecutor(num_workers) as pool:
        sizes = list(pool.map(_size, [path for path, _ in entries]))
    counts, digests = collections.Counter(), collections.defaultdict(hashlib.sha256)
    for (path, synset), size in sorted(zip(entries, sizes)):
        name = path[len(root) :].lstrip("/")
        counts[synset] += 1
        digests[synset].update(f"{name}\t{size}\n".encode("utf-8", "surrogateescape"))
    return {
        "version": VERSION,
        "num_images": len(entries),
        "num_shards": num_shards,
        "seed": seed,
        "classes": [list(pair) for pair in classes],
        "images": {s: {"count": counts[s], "sha256": digests[s].hexdigest()} for s in counts},
    }


def _summary(manifest):
    return "{} images in {} shards (seed {})".format(
        manifest.get("num_images"), manifest.get("num_shards"), manifest.get("seed")
    )


def _class_difference(old, new):
    """The first difference of two `[(synset, name), ...]` lists, or None."""
    old, new = [tuple(p) for p in old], [tuple(p) for p in new]
    for i in range(max(len(old), len(new))):
        was = "{} ({})".format(*old[i]) if i < len(old) else "none"
        now = "{} ({})".format(*new[i]) if i < len(new) else "none"
        if was != now:
            return f"class {i + 1} is {now}, was {was}"
    return None


def _first_difference(old, new):
    """What differs first between two manifests, in words; None if nothing."""
    if old.get("version") != new["version"]:
        return f"manifest format {old.get('version')}, this converter's is {new['version']}"
    for key in ("num_shards", "seed"):
        if old.get(key) != new[key]:
            return f"--{key}={new[key]}, was {old.get(key)}"
    changed = _class_difference(old.get("classes", []), new["classes"])
    if changed:
        return changed
    old_images = old.get("images", {})
    for synset in sorted(set(old_images) | set(new["images"])):
        was, now = old_images.get(synset, {}), new["images"].get(synset, {})
        if was.get("count", 0) != now.get("count", 0):
            return f"{synset} has {now.get('count', 0)} images, was {was.get('count', 0)}"
        if was != now:
            return f"{synset}'s {now['count']} images have other names or sizes"
    return None


def _read(path):
    try:
        with tf.io.gfile.GFile(path) as f:
            manifest = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.DataError(f"{path} is not a conversion manifest: {e}") from None
    if not isinstance(manifest, dict):
        raise errors.DataError(f"{path} is not a conversion manifest: not a JSON object")
    return manifest


def _listing(output_dir):
    """Names in `output_dir` without the temporaries of unfinished writes."""
    if not tf.io.gfile.isdir(output_dir):
        return []
    return [n for n in tf.io.gfile.listdir(output_dir) if ".tmp-" not in n]


def check_resumable(output_dir, split, manifest):
    """Whether `split`'s conversion into `output_dir` may go on (see the
    module doc); returns True when `manifest` must be written first.

    Raises:
      DataError: `output_dir` holds shards of `split` that are not of this
        conversion, or that nothing says what they are of.
    """
    path = manifest_path(output_dir, split)
    name = os.path.basename(path)
    done = sorted(n for n in _listing(output_dir) if n.startswith(f"{split}-"))
    if not done:
        return True
    advice = f"use another --output_dir, or remove its {split}-* files and {name}"
    if not tf.io.gfile.exists(path):
        raise errors.DataError(
            f"--output_dir={output_dir} holds {split} shards ({done[0]}, ...) but no {name} "
            f"that says what they were converted from: {advice}"
        )
    old = _read(path)
    difference = _first_difference(old, manifest)
    if difference:
        raise errors.DataError(
            f"--output_dir={output_dir} holds a {split} conversion of {_summary(old)}; this one "
            f"has {_summary(manifest)} ({difference}): {advice}"
        )
    expected = {
        records.shard_name(split, i, manifest["num_shards"]) for i in range(manifest["num_shards"])
    }
    foreign = [n for n in done if n not in expected]
    if foreign:  # the reader takes every `<split>-*` file
        raise errors.DataError(
            f"--output_dir={output_dir} holds {foreign[0]}, which is not one of this "
            f"conversion's {manifest['num_shards']} {split} shards: {advice}"
        )
    return False


def write(output_dir, split, manifest):
    files.atomic_write(manifest_path(output_dir, split), json.dumps(manifest, indent=1) + "\n")


def check_labels_file(output_dir, classes):
    """Whether `output_dir/labels.txt` must be written for `classes`.

    Raises:
      DataError: it exists with other classes and shards (of any split)
        were labelled by it: rewriting it would misname their labels.
    """
    path = os.path.join(output_dir, labels.LABELS_FILE)
    if not tf.io.gfile.exists(path):
        return True
    difference = _class_difference(labels.read_labels_file(path), classes)
    if not difference:
        return False
    if not any(records.is_shard_name(n) for n in _listing(output_dir)):
        return True
    raise errors.DataError(
        f"{path}, which the shards in --output_dir={output_dir} are labelled by, differs from "
        f"this class list ({difference}): leave --labels_file out to use it, or use another "
        "--output_dir"
    )
