"""Writes docs/REPRODUCTION_PHOTOS.md (real photos) from the experiments' JSON results.

It also draws the figures that come from the results rather than from one
experiment (the channel-wise slopes' spread, their evolution).

Every judgement ("larger than twice the standard error", "conv1's slope is
the largest", "the paper's ranking does not hold") is computed from the
results passed in; the only numbers not measured are the paper's
(`delving.paper`). The shapes' Table 1 values come from the shapes report's
own results when they are there.
"""

import json
import math
import os

import numpy as np

from delving import paper
from delving.experiments import common, report_text, slope_evolution, slope_tables
from pipelines import build_manifest

#: Table 2's claims, as (better, worse) pairs, and the pair the paper finds equal.
RANKING = (("prelu", "prelu_shared"), ("prelu_shared", "relu"))
EQUAL = ("lrelu", "relu")
DATA_PLACEHOLDER = "$DATA_DIR"


def _done(runs):
    return [r for r in runs if not r.get("diverged")]


def difference(results, a, b, key):
    """(mean of a - mean of b, its standard error) in points; the error is None
    unless both have two or more completed runs."""
    va = [100 * r[key] for r in _done(results["runs"][a])]
    vb = [100 * r[key] for r in _done(results["runs"][b])]
    if not va or not vb:
        return None, None
    (ma, sa), (mb, sb) = common.mean_std(va), common.mean_std(vb)
    if len(va) < 2 or len(vb) < 2:
        return ma - mb, None
    return ma - mb, math.sqrt(sa**2 / len(va) + sb**2 / len(vb))


def _beyond(diff, se):
    """'yes', 'no' or '-' (no spread to judge by): |diff| > 2 SE?"""
    if diff is None or se is None:
        return "-"
    return "yes" if abs(diff) > 2 * se else "no"


def table2(results):
    """Table 2: mean ± std, per seed, and the difference to ReLU against 2 SE."""
    n = len(results["seeds"])
    headers = [
        "activation",
        f"top-1 err (mean ± std, {n} seeds)",
        "top-5 err",
        "top-1 per seed",
        "top-5 per seed",
        "top-1 - ReLU (2 SE)",
        "> 2 SE",
        "top-5 - ReLU (2 SE)",
        "> 2 SE",
        "paper top-1/top-5",
    ]
    rows = []
    for a, s in results["summary"].items():
        row = [common.ACTIVATION_LABELS[a]]
        row += ["{:.2f} ± {:.2f}".format(*(100 * v for v in s[k])) for k in _KEYS]
        for key in _KEYS:
            row.append(
                ", ".join(
                    "diverged" if r.get("diverged") else f"{100 * r[key]:.2f}"
                    for r in results["runs"][a]
                )
            )
        for key in _KEYS:
            if a == "relu" or "relu" not in results["runs"]:
                row += ["-", "-"]
                continue
            diff, se = difference(results, a, "relu", key)
            row.append(
                "-" if diff is None else f"{diff:+.2f} ({'-' if se is None else f'{2 * se:.2f}'})"
            )
            row.append(_beyond(diff, se))
        row.append("{:.2f}/{:.2f}".format(*paper.TABLE2[a]))
        rows.append(row)
    return common.markdown_table(headers, rows)


_KEYS = ("val_top1_error", "val_top5_error")


