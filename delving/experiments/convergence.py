r"""Convergence of deep plain ReLU nets: He vs Xavier init (Fig. 2 and 3 of the paper).

Trains `small_30` (Fig. 3: 27 conv + 3 fc) and model B (Fig. 2: 22 layers)
once per seed with the rectifier init (Eq. 10 by default: it differs from
Xavier by exactly the factor 2 per layer the paper is about;
`--he_init=he_fan_out` for Eq. 14) and once with "Xavier" (Var[w] = 1/n),
ReLU, on the built-in dataset through `delving.training.loop`. Each run's config is
exactly the one of

  python -m delving.train --model=<model> --activation=relu --init=<init> --seed=<seed>

(the `builtin` preset with its per-model values); this binary adds only
`--model_dir` (and, with `--quick`, a tiny dataset and a few steps).
Plots training and validation top-1 error against epochs, every seed.

The paper: at 22 layers both converge and the rectifier init starts reducing
the error earlier; at 30 layers Xavier stalls completely while it converges.

Usage:
  python -m delving.experiments.convergence --output_dir=/tmp/convergence [--quick]
"""

import os
import time

from absl import app, flags

from common import cli  # No TensorFlow import.
from delving.models import specs  # No TensorFlow import.

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", "runs/experiments/convergence", "Where the table, JSON, figure and runs go."
)
_QUICK = flags.DEFINE_bool(
    "quick",
    False,
    "A tiny dataset (unless --data_dir is given), a few steps, one seed (unless --seeds is "
    "given) and (unless --models is given) small_30 only, for tests.",
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFRecords in the ImageNet schema; default: the built-in dataset."
)
_MODELS = flags.DEFINE_list("models", "small_30,model_b", "Networks to train.")
_SEEDS = cli.define_int_list(
    "seeds", "0,1", "Seeds; every (model, init) is trained with each.", example="0,1"
)
_HE_INIT = flags.DEFINE_enum(
    "he_init",
    "he_fan_in",
    ["he_fan_in", "he_fan_out"],
    "The rectifier init compared with Xavier.",
)

_EPOCHS = flags.DEFINE_integer(
    "epochs",
    None,
    "Epochs per run; default: the preset's per-model value. The preset's rate decays move "
    "with it, at the same fractions of the run.",
    lower_bound=1,
)

flags.register_validator(
    "models",
    lambda v: bool(v) and set(v) <= set(specs.MODEL_NAMES),
    f"must be a non-empty list of {', '.join(specs.MODEL_NAMES)}",
)

NAME = "convergence"


