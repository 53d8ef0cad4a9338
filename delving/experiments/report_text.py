"""Writes docs/REPRODUCTION.md from the experiments' JSON results (no flags here).

All measured numbers and every judgement ("stalled", "matches within a
factor of ...") are computed from the results passed in; the only numbers
not measured are the paper's, from `delving.paper` and the claims
quoted from the paper in the text.
"""

import json
import math
import os

from delving import paper
from delving.experiments import common
from delving.models.specs import PRELU_INIT_SLOPE


def _pct(x):
    return f"{100 * x:.1f}%"


def _factor(measured, predicted):
    """How far apart two positive numbers are, as a factor >= 1."""
    if measured <= 0 or predicted <= 0:
        return float("inf")
    return math.exp(abs(math.log(measured / predicted)))


def _dataset_info(data_dir):
    path = os.path.join(data_dir or "", "dataset_info.json")
    if data_dir and os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return None


def recipe_of(work_dir):
    """The config of the activation experiment's first run: what was trained."""
    runs_dir = os.path.join(work_dir, "activations", "runs")
    for name in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []:
        path = os.path.join(runs_dir, name, "config.json")
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
    return {}


def setup_section(
    *,
    hardware,
    versions,
    runs,
    total_seconds,
    started,
    load,
    data_info,
    quick,
    recipe=None,
    jobs=1,
    data_line=None,
):
    """The setup in words; `data_line` (a bullet) describes data other than the built-in set."""
    recipe = recipe or {}
    lines = ["## Setup", ""]
    mem = f"{hardware['memory_gib']:.1f} GiB" if hardware["memory_gib"] else "unknown"
    lines.append(
        f"- **Hardware**: {hardware['cpu']}, {hardware['cores']} CPU cores, "
        f"{mem} memory, no accelerator; {hardware['system']}, Python "
        f"{hardware['python']}, " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."
    )
    per = ", ".join(
        f"{name.replace('_', ' ')} {sec / 60:.1f} min" for name, (_, sec) in runs.items()
    )
    lines.append(
        f"- **Run time**: {total_seconds / 60:.1f} min of wall time in all ("
        + (
            f"{jobs} experiments at a time, each on its own share of the cores: "
            if jobs > 1
            else ""
        )
        + f"{per}), started "
        f"{started:%Y-%m-%d %H:%M} UTC. "
        + (
            f"The 1-minute load average was {load[0]:.1f} at the start and "
            f"{load[1]:.1f} at the end on {hardware['cores']} cores: other jobs shared "
            "the machine when it is above the core count, and the times are then "
            "longer than on an idle machine."
            if load
            else "(Rendered again from those runs with `--render_only`; the load average "
            "was not recorded.)"
        )
    )
    if data_line:
        lines.append(data_line)
    elif data_info:
        sizes = data_info.get("size_range", ["?", "?"])
        lines.append(
            f"- **Data**: the project's built-in dataset (`pipelines.builtin`, generated "
            f"offline from seed {data_info.get('seed')}): {data_info['num_classes']} classes of "
            f"procedurally drawn shapes and textures ({', '.join(data_info.get('classes', []))}), "
            f"{data_info['splits']['train']} training and {data_info['splits']['validation']} "
            f"validation JPEGs of {sizes[0]}-{sizes[1]} px, in the ImageNet TFRecord schema. "
            "The paper uses ImageNet 2012: 1.28 M training images, 1000 classes."
        )
    if recipe:
        lines.append(
            f"- **Recipe** (both training experiments, through `delving.training`): "
            f"the paper's "
            f"(SGD momentum {recipe.get('momentum')}, weight decay {recipe.get('weight_decay'):g} "
            f"not on PReLU slopes, scale jitter, random crops, flips, colour noise) shrunk to "
            f"the machine, with the `{recipe.get('preset') or 'builtin'}` preset's departures: "
            + (
                f"dropout {recipe['dropout']:g}"
                if recipe.get("dropout")
                else "no dropout (paper 0.5)"
            )
            + (", inputs divided by the RGB std after the mean" if recipe.get("input_std") else "")
            + "; "
            f"{recipe['image_size']}x{recipe['image_size']} crops from shorter sides in "
            f"[{recipe['scale_range'][0]}, {recipe['scale_range'][1]}] (the paper's 224 in "
            f"[256, 512]), conv widths x{recipe['width_multiplier']:g}, fc1/fc2 "
            f"{recipe['fc_units']} units (paper 4096), batch {recipe['batch_size']} (paper 128)"
            + (
                f", a linear learning-rate warm-up over the first {recipe['warmup_epochs']:g} "
                "epochs (the paper has none: without it the first steps at the rates that "
                "train these nets fastest diverge)"
                if recipe.get("warmup_epochs")
                else ""
            )
            + "."
            + (
                " The training split is decoded once into memory and each batch's crops "
                "are resampled from there (`--in_memory`, `pipelines/in_memory.py`): the "
                "same augmentation, with every image resampled twice instead of once."
                if recipe.get("in_memory")
                else ""
            )
        )
    if quick:
        lines.append(
            "- **Quick mode**: tiny data and a few steps, to test the pipeline only; "
            "these numbers mean nothing."
        )
    lines += ["", "Commands (from the repository root), as run:", "", "```"]
    lines += [" ".join(cmd) for cmd, _ in runs.values()]
    lines += ["```", ""]
    return "\n".join(lines)