def ranking_sentences(results):
    """Where the paper's ranking holds and where it does not, in top-1 error."""
    runs, label = results["runs"], common.ACTIVATION_LABELS
    fails, holds = [], []
    for better, worse in RANKING:
        if better not in runs or worse not in runs:
            continue
        diff, se = difference(results, better, worse, "val_top1_error")
        if diff is None:
            continue
        said = f"{label[better]} vs {label[worse]}: {diff:+.2f} points" + (
            f" (2 SE {2 * se:.2f})" if se is not None else " (one seed, no spread)"
        )
        if diff < 0 and se is not None and -diff > 2 * se:
            holds.append(f"{label[better]} is better than {label[worse]} ({said})")
        elif diff < 0:
            fails.append(
                f"{label[better]} is better than {label[worse]} only within noise ({said})"
            )
        else:
            fails.append(
                f"{label[better]} is **not** better than {label[worse]} ({said}"
                + (", beyond 2 SE: the reverse order" if se is not None and diff > 2 * se else "")
                + ")"
            )
    a, b = EQUAL
    if a in runs and b in runs:
        diff, se = difference(results, a, b, "val_top1_error")
        if diff is not None:
            said = f"{diff:+.2f} points" + (
                f", 2 SE {2 * se:.2f}" if se is not None else ", one seed"
            )
            if se is not None and abs(diff) > 2 * se:
                fails.append(f"{label[a]} differs from {label[b]} beyond noise ({said})")
            else:
                holds.append(f"{label[a]} is on a par with {label[b]} ({said})")
    lines = []
    if fails:
        lines.append(
            "- **Where the paper's ranking (PReLU channel-wise < channel-shared < ReLU, "
            "LReLU ~ ReLU, in top-1 error) does not hold on these photos**: "
            + "; ".join(fails)
            + "."
        )
    else:
        lines.append(
            "- The paper's ranking (PReLU channel-wise < channel-shared < ReLU, LReLU ~ ReLU) "
            "holds on these photos, every step of it beyond twice the standard error."
        )
    if holds:
        lines.append("- Where it holds: " + "; ".join(holds) + ".")
    return lines


def channel_spread(runs, layer):
    """(std over the channels, mean over seeds; min and max over every seed's channels)."""
    per_seed = [r["prelu_channels"][layer] for r in _done(runs) if r.get("prelu_channels")]
    if not per_seed or len(per_seed[0]) < 2:
        return None
    stds = [float(np.std(c)) for c in per_seed]
    return sum(stds) / len(stds), min(map(min, per_seed)), max(map(max, per_seed))


def table1(results, shapes=None):
    """Table 1: learned slopes per layer, ours on photos beside the paper's and the shapes'."""
    summary = results["summary"]
    shapes_summary = (shapes or {}).get("summary", {})
    variants = [a for a in ("prelu_shared", "prelu") if "prelu" in summary.get(a, {})]
    if not variants:
        return ""
    headers = ["layer"]
    for a in variants:
        kind = "shared" if a == "prelu_shared" else "channel-wise mean"
        headers += [f"{kind}: photos", f"{kind}: paper"]
        if "prelu" in shapes_summary.get(a, {}):
            headers.append(f"{kind}: shapes")
        if a == "prelu":
            headers.append("channel-wise: std over channels (min-max)")
    rows = []
    for layer in summary[variants[0]]["prelu"]:
        row = [layer]
        for a in variants:
            mean, std = summary[a]["prelu"].get(layer, (None, None))
            reported = paper.TABLE1.get(layer)
            row.append(f"{mean:.3f} ± {std:.3f}" if mean is not None else "-")
            row.append(
                common.fmt(reported[0 if a == "prelu_shared" else 1], 3) if reported else "-"
            )
            if "prelu" in shapes_summary.get(a, {}):
                theirs = shapes_summary[a]["prelu"].get(layer)
                row.append(f"{theirs[0]:.3f}" if theirs else "-")
            if a == "prelu":
                spread = channel_spread(results["runs"][a], layer)
                row.append("-" if spread is None else "{:.3f} ({:.3f} to {:.3f})".format(*spread))
        rows.append(row)
    return common.markdown_table(headers, rows)


def plot_channel_spread(results):
    """Per layer: every channel's slope of the channel-wise runs, with the means."""
    s = results["summary"]
    if "prelu" not in s.get("prelu", {}):
        return None
    layers = list(s["prelu"]["prelu"])
    fig, ax = common.plt.subplots(figsize=(10, 3.8))
    data = [
        [a for r in _done(results["runs"]["prelu"]) for a in r["prelu_channels"][l]] for l in layers
    ]
    ax.boxplot(data, positions=range(len(layers)), widths=0.5, showfliers=True)
    ax.plot(
        range(len(layers)),
        [paper.TABLE1[l][1] for l in layers],
        "D",
        color="black",
        mfc="white",
        label="paper, channel-wise mean (Table 1)",
    )
    if "prelu" in s.get("prelu_shared", {}):
        ax.plot(
            range(len(layers)),
            [s["prelu_shared"]["prelu"][l][0] for l in layers],
            "s-",
            color=common.COLORS["prelu_shared"],
            label="ours, channel-shared (mean over seeds)",
        )
    ax.set_xticks(list(range(len(layers))), layers, rotation=45, fontsize=8)
    ax.set_ylabel("learned slope a")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Real photos: channel-wise PReLU slopes, every channel of every seed", fontsize=11)
    fig.tight_layout()
    return fig


