"""Shared pieces of the reproduction experiments: the paper's numbers, tables, output files.

Every experiment binary writes into its `--output_dir`:

  <name>.md     the Markdown table(s) it also prints,
  <name>.json   every measured value, which `report.py` reads to write docs/REPRODUCTION.md,
  <name>*.png   its figures (matplotlib, Agg backend: no display needed).

The paper's reported numbers come from `delving.paper`.
"""

import json
import math
import os
import platform
import re
import shutil
import time

import matplotlib

from common import files

matplotlib.use("Agg")  # Before pyplot is imported anywhere: files only, no display.
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position

from delving.models.specs import PRELU_INIT_SLOPE  # noqa: E402
from delving.training import run_dir  # noqa: E402

ACTIVATION_LABELS = {
    "relu": "ReLU",
    "lrelu": f"LReLU (a={PRELU_INIT_SLOPE})",
    "prelu_shared": "PReLU, channel-shared",
    "prelu": "PReLU, channel-wise",
}

INIT_LABELS = {
    "he_fan_in": "He, fan-in (Eq. 10)",
    "he_fan_out": "He, fan-out (Eq. 14)",
    "xavier": "Xavier, Var=1/n",
}

# One colour per init / activation, the same in every figure.
COLORS = {
    "he_fan_in": "tab:red",
    "he_fan_out": "tab:orange",
    "xavier": "tab:blue",
    "relu": "tab:gray",
    "lrelu": "tab:green",
    "prelu_shared": "tab:purple",
    "prelu": "tab:red",
}


# Convergence (Fig. 2 and 3). A run has stalled when neither its training nor
# its validation error ever got this far below chance (validation counts too:
# it is measured without the augmentation, so a net that has started to learn
# shows it there first).
STALL_MARGIN = 0.05
# "Starts reducing error" (Fig. 2): the first epoch whose validation error is
# this far below chance.
PROGRESS_MARGIN = 0.20


def fmt(value, digits=2):
    """Formats a number for a table; None and NaN become a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
        return f"{value:.{digits}e}"
    return f"{value:.{digits}f}"


def markdown_table(headers, rows):
    """A GitHub Markdown table; cells are converted with str()."""
    lines = [
        "| " + " | ".join(str(h) for h in headers) + " |",
        "| " + " | ".join("---" for _ in headers) + " |",
    ]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, table has {len(headers)} columns: {row}")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def mean_std(values):
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def write_outputs(output_dir, name, *, markdown, results, figures=()):
    """Writes `<name>.md` and `<name>.json`, saves each (suffix, figure) as `<name><suffix>.png`.

    Returns the list of written paths. Figures are closed after saving.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    md_path = os.path.join(output_dir, f"{name}.md")
    files.atomic_write(md_path, markdown.rstrip() + "\n")
    paths.append(md_path)
    json_path = os.path.join(output_dir, f"{name}.json")
    files.atomic_write(json_path, json.dumps(results, indent=2))  # in the order of the runs
    paths.append(json_path)
    for suffix, fig in figures:
        png_path = os.path.join(output_dir, f"{name}{suffix}.png")
        save_figure(fig, png_path)
        paths.append(png_path)
    return paths


def save_figure(fig, path):
    """Saves a figure as the report's PNGs are saved, and closes it."""
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def read_results(output_dir, name):
    with open(os.path.join(output_dir, f"{name}.json")) as f:
        return json.load(f)


def hardware_summary():
    """CPU model, core count and memory of this machine, read from the OS."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            match = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.MULTILINE)
        if match:
            cpu = match.group(1).strip()
    except OSError:
        pass
    cores = os.cpu_count()
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    memory_gib = None
    try:
        with open("/proc/meminfo") as f:
            match = re.search(r"^MemTotal:\s*(\d+) kB", f.read(), re.MULTILINE)
        if match:
            memory_gib = int(match.group(1)) / 2**20
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": cores,
        "memory_gib": memory_gib,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


# What --quick overrides of the built-in preset: seconds instead of minutes.
QUICK_FIELDS = dict(
    width_multiplier=0.125,
    fc_units=32,
    image_size=32,
    scale_range=(32, 40),
    eval_resize=36,
    batch_size=16,
    epochs=1,
    steps_per_epoch=2,
)
# The config fields the report states for each model (all from config.json).
RECIPE_FIELDS = (
    "learning_rate",
    "warmup_epochs",
    "lr_schedule",
    "lr_decay_epochs",
    "epochs",
    "steps_per_epoch",
    "batch_size",
    "image_size",
    "scale_range",
    "eval_resize",
    "width_multiplier",
    "fc_units",
    "dropout",
    "weight_decay",
)


# A tiny built-in dataset for --quick runs (tests): seconds to generate.
QUICK_SPLITS = (("train", 48, 2), ("validation", 24, 1))


# The preset of every run on real photos (`--data_dir` given): the trainer's
# recipe for small photo sets, so the report's runs are what a user gets.
PHOTOS_PRESET = "photos"


def preset_for(data_dir):
    """The preset of the runs: PHOTOS_PRESET for a given `--data_dir`, else `builtin`."""
    return PHOTOS_PRESET if data_dir else "builtin"


def resolve_data_dir(data_dir, *, quick, output_dir):
    """`--data_dir` if given; else the built-in set (a tiny one under output_dir for --quick)."""
    from pipelines import builtin  # pylint: disable=import-outside-toplevel

    if data_dir:
        return data_dir
    if quick:
        return builtin.ensure_dataset(os.path.join(output_dir, "quick_data"), splits=QUICK_SPLITS)
    return builtin.ensure_dataset()


def train(*, model_dir, data_dir, verbose=1, preset="builtin", **fields):
    """One fresh training run on `data_dir` through `delving.training.loop`.

    A run whose loss becomes NaN is a result too: it comes back as
    `(None, seconds, message, history so far)` instead of raising.

    `fields` are `TrainConfig` fields; the rest comes from `preset` (by
    default `builtin`: the paper's recipe shrunk for the built-in set). `model_dir` is
    emptied first, so every number comes from this run, not a resumed one.

    Returns:
      (loop.TrainResult or None, seconds, divergence message or None, history).
    """
    from delving.training import config as config_lib  # pylint: disable=import-outside-toplevel
    from delving.training import loop  # pylint: disable=import-outside-toplevel

    if os.path.isdir(model_dir):
        shutil.rmtree(model_dir)
    cfg = config_lib.resolve_config(preset=preset, data_dir=data_dir, model_dir=model_dir, **fields)
    start = time.time()
    try:
        result = loop.train(cfg, verbose=verbose)
    except loop.TrainingDiverged as e:
        print(f"Diverged: {e}", flush=True)
        return None, time.time() - start, str(e), run_dir.read_history(model_dir)
    return result, time.time() - start, None, result.history