def signal_section(results, markdown, figure):
    lines = [
        "## 1. Signal propagation at initialization (Eq. 9 and 13)",
        "",
        "**Paper (Sec. 2.2-2.3)**: with ReLU, the rectifier init keeps the variance of the "
        "responses (Eq. 10, forward) or of the gradients (Eq. 14, backward) the same in every "
        "layer, and either one keeps the other direction within a constant factor "
        '(`c_2/d_L`); "Xavier" (`Var[w] = 1/n`) halves the variance per layer, so the std '
        "shrinks as `(1/sqrt(2))^L`.",
        "",
        "**Ours**: per-layer std of the conv responses `y_l` and of the gradients "
        "`dE/dx_l` reaching each conv layer, in freshly initialized networks fed "
        f"standard-normal images (batch {results['batch_size']}), geometric mean over "
        f"{results['draws']} independent weight draws (band: min-max). Networks: "
        + "; ".join(f"`{k}`: {v['description']}" for k, v in results["networks"].items())
        + ". The dashed line is the prediction for Xavier: the measured He fan-in curve "
        "times `(1/sqrt(2))^l` forward and `(1/sqrt(2))^(L-l+1)` backward, which holds "
        "whatever the max pools and borders do, since ReLU, max pooling and bias-free "
        "convolution are all positively homogeneous.",
        "",
        f"![signal propagation]({figure})",
        "",
        markdown.strip(),
        "",
    ]
    findings = []
    for name, net in results["networks"].items():
        inits = net["inits"]
        he, xa = inits.get("he_fan_in"), inits.get("xavier")
        if he:
            text = (
                f"`{name}`, He fan-in: std(y_L)/std(y_1) = {he['forward_ratio']:.3g}"
                + (
                    f" (theory {he['forward_ratio_predicted']:.3g})"
                    if "forward_ratio_predicted" in he
                    else ""
                )
                + f", std(dx_1)/std(dx_L) = {he['backward_ratio']:.3g}"
                + (
                    f" (theory {he['backward_ratio_predicted']:.3g})"
                    if "backward_ratio_predicted" in he
                    else ""
                )
                + "."
            )
            findings.append(text)
        if he and xa:
            f_fwd = _factor(xa["forward_vs_he_fan_in"], xa["forward_vs_he_fan_in_predicted"])
            f_bwd = _factor(xa["backward_vs_he_fan_in"], xa["backward_vs_he_fan_in_predicted"])
            findings.append(
                f"`{name}`, Xavier: the last layer's response is {xa['forward_vs_he_fan_in']:.2e} "
                f"times He fan-in's (predicted {xa['forward_vs_he_fan_in_predicted']:.2e}, "
                f"a factor {f_fwd:.2f} apart), the first layer's gradient "
                f"{xa['backward_vs_he_fan_in']:.2e} times (predicted "
                f"{xa['backward_vs_he_fan_in_predicted']:.2e}, a factor {f_bwd:.2f} apart): "
                + (
                    "the exponential decay of Eq. 9/13 is reproduced."
                    if max(f_fwd, f_bwd) < 3 and xa["forward_vs_he_fan_in"] < 1e-2
                    else "this does **not** match the predicted decay."
                )
            )
        fo = inits.get("he_fan_out")
        if he and fo:
            findings.append(
                f"`{name}`, He fan-out: {fo['forward_vs_he_fan_in']:.3f} times He fan-in "
                f"forward at the last layer (predicted sqrt(c_1/d_L) = "
                f"{fo['forward_vs_he_fan_in_predicted']:.3f}): a constant, not exponential, factor."
            )
    lines += [f"- {f}" for f in findings]
    plain = [
        n
        for n in results["networks"].values()
        if "forward_ratio_predicted" in n["inits"].get("he_fan_in", {})
    ]
    lines += [
        "",
        "Notes: single draws of a finite-width network scatter around the expectation "
        "(the log of the variance performs a random walk whose spread grows with depth "
        "and shrinks with width), hence the bands"
        + (
            " and the plain stack's He curves being flat only to within that scatter"
            if plain
            else ""
        )
        + ". In `small_30` the max pools change the scale of the signal (a max "
        "of rectified values has a larger second moment; its gradient reaches one input of "
        "each window), and the zero padding of the 2x2 convs (one pixel, on alternating "
        "sides: `delving.models.specs`) shrinks the signal a little near the borders in "
        "every layer, so even He's curves are not flat there; the Xavier/He ratio is "
        "unaffected.",
        "",
    ]
    return "\n".join(lines)


