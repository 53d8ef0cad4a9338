r"""Convergence of deep plain ReLU nets: He vs Xavier init (Fig. 2 and 3 of the paper).

Trains `small_30` (Fig. 3: 27 conv + 3 fc) and model B (Fig. 2: 22 layers),
width-reduced to fit a CPU, once with the rectifier init (Eq. 10 by default:
it differs from Xavier by exactly the factor 2 per layer the paper is about;
`--he_init=he_fan_out` for Eq. 14) and once with "Xavier" (Var[w] = 1/n), ReLU,
everything else identical (data, seed, recipe), on the built-in dataset
through `delving.trainer`. Plots training and validation top-1 error against
epochs.

The paper: at 22 layers both converge and the rectifier init starts reducing
the error earlier; at 30 layers Xavier stalls completely while it converges.

Usage:
  python -m delving.experiments.convergence --output_dir=/tmp/convergence [--quick]
"""

import os
import time

from absl import app, flags

from delving import model_specs  # The names only: no TensorFlow import.

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", "runs/experiments/convergence", "Where the table, JSON, figure and runs go."
)
_QUICK = flags.DEFINE_bool(
    "quick",
    False,
    "A tiny dataset, a few steps and (unless --models is given) small_30 only, for tests.",
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFRecords in the ImageNet schema; default: the built-in dataset."
)
_MODELS = flags.DEFINE_list("models", "small_30,model_b", "Networks to train.")
_HE_INIT = flags.DEFINE_enum(
    "he_init", "he_fan_in", ["he_fan_in", "he_fan_out"], "The rectifier init compared with Xavier."
)
_WIDTH = flags.DEFINE_float(
    "width_multiplier", 0.25, "Conv widths x this (CPU budget).", lower_bound=0.01
)
_FC_UNITS = flags.DEFINE_integer("fc_units", 256, "Width of fc1 and fc2.", lower_bound=1)
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Training crop size.", lower_bound=8)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size",
    64,
    "Global batch size (with the learning rate: the paper's 0.01 per 128 "
    "images; at 32 images and 0.005 the 30-layer ReLU net learnt, then died in a spike).",
    lower_bound=1,
)
_EPOCHS = flags.DEFINE_integer(
    "epochs",
    12,
    "Epochs per run (the He-initialized 30-layer net needs a few full "
    "passes over the built-in set before its error leaves chance).",
    lower_bound=1,
)
_STEPS = flags.DEFINE_integer(
    "steps_per_epoch",
    0,
    "Steps per epoch; 0: one full pass over the training split.",
    lower_bound=0,
)
_LR = flags.DEFINE_float(
    "learning_rate", 0.005, "Constant SGD learning rate (momentum 0.9).", lower_bound=0.0
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed shared by every run.")

flags.register_validator(
    "models",
    lambda v: bool(v) and set(v) <= set(model_specs.MODEL_NAMES),
    f"must be a non-empty list of {', '.join(model_specs.MODEL_NAMES)}",
)

NAME = "convergence"
# Training and validation error within this many points of chance at every
# epoch = stalled. (Validation counts too: it is measured without the
# augmentation, so a net that has started to learn shows it there first.)
STALL_MARGIN = 0.05
# "Starts reducing error": first epoch whose training error is this far below chance.
PROGRESS_MARGIN = 0.10


def run(*, data_dir, output_dir, models, inits, train_fields, verbose=1):
    """Trains every (model, init); returns the results dict written as JSON."""
    from delving.experiments import common  # pylint: disable=import-outside-toplevel
    from pipelines import builtin  # pylint: disable=import-outside-toplevel

    runs = {}
    for model in models:
        runs[model] = {}
        for init in inits:
            result, seconds, diverged, history = common.train(
                model_dir=os.path.join(output_dir, "runs", f"{model}_{init}"),
                data_dir=data_dir,
                verbose=verbose,
                model=model,
                activation="relu",
                init=init,
                **train_fields,
            )
            cfg = result.config if result else None
            runs[model][init] = {
                "history": history,
                "seconds": seconds,
                "diverged": diverged,
                "num_classes": cfg.num_classes if cfg else builtin.NUM_CLASSES,
                "steps_per_epoch": cfg.steps_per_epoch if cfg else train_fields["steps_per_epoch"],
                "params": int(result.model.count_params()) if result else None,
            }
    return {"runs": runs, "train_fields": train_fields, "data_dir": data_dir}


def summarize(results):
    """Per run: first/last errors, when it started learning, whether it stalled."""
    for per_init in results["runs"].values():
        for r in per_init.values():
            chance = 1.0 - 1.0 / r["num_classes"]
            r["chance_error"] = chance
            if not r["history"]:  # Diverged in its first epoch.
                r.update(
                    train_error_first=None,
                    train_error_last=None,
                    train_error_min=None,
                    val_top1_last=None,
                    val_top5_last=None,
                    val_top1_best=None,
                    stalled=None,
                    first_epoch_below_chance=None,
                )
                continue
            train_err = [h["train_top1_error"] for h in r["history"]]
            r["train_error_first"], r["train_error_last"] = train_err[0], train_err[-1]
            r["train_error_min"] = min(train_err)
            r["val_top1_last"] = r["history"][-1]["val_top1_error"]
            r["val_top5_last"] = r["history"][-1]["val_top5_error"]
            r["val_top1_best"] = min(h["val_top1_error"] for h in r["history"])
            r["train_loss_min"] = float(min(h["train_loss"] for h in r["history"]))
            r["stalled"] = bool(
                min(r["train_error_min"], r["val_top1_best"]) > chance - STALL_MARGIN
            )
            started = [
                h["epoch"] for h in r["history"] if h["train_top1_error"] < chance - PROGRESS_MARGIN
            ]
            r["first_epoch_below_chance"] = started[0] if started else None
    return results


def table(results):
    from delving.experiments import common  # pylint: disable=import-outside-toplevel

    headers = [
        "model",
        "init",
        "epochs",
        "train top-1 err, epoch 1",
        "train top-1 err, last",
        "val top-1 err, last",
        "val top-5 err, last",
        f"first epoch with train err < chance - {PROGRESS_MARGIN:.0%}",
        "stalled",
        "params",
        "minutes",
    ]
    rows = []
    for model, per_init in results["runs"].items():
        for init, r in per_init.items():
            pct = lambda x: "-" if x is None else f"{100 * x:.1f}"  # noqa: E731
            rows.append(
                [
                    model,
                    common.INIT_LABELS[init],
                    len(r["history"]),
                    pct(r["train_error_first"]),
                    pct(r["train_error_last"]),
                    pct(r["val_top1_last"]),
                    pct(r["val_top5_last"]),
                    r["first_epoch_below_chance"] or "never",
                    "diverged" if r.get("diverged") else ("yes" if r["stalled"] else "no"),
                    f"{r['params']:,}" if r["params"] else "-",
                    f"{r['seconds'] / 60:.1f}",
                ]
            )
    return common.markdown_table(headers, rows)


def plot(results):
    """One panel per model: training (solid) and validation (dashed) top-1 error."""
    from delving.experiments import common  # pylint: disable=import-outside-toplevel

    items = list(results["runs"].items())
    fig, axes = common.plt.subplots(1, len(items), figsize=(5.5 * len(items), 4), squeeze=False)
    for ax, (model, per_init) in zip(axes[0], items):
        chance = None
        for init, r in per_init.items():
            epochs = [h["epoch"] for h in r["history"]]
            color = common.COLORS[init]
            ax.plot(
                epochs,
                [100 * h["train_top1_error"] for h in r["history"]],
                "o-",
                ms=3,
                color=color,
                label=f"{common.INIT_LABELS[init]}: train",
            )
            ax.plot(
                epochs,
                [100 * h["val_top1_error"] for h in r["history"]],
                "s--",
                ms=3,
                color=color,
                alpha=0.7,
                label=f"{common.INIT_LABELS[init]}: val",
            )
            chance = r["chance_error"]
        if chance is not None:
            ax.axhline(100 * chance, color="gray", lw=0.8, ls=":", label="chance")
        depth = {"small_30": "30-layer", "model_b": "22-layer"}.get(model, model)
        ax.set_title(f"{model} ({depth}), ReLU", fontsize=10)
        ax.set_xlabel(
            f"epoch ({r['steps_per_epoch']} steps of "
            f"{results['train_fields']['batch_size']} images)"
        )
        ax.set_ylabel("top-1 error (%)")
        ax.set_ylim(0, 100)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Convergence: rectifier init vs Xavier (paper Fig. 2 and 3)", fontsize=11)
    fig.tight_layout()
    return fig


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    quick, output_dir = _QUICK.value, _OUTPUT_DIR.value
    start = time.time()
    from delving.experiments import common  # pylint: disable=import-outside-toplevel

    data_dir = common.resolve_data_dir(_DATA_DIR.value, quick=quick, output_dir=output_dir)
    fields = dict(
        width_multiplier=0.125 if quick else _WIDTH.value,
        fc_units=32 if quick else _FC_UNITS.value,
        image_size=32 if quick else _IMAGE_SIZE.value,
        batch_size=16 if quick else _BATCH_SIZE.value,
        epochs=1 if quick else _EPOCHS.value,
        steps_per_epoch=2 if quick else (_STEPS.value or None),
        learning_rate=_LR.value,
        lr_schedule="step",
        lr_decay_epochs=(),  # constant rate
        seed=_SEED.value,
    )
    # The paper's 224 : [256, 512] : 256 ratio of crop to train/test scales.
    size = fields["image_size"]
    fields.update(
        scale_range=(round(size * 256 / 224), round(size * 512 / 224)),
        eval_resize=round(size * 256 / 224),
    )
    models = ["small_30"] if quick and not flags.FLAGS["models"].present else _MODELS.value
    results = run(
        data_dir=data_dir,
        output_dir=output_dir,
        models=models,
        inits=(_HE_INIT.value, "xavier"),
        train_fields=fields,
        verbose=0 if quick else 1,
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