def run(
    *,
    data_dir,
    output_dir,
    models,
    inits,
    seeds,
    train_fields,
    verbose=1,
    preset="builtin",
    epochs=None,
):
    """Trains every (model, init, seed); returns the results dict written as JSON.

    `epochs`, when given, replaces the preset's per-model length, its rate
    decays kept at the same fractions of the run.
    """
    from delving.experiments import common  # pylint: disable=import-outside-toplevel
    from pipelines import builtin  # pylint: disable=import-outside-toplevel

    runs, recipes = {}, {}
    for model in models:
        runs[model] = {init: [] for init in inits}
        fields = dict(train_fields)
        if epochs:
            fields.update(_shortened(preset, model, data_dir, epochs))
        for seed in seeds:
            for init in inits:
                result, seconds, diverged, history = common.train(
                    model_dir=os.path.join(output_dir, "runs", f"{model}_{init}_seed{seed}"),
                    data_dir=data_dir,
                    verbose=verbose,
                    model=model,
                    activation="relu",
                    init=init,
                    seed=seed,
                    preset=preset,
                    **fields,
                )
                cfg = result.config if result else None
                if cfg is not None:
                    recipes[model] = {k: getattr(cfg, k) for k in common.RECIPE_FIELDS}
                runs[model][init].append(
                    {
                        "seed": seed,
                        "history": history,
                        "seconds": seconds,
                        "diverged": diverged,
                        "num_classes": cfg.num_classes if cfg else builtin.NUM_CLASSES,
                        "params": int(result.model.count_params()) if result else None,
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


def _shortened(preset, model, data_dir, epochs):
    """`epochs` and the preset's decay epochs for `model` scaled to them."""
    from delving.training import config as config_lib  # pylint: disable=import-outside-toplevel

    cfg = config_lib.resolve_config(preset=preset, model=model, data_dir=data_dir)
    decays = sorted(
        {max(1, min(epochs - 1, round(e * epochs / cfg.epochs))) for e in cfg.lr_decay_epochs}
    )
    return dict(epochs=epochs, lr_decay_epochs=tuple(decays) if epochs >= 2 else ())


def first_epoch_below(history, level):
    """The first epoch whose validation top-1 error is below `level`, else None."""
    return next((h["epoch"] for h in history if h["val_top1_error"] < level), None)


def summarize(results):
    """Per run: errors, when it started learning, whether it stalled."""
    from delving.experiments import common  # pylint: disable=import-outside-toplevel

    for per_init in results["runs"].values():
        for runs in per_init.values():
            for r in runs:
                chance = 1.0 - 1.0 / r["num_classes"]
                r["chance_error"] = chance
                hist = r["history"]
                if not hist:  # Diverged in its first epoch.
                    r.update(stalled=None, first_epoch_below_chance=None, val_top1_best=None)
                    continue
                train_err = [h["train_top1_error"] for h in hist]
                r["train_error_first"], r["train_error_last"] = train_err[0], train_err[-1]
                r["train_error_min"] = min(train_err)
                r["val_top1_last"] = hist[-1]["val_top1_error"]
                r["val_top5_last"] = hist[-1]["val_top5_error"]
                r["val_top1_best"] = min(h["val_top1_error"] for h in hist)
                r["train_loss_min"] = float(min(h["train_loss"] for h in hist))
                r["stalled"] = bool(
                    min(r["train_error_min"], r["val_top1_best"]) > chance - common.STALL_MARGIN
                )
                r["first_epoch_below_chance"] = first_epoch_below(
                    hist, chance - common.PROGRESS_MARGIN
                )
    return results


def table(results):
    from delving.experiments import common  # pylint: disable=import-outside-toplevel

    headers = [
        "model",
        "init",
        "seed",
        "epochs",
        "val top-1 err, best",
        "val top-1 err, last",
        "train top-1 err, last",
        f"first epoch with val err < chance - {common.PROGRESS_MARGIN:.0%}",
        "stalled",
        "minutes",
    ]
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}"  # noqa: E731
    rows = []
    for model, per_init in results["runs"].items():
        for init, runs in per_init.items():
            for r in runs:
                rows.append(
                    [
                        model,
                        common.INIT_LABELS[init],
                        r["seed"],
                        len(r["history"]),
                        pct(r.get("val_top1_best")),
                        pct(r.get("val_top1_last")),
                        pct(r.get("train_error_last")),
                        r["first_epoch_below_chance"] or "never",
                        "diverged" if r.get("diverged") else ("yes" if r["stalled"] else "no"),
                        f"{r['seconds'] / 60:.1f}",
                    ]
                )
    return common.markdown_table(headers, rows)


def plot(results):
    """One panel per model: validation (solid) and training (dotted) top-1 error, every seed."""
    from delving.experiments import common  # pylint: disable=import-outside-toplevel

    items = list(results["runs"].items())
    fig, axes = common.plt.subplots(1, len(items), figsize=(5.5 * len(items), 4), squeeze=False)
    for ax, (model, per_init) in zip(axes[0], items):
        chance = None
        for init, runs in per_init.items():
            color = common.COLORS[init]
            for i, r in enumerate(runs):
                epochs = [h["epoch"] for h in r["history"]]
                name = common.INIT_LABELS[init]
                first = i == 0  # one legend entry per init and curve kind
                ax.plot(
                    epochs,
                    [100 * h["val_top1_error"] for h in r["history"]],
                    "o-",
                    ms=3,
                    color=color,
                    label=f"{name}: validation" if first else None,
                )
                ax.plot(
                    epochs,
                    [100 * h["train_top1_error"] for h in r["history"]],
                    ":",
                    color=color,
                    alpha=0.7,
                    label=f"{name}: training" if first else None,
                )
                chance = r["chance_error"]
        if chance is not None:
            ax.axhline(100 * chance, color="gray", lw=0.8, ls="--", label="chance")
        depth = {"small_30": "30-layer", "model_b": "22-layer"}.get(model, model)
        ax.set_title(
            f"{model} ({depth}), ReLU, {len(results['seeds'])} seed(s) per init", fontsize=10
        )
        ax.set_xlabel("epoch")
        ax.set_ylabel("top-1 error (%)")
        ax.set_ylim(0, 100)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Convergence: rectifier init vs Xavier (paper Fig. 2 and 3)", fontsize=11)
    fig.tight_layout()
    return fig


def main(argv):
    from common import quiet_start  # pylint: disable=import-outside-toplevel

    quiet_start.start()
    program = "delving.experiments.convergence"
    cli.no_arguments(program, argv)
    cli.exit_on_bad_paths(
        program, output_dirs={"output_dir": _OUTPUT_DIR.value}, dirs={"data_dir": _DATA_DIR.value}
    )
    quick, output_dir = _QUICK.value, _OUTPUT_DIR.value
    seeds = [int(s) for s in _SEEDS.value]
    if quick and not flags.FLAGS["seeds"].present:
        seeds = seeds[:1]
    start = time.time()
    from delving.experiments import common  # pylint: disable=import-outside-toplevel

    data_dir = common.resolve_data_dir(_DATA_DIR.value, quick=quick, output_dir=output_dir)
    models = ["small_30"] if quick and not flags.FLAGS["models"].present else _MODELS.value
    results = run(
        data_dir=data_dir,
        output_dir=output_dir,
        models=models,
        inits=(_HE_INIT.value, "xavier"),
        seeds=seeds,
        train_fields=dict(common.QUICK_FIELDS) if quick else {},
        verbose=0 if quick else 1,
        preset=common.preset_for(_DATA_DIR.value),
        epochs=None if quick else _EPOCHS.value,
    )
    summarize(results)
    results.update(quick=quick, seconds=time.time() - start)
    markdown = table(results)
    paths = common.write_outputs(
        output_dir, NAME, markdown=markdown, results=results, figures=[("", plot(results))]
    )
    print(markdown)
    print("\nWrote " + ", ".join(paths))


if __name__ == "__main__":
    app.run(main)