def recipe_line(recipe):
    """One run config (from its config.json) in words."""
    warmup = recipe.get("warmup_epochs") or 0
    decays = list(recipe.get("lr_decay_epochs") or [])
    schedule = (
        f"divided by 10 at epochs {decays}"
        if recipe.get("lr_schedule") == "step" and decays
        else "divided by 10 on validation plateaus"
        if recipe.get("lr_schedule") == "plateau"
        else "constant"
    )
    return (
        f"learning rate {recipe['learning_rate']:g}"
        + (f" after a linear warm-up over {warmup:g} epochs" if warmup else "")
        + f", {schedule}; {recipe['epochs']} epochs of {recipe['steps_per_epoch']} steps of "
        f"{recipe['batch_size']} images; {recipe['image_size']}x{recipe['image_size']} crops "
        f"from shorter sides in [{recipe['scale_range'][0]}, {recipe['scale_range'][1]}]; "
        f"conv widths x{recipe['width_multiplier']:g}, fc1/fc2 {recipe['fc_units']} units"
    )


def _per_seed(values, fmt=_pct):
    return ", ".join("-" if v is None else fmt(v) for v in values)


def _unstable(r, label):
    """A sentence when a run that learned fell back towards chance (5 points, or
    any amount when it then ended without converging), else ''."""
    vals = [e["val_top1_error"] for e in r["history"]]
    best = vals.index(min(vals))
    fell_back = vals[-1] - vals[best]
    if r["stalled"] or fell_back <= 0 or (fell_back < 0.05 and _converged(r)):
        return ""
    return (
        f" The {label} run with seed {r['seed']} was unstable: its validation error came back "
        f"to {_pct(vals[-1])} after {_pct(vals[best])} at epoch {r['history'][best]['epoch']}."
    )


def _converged(r):
    """Ended (not only once was) `PROGRESS_MARGIN` below chance: a run that
    learned and then died back to chance has not converged."""
    last = r.get("val_top1_last")
    return last is not None and last < r["chance_error"] - common.PROGRESS_MARGIN


