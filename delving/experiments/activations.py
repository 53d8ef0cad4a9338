r"""ReLU vs LReLU vs PReLU on the 14-layer model (Table 2), and the learned slopes (Table 1).

Trains `small_14` (width-reduced to fit a CPU) with each of `relu`, `lrelu`
(fixed slope 0.25), `prelu_shared` and `prelu` (channel-wise), for the same
set of seeds and the same recipe, on the built-in dataset through
`delving.training.loop`; evaluates each final model on the validation split with
10-view testing (the paper's Table 2 protocol) and reports the mean and
spread of top-1/top-5 error over seeds. For both PReLU variants the mean
learned slope of every layer is printed in Table 1's layout beside the
paper's.

Usage:
  python -m delving.experiments.activations --output_dir=/tmp/activations [--quick]
"""

import os
import time

from absl import app, flags

from common import cli
from delving import paper
from delving.models.specs import PRELU_INIT_SLOPE

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", "runs/experiments/activations", "Where the tables, JSON, figures and runs go."
)
_QUICK = flags.DEFINE_bool(
    "quick",
    False,
    "A tiny dataset (unless --data_dir is given), a few steps, one seed (unless --seeds is "
    "given) and (unless --activations is given) relu and prelu only, for tests.",
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFRecords in the ImageNet schema; default: the built-in dataset."
)
_ACTIVATIONS = flags.DEFINE_list(
    "activations", "relu,lrelu,prelu_shared,prelu", "Activations to compare."
)
_SEEDS = cli.define_int_list(
    "seeds", "0,1,2,3,4", "Seeds; every activation is trained with each.", example="0,1,2"
)
_EPOCHS = flags.DEFINE_integer(
    "epochs",
    26,
    "Epochs per run (the built-in preset's default run has 40; 26 keeps the 20 runs of the "
    "report within its hour on 2 cores). The rate is divided by 10 for the last third and "
    "again for the last sixth of them.",
    lower_bound=1,
)

_LEARNING_RATE = flags.DEFINE_float(
    "learning_rate",
    0.01,
    "Peak learning rate of every run. Half the built-in preset's 0.02: at 0.02 ReLU and "
    "channel-shared PReLU stall in some seeds, and a ranking of stalled runs says nothing "
    "about accuracy (docs/RECIPE_SWEEPS.md).",
    lower_bound=0.0,
)

_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size",
    None,
    "Crop size of every run; the training scale range and the test resize follow it at the "
    "preset's ratios (1.25 and 1.125). Default: the preset's.",
    lower_bound=32,
)

NAME = "activations"
ACTIVATIONS = tuple(paper.TABLE2)  # Table 2's rectifiers, in its order


flags.register_validator(
    "activations",
    lambda v: bool(v) and set(v) <= set(ACTIVATIONS),
    f"must be a non-empty list of {', '.join(ACTIVATIONS)}",
)


def crop_fields(image_size):
    """TrainConfig fields for crops of `image_size`, scaled as both CPU presets scale theirs."""
    return dict(
        image_size=image_size,
        scale_range=(image_size, round(image_size * 1.25)),
        eval_resize=round(image_size * 1.125),
    )


def run(*, data_dir, output_dir, activations, seeds, train_fields, verbose=1, preset="builtin"):
    """Trains every (activation, seed) and tests it with 10 views; returns the results dict."""
    from delving.evaluation import validation
    from delving.experiments import common  # pylint: disable=import-outside-toplevel
    from delving.models import networks  # pylint: disable=import-outside-toplevel
    from delving.training import inputs

    runs, recipes = {}, {}
    for activation in activations:
        runs[activation] = []
        for seed in seeds:
            result, seconds, diverged, history = common.train(
                model_dir=os.path.join(output_dir, "runs", f"{activation}_seed{seed}"),
                data_dir=data_dir,
                verbose=verbose,
                preset=preset,
                model="small_14",
                activation=activation,
                seed=seed,
                **train_fields,
            )
            if diverged:  # Kept as a result; left out of the means.
                runs[activation].append(
                    {"seed": seed, "seconds": seconds, "history": history, "diverged": diverged}
                )
                continue
            cfg = result.config
            recipes["small_14"] = {k: getattr(cfg, k) for k in common.RECIPE_FIELDS}
            ten_view = validation.evaluate(
                result.model,
                inputs.source_from_config(cfg),
                view="10view",
                scales=(cfg.eval_resize,),
                image_size=cfg.image_size,
                batch_size=cfg.batch_size,
            )
            runs[activation].append(
                {
                    "seed": seed,
                    "seconds": seconds,
                    "history": result.history,
                    "val_top1_error": ten_view["top1_error"],
                    "val_top5_error": ten_view["top5_error"],
                    "val_count": ten_view["count"],
                    "center_top1_error": result.history[-1]["val_top1_error"],
                    "prelu": {_layer(name): slope for name, slope in result.prelu.items()},
                    # Every channel's slope: Table 1's spread over channels.
                    "prelu_channels": {
                        _layer(name): slopes
                        for name, slopes in networks.prelu_slopes(result.model).items()
                    },
                    "num_classes": cfg.num_classes,
                }
            )
    return {
        "runs": runs,
        "seeds": list(seeds),
        "recipes": recipes,
        "train_fields": train_fields,
        "data_dir": data_dir,
        "preset": preset,
    }