def figures(work_dir):
    """[(name, figure)] the photo report draws itself from the results and runs."""
    act = common.read_results(os.path.join(work_dir, "activations"), "activations")
    out = []
    spread = plot_channel_spread(act)
    if spread is not None:
        out.append(("activations_channels", spread))
    run_dirs = {
        f"{common.ACTIVATION_LABELS[a]}, seed {act['seeds'][0]}": os.path.join(
            work_dir, "activations", "runs", f"{a}_seed{act['seeds'][0]}"
        )
        for a in ("prelu_shared", "prelu")
        if a in act["runs"]
    }
    evolution = slope_evolution.histories(run_dirs)
    if evolution:
        out.append(("slope_evolution", slope_evolution.plot(evolution)))
    return out


def data_line(data_dir, results):
    """The dataset in words: image counts from our builder's manifests, classes from the runs."""
    counts = {}
    for split in ("train", "validation"):
        path = build_manifest.manifest_path(data_dir, split)
        if os.path.exists(path):
            with open(path) as f:
                counts[split] = json.load(f)["num_images"]
    done = [r for runs in results["runs"].values() for r in _done(runs)]
    classes = done[0]["num_classes"] if done else "?"
    val = counts.get("validation", done[0]["val_count"] if done else "?")
    return (
        f"- **Data**: real photos, TFRecords written by our builder "
        f"(`python -m pipelines.build_tfrecords`) in `{DATA_PLACEHOLDER}`: {classes} classes, "
        f"{counts.get('train', '?')} training and {val} validation images. The paper uses "
        "ImageNet 2012: 1.28 M training images, 1000 classes."
    )


def activations_section(results, markdown_t2, figures_):
    lines = [
        "## 1. ReLU vs LReLU vs PReLU on real photos (Table 2)",
        "",
        "**Paper** (ImageNet, 10-view, top-1/top-5 error): "
        + ", ".join(
            f"{common.ACTIVATION_LABELS[a]} {t1:.2f}/{t5:.2f}"
            for a, (t1, t5) in paper.TABLE2.items()
        )
        + ".",
        "",
        f"**Ours**: `small_14` with each activation, seeds {results['seeds']}, 10-view testing "
        "of the final model on the validation split; mean ± sample std over the seeds. "
        '"> 2 SE": whether the difference of the means to ReLU is larger than twice its '
        "standard error (sqrt(s_a^2/n_a + s_relu^2/n_relu)).",
        "",
    ]
    for key in ("activations",):
        if key in figures_:
            lines += [f"![{key}]({figures_[key]})", ""]
    lines += [markdown_t2, ""]
    if "relu" in results["runs"]:
        lines += ranking_sentences(results)
    diverged = sum(len(r) - len(_done(r)) for r in results["runs"].values())
    if diverged:
        lines.append(f"- {diverged} run(s) diverged (loss NaN) and are left out of the means.")
    lines.append("")
    return "\n".join(lines)


def slopes_section(results, shapes, figures_, shapes_source=None):
    t1 = table1(results, shapes)
    if not t1:
        return ""
    lines = [
        "## 2. Learned PReLU slopes on real photos (Table 1)",
        "",
        "**Paper**: conv1 learns the largest slopes (0.681 shared, 0.596 channel-wise); the "
        "deeper conv stages learn smaller ones. **Ours**: the final slopes of the Table 2 "
        "PReLU runs, mean ± std over seeds; for channel-wise, the std over a layer's "
        "channels (averaged over seeds) and the smallest and largest channel of any seed"
        + (
            "; the shapes' values are those of the same runs on the built-in set "
            f"(from `{shapes_source}`)."
            if shapes
            else "; the shapes' values are left out: the shapes report's results were not found."
        ),
        "",
    ]
    for key in ("activations_coefficients", "activations_channels", "slope_evolution"):
        if key in figures_:
            lines += [f"![{key}]({figures_[key]})", ""]
    lines += [t1, ""]
    for a in ("prelu_shared", "prelu"):
        for name, res in (("Photos", results), ("Shapes", shapes or {})):
            per_layer = res.get("summary", {}).get(a, {}).get("prelu")
            if per_layer:
                lines.append(
                    f"- {name}, {common.ACTIVATION_LABELS[a]}: "
                    + report_text.slope_pattern(per_layer, a)
                )
    lines.append("")
    return "\n".join(lines)