def convergence_verdict(model, he_runs, xavier_runs):
    """'As in the paper', 'Differs from the paper' or 'Inconclusive', from the runs."""
    if all(r["stalled"] for r in he_runs + xavier_runs):
        return "Inconclusive"
    never = 10**9
    if model == "model_b":  # Fig. 2: both converge, the rectifier init earlier.
        agree = not any(r["stalled"] for r in he_runs) and all(
            (h["first_epoch_below_chance"] or never) <= (x["first_epoch_below_chance"] or never)
            for h, x in zip(he_runs, xavier_runs)
        )
    else:  # Fig. 3: Xavier stalls completely, the rectifier init converges.
        agree = all(r["stalled"] for r in xavier_runs) and all(_converged(r) for r in he_runs)
    return "As in the paper" if agree else "Differs from the paper"


#: How convergence_section names each run, on the built-in set.
BUILTIN_RUNS = (
    "on the built-in dataset. Every run is exactly `python -m delving.train --model=<model> "
    "--activation=relu --init=<init> --seed=<seed>` (the built-in preset with its per-model values)"
)


def convergence_section(results, markdown, figure, runs_said=BUILTIN_RUNS):
    lines = [
        "## 2. Convergence of deep plain ReLU nets (Fig. 2 and 3)",
        "",
        "**Paper**: model B (22 layers): both inits converge, the rectifier init starts "
        'reducing the error earlier (Fig. 2). The 30-layer model: "Xavier" stalls '
        "completely, the rectifier init converges (Fig. 3).",
        "",
        f"**Ours**: ReLU, seeds {results['seeds']} for each init, {runs_said}. "
        "The rectifier init is Eq. 10 (fan-in), which differs from Xavier by exactly the "
        "factor 2 in every layer's weight variance that the paper is about (the paper trains "
        f'with Eq. 14 and states that either suffices). "Stalled": neither the training nor '
        f"the validation error ever went {100 * common.STALL_MARGIN:.0f} points below "
        "chance; training error is measured on the augmented training batches, as Caffe logs "
        "it, validation error on centre crops. Per model:",
        "",
    ]
    for model, recipe in results.get("recipes", {}).items():
        lines.append(f"- `{model}`: {recipe_line(recipe)}.")
    lines += ["", f"![convergence]({figure})", "", markdown.strip(), ""]
    depth = {"small_30": "30-layer", "model_b": "22-layer (model B)"}
    margin = f"{100 * common.PROGRESS_MARGIN:.0f} points"
    for model, per_init in results["runs"].items():
        he = next((i for i in per_init if i.startswith("he")), None)
        if he is None or "xavier" not in per_init:
            continue
        runs = {"rectifier init": per_init[he], "Xavier": per_init["xavier"]}
        failed = [(label, r) for label, rs in runs.items() for r in rs if r.get("diverged")]
        if failed:
            lines.append(
                f"- {depth.get(model, model)} `{model}`: "
                + "; ".join(
                    f"{label} seed {r['seed']} diverged ({r['diverged']})" for label, r in failed
                )
                + ": no comparison."
            )
            continue
        said = f"{depth.get(model, model)} `{model}`: "
        parts = []
        for label, rs in runs.items():
            learned = sum(not r["stalled"] for r in rs)
            converged = sum(_converged(r) for r in rs)
            parts.append(
                f"the {label} learned in {learned} of {len(rs)} seeds and ended "
                f"{margin} or more below chance in {converged} (best validation top-1 "
                f"error {_per_seed([r['val_top1_best'] for r in rs])}, last "
                f"{_per_seed([r['val_top1_last'] for r in rs])}; validation error first "
                f"{margin} below chance at epoch "
                f"{_per_seed([r['first_epoch_below_chance'] for r in rs], lambda e: str(e))}"
                " per seed, - for never)"
            )
        said += "; ".join(parts) + f"; chance is {_pct(rs[0]['chance_error'])}."
        for label, rs in runs.items():
            for r in rs:
                said += _unstable(r, label)
        verdict = convergence_verdict(model, runs["rectifier init"], runs["Xavier"])
        said += {
            "Inconclusive": " **Inconclusive**: no run left chance within this budget.",
            "As in the paper": " **As in the paper.**",
            "Differs from the paper": " **Differs from the paper** (see below).",
        }[verdict]
        if model == "model_b" and all(r["stalled"] for r in runs["Xavier"]):
            said += (
                " Here Xavier never left chance within the run, where the paper's 22-layer "
                "Xavier net does converge, later: the paper's claim about which init gets "
                "there first holds, the run is too short to show the second half of Fig. 2."
            )
        lines.append(f"- {said}")
    lines.append("")
    return "\n".join(lines)


