"""Class names for a dataset, in label order.

Sources, first found wins:
  1. `labels_file`: one class per line in label order, `synset<TAB>name` or
     `synset name words...` (ImageNet's synset_words.txt) or just `synset`;
     UTF-8 (a byte-order mark is dropped), each synset once;
  2. `data_dir/labels.txt` (written by the converter and the built-in set);
  3. the records' `image/class/synset` and `image/class/text` (validation
     split, else train), read until every class is seen;
  4. generic names `class_0000`...

Example:
  >>> classes = load_class_list(data_dir="/data/imagenet", num_classes=1000)
  >>> classes[0]
  ClassInfo(index=0, synset='n01440764', name='tench, Tinca tinca')
"""

import collections
import os

from common import errors

# TensorFlow (and `records`, which loads it) is imported where a function
# needs it: `delving.training.config` reads a labels file to choose a preset
# before the flags are checked, when loading TensorFlow would be slow.

ClassInfo = collections.namedtuple("ClassInfo", ["index", "synset", "name"])
LABELS_FILE = "labels.txt"
_MAX_RECORDS_SCANNED = 200_000


def _is_local(path):
    return "://" not in str(path)


def _exists(path):
    """Whether `path` exists; plain files are looked at without TensorFlow."""
    if _is_local(path):
        return os.path.exists(path)
    import tensorflow as tf

    return tf.io.gfile.exists(path)


def read_text_lines(path, what):
    """`[(line_number, line), ...]` of a UTF-8 text file (a byte-order mark,
    as Windows editors write, is dropped).

    Args:
      path: a local or `tf.io.gfile` path.
      what: what the file is, for messages ("labels file").

    Raises:
      DataError: the file is missing or not UTF-8 (naming the first bad line).
    """
    if not _exists(path):
        raise errors.DataError(f"{what} {path} does not exist")
    if _is_local(path):
        if os.path.isdir(path):
            raise errors.DataError(f"{what} {path} is a directory, not a file")
        with open(path, "rb") as f:
            data = f.read()
    else:
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise errors.DataError(
            f"{what} {path} line {line} is not UTF-8 text (byte 0x{data[e.start]:02x}): "
            "save it as UTF-8"
        ) from None
    # "\n" only: str.splitlines would also split at form feeds and U+2028,
    # and the numbers would no longer be the editor's line numbers.
    return [(number, line.rstrip("\r")) for number, line in enumerate(text.split("\n"), 1)]


def count_classes(*, data_dir=None, labels_file=None):
    """Classes the labels file of the data lists (`labels_file_of`); None
    when there is none. Plain files are read without TensorFlow."""
    path = labels_file_of(data_dir=data_dir, labels_file=labels_file)
    return len(read_labels_file(path)) if path else None


def read_labels_file(path):
    """`[(synset, name), ...]` from a labels file (see the module doc).

    Raises:
      DataError: missing, not UTF-8, no classes, or a synset listed twice
        (one of its two labels would get no images).
    """
    pairs, line_of = [], {}
    for number, line in read_text_lines(path, "labels file"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t", 1) if "\t" in line else line.split(None, 1)
        synset = parts[0].strip()
        name = parts[1].strip() if len(parts) > 1 else synset
        if synset in line_of:
            raise errors.DataError(
                f"labels file {path} lists {synset} twice, on lines {line_of[synset]} and "
                f"{number}: each class must appear once"
            )
        line_of[synset] = number
        pairs.append((synset, name))
    if not pairs:
        raise errors.DataError(f"labels file {path} lists no classes")
    return pairs


def _from_file(path, num_classes):
    pairs = read_labels_file(path)
    if num_classes is not None and len(pairs) != num_classes:
        raise errors.DataError(
            f"labels file {path} lists {len(pairs)} classes but num_classes is {num_classes}"
        )
    return [ClassInfo(i, s, n) for i, (s, n) in enumerate(pairs)]


def _from_records(data_dir, num_classes, label_offset):
    """Scans one split's records for synsets and texts, stopping early."""
    import tensorflow as tf

    from pipelines import records

    for split in ("validation", "train"):
        files = tf.io.gfile.glob(os.path.join(data_dir, f"{split}-*"))
        files = sorted(f for f in files if ".tmp-" not in f)
        if not files:
            continue
        ds = tf.data.Dataset.from_tensor_slices(files).interleave(
            lambda f: tf.data.TFRecordDataset(f).ignore_errors(),
            cycle_length=min(len(files), 16),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        ds = (
            ds.take(_MAX_RECORDS_SCANNED)
            .map(
                lambda r: tf.io.parse_single_example(r, records.CLASS_FEATURES),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
            .batch(1024)
        )
        found = {}
        for batch in ds.as_numpy_iterator():
            for label, synset, text in zip(
                batch[records.LABEL], batch[records.SYNSET], batch[records.TEXT]
            ):
                index = int(label) - label_offset
                if 0 <= index < num_classes and synset and index not in found:
                    found[index] = (synset.decode(), text.decode() or synset.decode())
            if len(found) == num_classes:
                break
        if found:
            return [
                ClassInfo(i, *found.get(i, (f"class_{i:04d}",) * 2)) for i in range(num_classes)
            ]
    return None


def generic_classes(num_classes):
    return [ClassInfo(i, f"class_{i:04d}", f"class_{i:04d}") for i in range(num_classes)]


def labels_file_of(*, data_dir=None, labels_file=None):
    """The labels file that names the classes: `labels_file`, else
    `data_dir/labels.txt` where it exists; None when there is neither."""
    if labels_file:
        return labels_file
    if data_dir:
        path = os.path.join(data_dir, LABELS_FILE)
        if _exists(path):
            return path
    return None


def load_class_list(*, data_dir=None, labels_file=None, num_classes, label_offset=1):
    """The dataset's classes as `ClassInfo(index, synset, name)`, index order.

    Args:
      data_dir: dataset directory (for `labels.txt` or the records).
      labels_file: explicit labels file; wins over everything else.
      num_classes: number of classes expected; None: as many as the labels
        file lists (there must be one).
      label_offset: the record label of class index 0 (ImageNet: 1).

    Raises:
      DataError: the labels file is missing, empty or has another number of
        classes than `num_classes`.
      ValueError: `num_classes` is None and there is no labels file.
    """
    path = labels_file_of(data_dir=data_dir, labels_file=labels_file)
    if path:
        return _from_file(path, num_classes)
    if num_classes is None:
        raise ValueError(f"num_classes is needed: {data_dir} has no {LABELS_FILE}")
    import tensorflow as tf

    if data_dir and tf.io.gfile.isdir(data_dir):
        found = _from_records(data_dir, num_classes, label_offset)
        if found:
            return found
    return generic_classes(num_classes)
