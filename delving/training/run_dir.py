"""The files of a model_dir (layout in docs/ARCHITECTURE.md) and their writers.

```
model_dir/
  config.json          the resolved TrainConfig
  classes.tsv          index<TAB>synset<TAB>name, in label order
  checkpoints/         tf.train.CheckpointManager
  logs/train, logs/validation   TensorBoard
  training_log.csv     one row per epoch
  model.keras          the final model
```

Only the chief writes these: the trainer calls the writers on the chief
only, and `summary_writers` gives the other workers no-op writers.
"""

import csv
import io
import os

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from delving.training import config as config_lib

HISTORY_FIELDS = (
    "epoch",
    "step",
    "learning_rate",
    "train_loss",
    "train_top1_error",
    "train_top5_error",
    "val_loss",
    "val_top1_error",
    "val_top5_error",
    "images_per_sec",
)

# Table 1 of the paper: learned slopes of the 14-layer model (shared,
# channel-wise), for reference next to ours when the model is small_14.
TABLE1 = {
    "conv1": (0.681, 0.596),
    "conv2_1": (0.103, 0.321),
    "conv2_2": (0.099, 0.204),
    "conv2_3": (0.228, 0.294),
    "conv2_4": (0.561, 0.464),
    "conv3_1": (0.126, 0.196),
    "conv3_2": (0.089, 0.152),
    "conv3_3": (0.124, 0.145),
    "conv3_4": (0.062, 0.124),
    "conv3_5": (0.008, 0.134),
    "conv3_6": (0.210, 0.198),
    "fc1": (0.063, 0.074),
    "fc2": (0.031, 0.075),
}


def paths(model_dir):
    j = lambda name: os.path.join(model_dir, name)  # noqa: E731
    return {
        "config": j("config.json"),
        "classes": j("classes.tsv"),
        "checkpoints": j("checkpoints"),
        "tensorboard": j("logs"),
        "csv_log": j("training_log.csv"),
        "model": j("model.keras"),
    }


def _write_atomic(path, text):
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        f.write(text)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def check_compatible(cfg, error_type):
    """Raise `error_type` (one line) if model_dir is a file or holds a
    different network."""
    if tf.io.gfile.exists(cfg.model_dir) and not tf.io.gfile.isdir(cfg.model_dir):
        raise error_type(f"--model_dir={cfg.model_dir} is a file, not a directory")
    path = paths(cfg.model_dir)["config"]
    if not tf.io.gfile.exists(path):
        return
    diff = config_lib.architecture_diff(config_lib.load(path), cfg)
    if diff:
        what = ", ".join(f"{k}={old!r} (asked {new!r})" for k, (old, new) in diff.items())
        raise error_type(
            f"--model_dir={cfg.model_dir} holds a run with {what}; "
            "use another --model_dir or the same flags to resume"
        )


def write_config(cfg):
    tf.io.gfile.makedirs(cfg.model_dir)
    config_lib.save(cfg, paths(cfg.model_dir)["config"])


def write_classes(cfg, classes):
    """classes.tsv: `index<TAB>synset<TAB>name`, one line per class."""
    lines = [f"{c.index}\t{c.synset}\t{c.name}" for c in classes]
    _write_atomic(paths(cfg.model_dir)["classes"], "\n".join(lines) + "\n")


def read_classes(model_dir):
    """[(index, synset, name)] from classes.tsv."""
    with tf.io.gfile.GFile(paths(model_dir)["classes"]) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    return [(int(r[0]), r[1], r[2] if len(r) > 2 else "") for r in rows]


def read_history(model_dir):
    """Rows of training_log.csv as dicts of numbers ([] when absent)."""
    path = paths(model_dir)["csv_log"]
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        rows = list(csv.DictReader(f))
    return [
        {k: (int(v) if k in ("epoch", "step") else float(v)) for k, v in row.items()}
        for row in rows
    ]


def write_history(model_dir, rows):
    """Rewrite training_log.csv (a resumed epoch replaces its old row)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in HISTORY_FIELDS})
    _write_atomic(paths(model_dir)["csv_log"], out.getvalue())


def summary_writers(model_dir, chief):
    """TensorBoard writers for logs/train and logs/validation (no-op if not chief)."""
    if not chief:
        noop = tf.summary.create_noop_writer()
        return {"train": noop, "validation": noop}
    logs = paths(model_dir)["tensorboard"]
    return {
        name: tf.summary.create_file_writer(os.path.join(logs, name))
        for name in ("train", "validation")
    }


# `tf.summary.scalar` lives in the tensorboard package, which TF no longer
# installs; `tf.summary.write` with the scalars plugin's metadata writes the
# same event records from TF alone (`tensorboard --logdir <model_dir>/logs`;
# requirements.txt installs it).
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
)


def write_scalars(writer, step, scalars):
    with writer.as_default(step=step):
        for name, value in scalars.items():
            tf.summary.write(
                name.replace("/", "_per_"),
                tf.constant(float(value), tf.float32),
                metadata=_SCALAR_METADATA,
            )
    writer.flush()


def prelu_table(coefficients, cfg):
    """The learned PReLU slopes laid out like the paper's Table 1."""
    shared = cfg.activation == "prelu_shared"
    kind = "channel-shared" if shared else "channel-wise"
    with_paper = cfg.model == "small_14"
    lines = [f"Learned PReLU coefficients ({kind}, mean slope per layer; initial 0.25)"]
    header = f"  {'layer':<10} {'ours':>8}"
    if with_paper:
        header += f" {'Table 1':>8}"
    lines.append(header)
    for name, slope in coefficients.items():
        layer = name[: -len("_prelu")] if name.endswith("_prelu") else name
        line = f"  {layer:<10} {slope:8.3f}"
        if with_paper and layer in TABLE1:
            line += f" {TABLE1[layer][0 if shared else 1]:8.3f}"
        lines.append(line)
    return "\n".join(lines)