def _stage_mean(slopes, stage):
    values = [v for k, v in slopes.items() if k.startswith(stage)]
    return sum(values) / len(values) if values else float("nan")


def slope_pattern(per_layer, activation):
    """Table 1's two observations, checked on the learned slopes (layer -> (mean, std))."""
    slopes = {k: v[0] for k, v in per_layer.items()}
    convs = {k: v for k, v in slopes.items() if k.startswith("conv")}
    top = max(convs, key=convs.get)
    stages = {stage: _stage_mean(slopes, stage) for stage in ("conv1", "conv2", "conv3")}
    reported = paper.TABLE1["conv1"][0 if activation == "prelu_shared" else 1]
    moved = max(abs(v - PRELU_INIT_SLOPE) for v in slopes.values())
    text = (
        f"conv1 {stages['conv1']:.3f} (paper {reported:.3f}), conv2_x mean {stages['conv2']:.3f}, "
        f"conv3_x mean {stages['conv3']:.3f}, fc1/fc2 "
        f"{slopes.get('fc1', float('nan')):.3f}/{slopes.get('fc2', float('nan')):.3f}; the "
        f"largest conv slope is {top}'s ({convs[top]:.3f}), the slopes moved up to "
        f"{moved:.3f} from their initial {PRELU_INIT_SLOPE}. "
    )
    if moved < 0.02:
        return text + "They barely moved in this training, so their pattern says little."
    text += (
        "Like the paper, conv1 learns the largest slope"
        if top == "conv1"
        else "Unlike the paper, conv1 does not learn the largest slope"
    )
    deeper_smaller = stages["conv1"] > stages["conv2"] > stages["conv3"]
    return text + (
        "; like the paper, the deeper conv stages learn smaller slopes on average "
        "(conv1 > conv2_x > conv3_x)."
        if deeper_smaller
        else "; unlike the paper, the stage means do not fall with depth "
        "(conv1 > conv2_x > conv3_x does not hold)."
    )