def _layer(prelu_name):
    """'conv2_1_prelu' -> 'conv2_1' (Table 1's row names)."""
    return prelu_name[: -len("_prelu")] if prelu_name.endswith("_prelu") else prelu_name


def summarize(results):
    """Mean and spread over seeds of the errors, and of each layer's slope."""
    from delving.experiments import common  # pylint: disable=import-outside-toplevel

    summary = {}
    for activation, all_runs in results["runs"].items():
        runs = [r for r in all_runs if not r.get("diverged")]
        s = {"completed": len(runs), "diverged": len(all_runs) - len(runs)}
        for key in ("val_top1_error", "val_top5_error", "center_top1_error"):
            s[key] = common.mean_std([r[key] for r in runs])
        if runs and runs[0]["prelu"]:
            s["prelu"] = {
                layer: common.mean_std([r["prelu"][layer] for r in runs])
                for layer in runs[0]["prelu"]
            }
        summary[activation] = s
    results["summary"] = summary
    return results


def error_table(results):
    from delving.experiments import common  # pylint: disable=import-outside-toplevel

    n = len(results["seeds"])
    headers = [
        "activation",
        f"top-1 err (ours, mean ± std over {n} seeds)",
        "top-5 err (ours)",
        "top-1 err per seed",
        "paper top-1",
        "paper top-5",
    ]
    rows = []
    for activation, s in results["summary"].items():
        per_seed = ", ".join(
            "diverged" if r.get("diverged") else f"{100 * r['val_top1_error']:.1f}"
            for r in results["runs"][activation]
        )
        reported = paper.TABLE2.get(activation, (None, None))
        rows.append(
            [
                common.ACTIVATION_LABELS[activation],
                "{:.2f} ± {:.2f}".format(*(100 * v for v in s["val_top1_error"])),
                "{:.2f} ± {:.2f}".format(*(100 * v for v in s["val_top5_error"])),
                per_seed,
                common.fmt(reported[0]),
                common.fmt(reported[1]),
            ]
        )
    return common.markdown_table(headers, rows)


def plot_errors(results):
    from delving.experiments import common  # pylint: disable=import-outside-toplevel

    fig, axes = common.plt.subplots(1, 2, figsize=(10, 3.8))
    names = list(results["summary"])
    for ax, key, paper_index, title in (
        (axes[0], "val_top1_error", 0, "top-1"),
        (axes[1], "val_top5_error", 1, "top-5"),
    ):
        xs = range(len(names))
        means = [100 * results["summary"][a][key][0] for a in names]
        stds = [100 * results["summary"][a][key][1] for a in names]
        ax.bar(
            xs,
            means,
            yerr=stds,
            capsize=4,
            color=[common.COLORS[a] for a in names],
            alpha=0.8,
            label="ours (mean ± std over seeds)",
        )
        for x, a in zip(xs, names):
            done = [r for r in results["runs"][a] if not r.get("diverged")]
            ax.plot([x] * len(done), [100 * r[key] for r in done], "k.", ms=4)
        reported = [paper.TABLE2[a][paper_index] for a in names]
        ax.plot(xs, reported, "D", color="black", mfc="white", label="paper (ImageNet, Table 2)")
        ax.set_xticks(list(xs), [common.ACTIVATION_LABELS[a] for a in names], fontsize=7)
        ax.set_ylabel(f"{title} error (%), 10-view")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("small_14: activations (paper Table 2)", fontsize=11)
    fig.tight_layout()
    return fig