def _shapes_results(shapes_work_dir, shapes_report):
    """(the shapes' activations results, where they came from), or (None, None).

    Their runs when `shapes_work_dir` holds them, else the slopes the shapes
    report `shapes_report` published: a clone has the report, not its runs.
    """
    path = os.path.join(shapes_work_dir or "", "activations", "activations.json")
    if shapes_work_dir and os.path.exists(path):
        return common.read_results(os.path.dirname(path), "activations"), path
    if shapes_report and os.path.exists(shapes_report):
        with open(shapes_report) as f:
            published = slope_tables.read_coefficient_table(f.read())
        if published:
            return published, shapes_report
    return None, None


CONVERGENCE_NOT_RUN = """## 3. Convergence of deep plain nets (Fig. 2/3): not run here

This report was made without `--convergence`. Fig. 2/3 on the photos (the
30-layer net and model B, ReLU, the rectifier init against Xavier's, 2
seeds each) costs 1.2 hours or more on 2 cores beyond the tables above,
which would take the report past its 3-hour budget; the figures on the
built-in shapes are in docs/REPRODUCTION.md, and `--convergence` adds
them here.
"""


def render(
    *,
    data_dir,
    work_dir,
    runs,
    total_seconds,
    started,
    figures,
    quick,
    versions,
    load,
    report_command,
    shapes_work_dir=None,
    shapes_report=None,
    jobs=1,
):
    """The whole REPRODUCTION_PHOTOS.md as a string, `data_dir` written as $DATA_DIR."""
    act = common.read_results(os.path.join(work_dir, "activations"), "activations")
    shapes, shapes_source = _shapes_results(shapes_work_dir, shapes_report)
    header = [
        "# Reproducing *Delving Deep into Rectifiers* on real photos at CPU scale",
        "",
        f"Generated by `{report_command}`. Do not edit by hand: every measured number "
        "below comes from the runs that command performed (their JSON, tables and training "
        f"logs are under `{work_dir}/`); the paper's numbers beside them are its own "
        "(Tables 1 and 2 of arXiv:1502.01852). `$DATA_DIR` is the folder of TFRecords the "
        "report was given. Signal propagation at initialization does not depend on the "
        "data: it is in docs/REPRODUCTION.md, with the same experiments on the built-in "
        "shapes.",
        "",
    ]
    setup = report_text.setup_section(
        hardware=common.hardware_summary(),
        versions=versions,
        runs=runs,
        total_seconds=total_seconds,
        started=started,
        load=load,
        jobs=jobs,
        data_info=None,
        quick=quick,
        recipe=report_text.recipe_of(work_dir),
        data_line=data_line(data_dir, act),
    )
    parts = ["\n".join(header), setup]
    parts.append(activations_section(act, table2(act), figures))
    parts.append(slopes_section(act, shapes, figures, shapes_source))
    if "convergence" in runs:
        conv = common.read_results(os.path.join(work_dir, "convergence"), "convergence")
        with open(os.path.join(work_dir, "convergence", "convergence.md")) as f:
            conv_md = f.read()
        runs_said = (
            "on the real photos. Every run is `python -m delving.train "
            f"--data_dir={DATA_PLACEHOLDER} --preset={conv.get('preset', 'builtin')} "
            "--model=<model> --activation=relu --init=<init> --seed=<seed>` with the recipe "
            "below (the preset's per-model values, shortened by the experiment's `--epochs` "
            "where given)"
        )
        parts.append(
            report_text.convergence_section(
                conv, conv_md, figures.get("convergence", ""), runs_said
            ).replace("## 2. Convergence", "## 3. Convergence", 1)
        )
    else:
        parts.append(CONVERGENCE_NOT_RUN)
    text = "\n".join(p for p in parts if p).rstrip() + "\n"
    return text.replace(f"--data_dir={data_dir}", f"--data_dir={DATA_PLACEHOLDER}")