def activations_section(results, markdown, figures):
    s = results["summary"]
    n = len(results["seeds"])
    recipe = results.get("recipes", {}).get("small_14")
    lines = [
        "## 3. ReLU vs LReLU vs PReLU on the 14-layer model (Tables 1 and 2)",
        "",
        "**Paper** (ImageNet, 10-view, top-1/top-5 error): "
        + ", ".join(
            f"{common.ACTIVATION_LABELS[a]} {t1:.2f}/{t5:.2f}"
            for a, (t1, t5) in paper.TABLE2.items()
        )
        + ". PReLU gains 1.2 points top-1 over ReLU with 13 (shared) or a few thousand "
        "(channel-wise) extra parameters; the first conv layer learns large slopes "
        "and deeper layers small ones (Table 1).",
        "",
        f"**Ours**: `small_14` with each activation, seeds {results['seeds']}. "
        + _activation_command(results.get("train_fields", {}))
        + (f"{recipe_line(recipe)}" if recipe else "no completed run")
        + "; 10-view testing of the "
        f"final model on the validation split. Mean ± sample std over the {n} seeds.",
        "",
        f"![activations]({figures.get('activations', '')})",
        "",
    ]
    if "activations_coefficients" in figures:
        lines += [f"![coefficients]({figures['activations_coefficients']})", ""]
    lines += [markdown.strip(), ""]
    if "relu" in s:
        relu = s["relu"]["val_top1_error"]
        for a in ("lrelu", "prelu_shared", "prelu"):
            if a not in s:
                continue
            m = s[a]["val_top1_error"]
            diff = 100 * (m[0] - relu[0])
            noise = 100 * math.sqrt((m[1] ** 2 + relu[1] ** 2) / n)  # std error of the difference
            reported = paper.TABLE2[a][0] - paper.TABLE2["relu"][0]
            if n < 2:
                verdict = "a single seed, so no spread to judge it by"
            else:
                verdict = (
                    f"{'larger than' if abs(diff) > 2 * noise else 'within'} twice the "
                    f"standard error of the difference over seeds ({2 * noise:.2f} points)"
                )
            lines.append(
                f"- {common.ACTIVATION_LABELS[a]} vs ReLU: {diff:+.2f} points top-1 "
                f"(paper {reported:+.2f}); {verdict}."
            )
        order = sorted(s, key=lambda a: s[a]["val_top1_error"][0])
        lines.append(
            "- Our ranking by mean top-1 error, best first: "
            + " < ".join(
                f"{common.ACTIVATION_LABELS[a]} ({100 * s[a]['val_top1_error'][0]:.2f})"
                for a in order
            )
            + "; the paper's: PReLU channel-wise < PReLU channel-shared < LReLU < ReLU."
        )
    done = [r for runs in results["runs"].values() for r in runs if not r.get("diverged")]
    if done:
        lines.append(_activation_convergence(done))
    failed = sum(1 for runs in results["runs"].values() for r in runs if r.get("diverged"))
    if failed:
        lines.append(
            f"- {failed} run(s) diverged (loss NaN) and are left out of the means; "
            "the table marks them per seed."
        )
    num_classes = done[0]["num_classes"] if done else 10
    if num_classes <= 10:
        lines.append(
            f"- Top-5 error on {num_classes} classes is close to trivial; top-1 is the "
            "informative column here."
        )
    for a in ("prelu_shared", "prelu"):
        if a not in s or "prelu" not in s[a]:
            continue
        lines.append(f"- {common.ACTIVATION_LABELS[a]} slopes: {slope_pattern(s[a]['prelu'], a)}")
    lines.append("")
    return "\n".join(lines)


def _activation_command(train_fields):
    """The command every activation run is, with the flags the experiment adds."""
    added = []
    for key, value in sorted(train_fields.items()):
        if key in ("lr_schedule",):
            continue  # the built-in preset's own
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        added.append(f"--{key}={value:g}" if isinstance(value, float) else f"--{key}={value}")
    return (
        "Every run is `python -m delving.train --model=small_14 --activation=<activation> "
        f"--seed=<seed> {' '.join(added)}`: the built-in preset with the flags the experiment "
        "adds (its own `--learning_rate` and `--epochs` defaults, whose help says why; the "
        "rate divided by 10 for the last third of the epochs and again for the last sixth): "
    )


def _activation_convergence(done):
    """Whether every run converged: its last training error far below chance."""
    chance = 1 - 1 / done[0]["num_classes"]
    train = [r["history"][-1]["train_top1_error"] for r in done if r["history"]]
    if not train:
        return "- The runs' training errors were not recorded."
    far = [t for t in train if t < chance - 0.2]
    verdict = (
        "every run converged"
        if len(far) == len(train)
        else f"{len(train) - len(far)} run(s) did not converge, so the ranking below mixes "
        "learning with failing to learn"
    )
    return (
        f"- Last-epoch training top-1 error of the {len(train)} runs: "
        f"{100 * min(train):.1f}% to {100 * max(train):.1f}% (chance {100 * chance:.0f}%): "
        f"{verdict} (converged: 20 points or more below chance)."
    )