def plot_coefficients(results):
    from delving.experiments import common  # pylint: disable=import-outside-toplevel

    fig, ax = common.plt.subplots(figsize=(10, 3.8))
    for a, paper_index, marker in (("prelu_shared", 0, "s"), ("prelu", 1, "o")):
        if "prelu" not in results["summary"].get(a, {}):
            continue
        layers = list(results["summary"][a]["prelu"])
        xs = range(len(layers))
        means = [results["summary"][a]["prelu"][l][0] for l in layers]
        stds = [results["summary"][a]["prelu"][l][1] for l in layers]
        ax.errorbar(
            xs,
            means,
            yerr=stds,
            fmt=marker + "-",
            color=common.COLORS[a],
            capsize=3,
            label=f"{common.ACTIVATION_LABELS[a]}: ours",
        )
        ax.plot(
            xs,
            [paper.TABLE1.get(l, (float("nan"),) * 2)[paper_index] for l in layers],
            marker + "--",
            color=common.COLORS[a],
            mfc="white",
            alpha=0.6,
            label=f"{common.ACTIVATION_LABELS[a]}: paper (Table 1)",
        )
        ax.set_xticks(list(xs), layers, rotation=45, fontsize=8)
    ax.axhline(
        PRELU_INIT_SLOPE, color="gray", lw=0.8, ls=":", label=f"initial slope {PRELU_INIT_SLOPE}"
    )
    ax.set_ylabel("learned slope a (layer mean)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("small_14: learned PReLU coefficients (paper Table 1)", fontsize=11)
    fig.tight_layout()
    return fig


def main(argv):
    from common import quiet_start  # pylint: disable=import-outside-toplevel

    quiet_start.start()
    program = "delving.experiments.activations"
    cli.no_arguments(program, argv)
    cli.exit_on_bad_paths(
        program, output_dirs={"output_dir": _OUTPUT_DIR.value}, dirs={"data_dir": _DATA_DIR.value}
    )
    seeds = [int(s) for s in _SEEDS.value]
    quick, output_dir = _QUICK.value, _OUTPUT_DIR.value
    if quick and not flags.FLAGS["seeds"].present:
        seeds = seeds[:1]
    start = time.time()
    from delving.experiments import common, slope_tables  # pylint: disable=import-outside-toplevel

    data_dir = common.resolve_data_dir(_DATA_DIR.value, quick=quick, output_dir=output_dir)
    if quick:
        fields = dict(common.QUICK_FIELDS)
    else:
        epochs = _EPOCHS.value
        # /10 for the last third, /100 for the last sixth (as the paper's steps).
        decay = sorted({epochs - max(1, epochs // 3), epochs - max(1, epochs // 6)})
        fields = dict(
            learning_rate=_LEARNING_RATE.value,
            epochs=epochs,
            lr_schedule="step",
            lr_decay_epochs=tuple(decay) if epochs >= 3 else (),
        )
        if _IMAGE_SIZE.value:
            fields.update(crop_fields(_IMAGE_SIZE.value))
    activations = _ACTIVATIONS.value
    if quick and not flags.FLAGS["activations"].present:
        activations = ["relu", "prelu"]
    results = run(
        data_dir=data_dir,
        output_dir=output_dir,
        activations=activations,
        seeds=seeds,
        train_fields=fields,
        verbose=0 if quick else 1,
        preset=common.preset_for(_DATA_DIR.value),
    )
    summarize(results)
    results.update(quick=quick, seconds=time.time() - start)
    markdown = error_table(results)
    coefficients = slope_tables.coefficient_table(results)
    if coefficients:
        markdown += "\n\nLearned PReLU coefficients (mean ± std over seeds):\n\n" + coefficients
    paths = common.write_outputs(
        output_dir,
        NAME,
        markdown=markdown,
        results=results,
        figures=[("", plot_errors(results))]
        + ([("_coefficients", plot_coefficients(results))] if coefficients else []),
    )
    print(markdown)
    print("\nWrote " + ", ".join(paths))


if __name__ == "__main__":
    app.run(main)