def differences_section(sig, conv, act):
    lines = ["## Why our numbers differ from the paper's", ""]
    every = [r for per_init in conv["runs"].values() for rs in per_init.values() for r in rs]
    if every and all(r["stalled"] for r in every):
        lines.append(
            "- **No convergence run learned** (every training error stayed within 5 points of "
            "chance), whatever the init, so section 2 cannot tell the inits apart: a limit of "
            "this budget, not evidence for or against the paper."
        )
    acts = [r for runs in act["runs"].values() for r in runs if not r.get("diverged")]
    chance = 1 - 1 / acts[0]["num_classes"] if acts else None
    if acts and all(r["val_top1_error"] > chance - 0.05 for r in acts):
        lines.append(
            "- **No activation run got 5 points below chance** on validation, so the Table 2 "
            "comparison above compares noise; the learned slopes then reflect only the first "
            "steps of training."
        )
    recipes = dict(conv.get("recipes", {}), **act.get("recipes", {}))
    for model, f in recipes.items():
        lines.append(
            f"- `{model}`: {f['epochs']} epochs on a few thousand small images of 10 classes "
            f"(paper: about 80 epochs of 1.28 M ImageNet images, 1000 classes), crops of "
            f"{f['image_size']} px instead of 224, conv widths x{f['width_multiplier']:g}, fc "
            f"layers of {f['fc_units']} units instead of 4096"
            + (
                f", a linear learning-rate warm-up over {f['warmup_epochs']:g} epochs (the "
                "paper has none)"
                if f.get("warmup_epochs")
                else ""
            )
            + ": absolute errors are not comparable, only the comparisons between runs are."
        )
    lines.append(
        "- Differences of a fraction of a point, which is what Table 2 is about, are below "
        "the seed-to-seed spread of such small runs unless the spread says otherwise above; "
        "the paper reports single runs on a 50 000-image validation set."
    )
    small = {
        name: net["inits"]["he_fan_in"]["forward_ratio"]
        for name, net in sig["networks"].items()
        if name.startswith("small_30@") and "he_fan_in" in net["inits"]
    }
    if small:
        lines.append(
            "- The small models' 2x2 convs need one pixel of padding on one side; the "
            "builder alternates the side (Keras alone pads bottom/right, which would shift "
            "`small_30`'s receptive field by 22 positions through conv3, off its 6x6 maps at "
            "64 px). Measured in section 1 with the alternation, He fan-in std(y_L)/std(y_1) "
            "through the `small_30` trunk: "
            + ", ".join(f"{v:.3g} at {k.split('@')[1]} px" for k, v in small.items())
            + "."
        )
    lines.append("")
    return "\n".join(lines)


def render(
    *,
    work_dir,
    runs,
    total_seconds,
    started,
    figures,
    quick,
    versions,
    load,
    report_command,
    jobs=1,
):
    """The whole REPRODUCTION.md as a string."""

    def load_exp(name):
        results = common.read_results(os.path.join(work_dir, name), name)
        with open(os.path.join(work_dir, name, f"{name}.md")) as f:
            return results, f.read()

    sig, sig_md = load_exp("signal_propagation")
    conv, conv_md = load_exp("convergence")
    act, act_md = load_exp("activations")
    header = [
        "# Reproducing *Delving Deep into Rectifiers* at CPU scale",
        "",
        f"Generated by `{report_command}`. Do not edit by hand: every measured number "
        "below comes from the runs that command performed (their JSON, tables and training "
        f"logs are under `{work_dir}/`); the paper's numbers beside them are its own "
        "(Tables 1 and 2 of arXiv:1502.01852).",
        "",
    ]
    parts = [
        "\n".join(header),
        setup_section(
            hardware=common.hardware_summary(),
            versions=versions,
            runs=runs,
            total_seconds=total_seconds,
            started=started,
            load=load,
            jobs=jobs,
            data_info=_dataset_info(act.get("data_dir")),
            quick=quick,
            recipe=recipe_of(work_dir),
        ),
        signal_section(sig, sig_md, figures.get("signal_propagation", "")),
        convergence_section(conv, conv_md, figures.get("convergence", "")),
        activations_section(act, act_md, figures),
        differences_section(sig, conv, act),
    ]
    return "\n".join(parts).rstrip() + "\n"
