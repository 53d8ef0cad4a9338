"""delving.experiments: the three experiment binaries and the report, end to end in --quick mode.

One module fixture runs `python -m delving.experiments.report --quick`, which
runs the three experiment binaries as subprocesses on a tiny built-in
dataset; the tests then check what they wrote. The templated discussion is
also checked in-process on constructed results, both ways round.
"""

import json
import os
import subprocess
import sys

import pytest

from delving.experiments import common, report_text
from tests import train_testutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(args, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-m"] + args, cwd=ROOT, env=env, capture_output=True, text=True, **kwargs
    )


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    paths = {"report": out / "REPRODUCTION.md", "figures": out / "figures", "work": out / "work"}
    proc = _run(
        [
            "delving.experiments.report",
            "--quick",
            f"--output={paths['report']}",
            f"--figures_dir={paths['figures']}",
            f"--work_dir={paths['work']}",
        ],
        timeout=train_testutil.HANG_GUARD_S,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    paths["stdout"] = proc.stdout
    return paths


def _results(paths, name):
    with open(paths["work"] / name / f"{name}.json") as f:
        return json.load(f)


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC and os.path.getsize(path) > 5000


def test_signal_propagation_follows_eq9_and_eq13(quick_report):
    results = _results(quick_report, "signal_propagation")
    assert set(results["networks"]) == {"small_30@96", "plain_30"}
    for name, net in results["networks"].items():
        layers = 27 if name.startswith("small_30") else 30
        for init, m in net["inits"].items():
            assert len(m["forward"]) == len(m["backward"]) == layers, (name, init)
        xavier = net["inits"]["xavier"]
        # 2^-(L/2) is ~1e-4: Xavier is orders of magnitude below He, and within a
        # small factor of the prediction (finite width scatters around it).
        for direction in ("forward", "backward"):
            measured = xavier[f"{direction}_vs_he_fan_in"]
            predicted = xavier[f"{direction}_vs_he_fan_in_predicted"]
            assert predicted == pytest.approx(2 ** (-layers / 2))
            assert measured < 1e-3, (name, direction)
            assert predicted / 10 < measured < predicted * 10, (name, direction)
    plain = results["networks"]["plain_30"]["inits"]
    assert plain["he_fan_in"]["forward_ratio_predicted"] == pytest.approx(1.0)
    # He fan-in keeps the forward signal within a (finite-width) factor of 1.
    assert 0.05 < plain["he_fan_in"]["forward_ratio"] < 20
    # The printed table is the written one.
    md = (quick_report["work"] / "signal_propagation" / "signal_propagation.md").read_text()
    assert md.splitlines()[0] in quick_report["stdout"]
    assert _is_png(quick_report["work"] / "signal_propagation" / "signal_propagation.png")


def test_convergence_trains_every_model_and_init(quick_report):
    results = _results(quick_report, "convergence")
    assert set(results["runs"]) == {"small_30"}  # --quick trains one model
    assert results["seeds"] == [0]  # --quick: one seed
    for per_init in results["runs"].values():
        assert set(per_init) == {"he_fan_in", "xavier"}
        for runs in per_init.values():
            (r,) = runs
            assert r["seed"] == 0 and len(r["history"]) == 1
            for key in ("train_top1_error", "val_top1_error", "val_top5_error"):
                assert 0.0 <= r["history"][0][key] <= 1.0
            assert isinstance(r["stalled"], bool)
            assert r["chance_error"] == pytest.approx(0.9)
    # The recipe is the built-in preset's (config.json), with --quick's overrides only.
    recipe = results["recipes"]["small_30"]
    for key, value in common.QUICK_FIELDS.items():
        assert recipe[key] == (list(value) if isinstance(value, tuple) else value), key
    md = (quick_report["work"] / "convergence" / "convergence.md").read_text()
    assert md.count("Xavier") == 1
    assert _is_png(quick_report["work"] / "convergence" / "convergence.png")


def test_activations_reports_errors_and_table1_coefficients(quick_report):
    results = _results(quick_report, "activations")
    assert list(results["summary"]) == ["relu", "prelu"]  # --quick: two of the four
    for activation, runs in results["runs"].items():
        for r in runs:
            assert 0.0 <= r["val_top1_error"] <= 1.0
            assert r["val_top5_error"] <= r["val_top1_error"] + 1e-9
            assert r["val_count"] == common.QUICK_SPLITS[1][1]
            if activation.startswith("prelu"):
                assert list(r["prelu"]) == list(common.PAPER_TABLE1)  # Table 1's 13 rows
            else:
                assert r["prelu"] == {}
    md = (quick_report["work"] / "activations" / "activations.md").read_text()
    for activation in ("relu", "prelu"):
        assert common.ACTIVATION_LABELS[activation] in md
    assert "| conv1 |" in md and "0.596" in md  # the paper's channel-wise conv1 slope beside ours
    for name in ("activations", "activations_coefficients"):
        assert _is_png(quick_report["work"] / "activations" / f"{name}.png")


def test_report_states_setup_commands_and_measured_values(quick_report):
    text = quick_report["report"].read_text()
    hardware = common.hardware_summary()
    assert hardware["cpu"] in text and f"{hardware['cores']} CPU cores" in text
    assert "Quick mode" in text
    for name in ("signal_propagation", "convergence", "activations"):
        assert f"python -m delving.experiments.{name} --output_dir=" in text
    # Figures are linked relative to the report and exist.
    links = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len(links) == 4
    for link in links:
        assert _is_png(os.path.join(os.path.dirname(quick_report["report"]), link))
    # Measured values reach the report.
    act = _results(quick_report, "activations")
    relu_top1 = act["summary"]["relu"]["val_top1_error"][0]
    assert f"{100 * relu_top1:.2f} ±" in text
    sig = _results(quick_report, "signal_propagation")
    assert f"{sig['networks']['plain_30']['inits']['xavier']['forward_vs_he_fan_in']:.2e}" in text


def _conv_run(errors, seed=0):
    """What convergence.summarize writes for one run, given its errors per epoch."""
    below = [i + 1 for i, e in enumerate(errors) if e < 0.7]
    return {
        "seed": seed,
        "history": [
            {"epoch": i + 1, "val_top1_error": e, "train_top1_error": e}
            for i, e in enumerate(errors)
        ],
        "chance_error": 0.9,
        "val_top1_best": min(errors),
        "val_top1_last": errors[-1],
        "stalled": min(errors) > 0.85,
        "first_epoch_below_chance": below[0] if below else None,
    }


def _convergence_results(he_errors, xavier_errors, model="small_30"):
    """Two seeds per init with the given validation errors per epoch (same for both)."""
    return {
        "seeds": [0, 1],
        "runs": {
            model: {
                "he_fan_in": [_conv_run(he_errors, 0), _conv_run(he_errors, 1)],
                "xavier": [_conv_run(xavier_errors, 0), _conv_run(xavier_errors, 1)],
            }
        },
        "recipes": {},
    }


@pytest.mark.parametrize(
    "model, he, xavier, verdict",
    [
        ("small_30", [0.85, 0.6, 0.4], [0.9, 0.9, 0.89], "As in the paper"),
        ("small_30", [0.9, 0.9, 0.9], [0.9, 0.9, 0.9], "Inconclusive"),
        ("small_30", [0.9, 0.9, 0.9], [0.85, 0.6, 0.4], "Differs from the paper"),
        # Learned, then died back to chance: not converged.
        ("small_30", [0.85, 0.6, 0.88], [0.9, 0.9, 0.9], "Differs from the paper"),
        # Model B (Fig. 2): both learn, the rectifier init first gets 20 points below chance.
        ("model_b", [0.8, 0.6, 0.4], [0.88, 0.8, 0.6], "As in the paper"),
        ("model_b", [0.88, 0.8, 0.6], [0.8, 0.6, 0.4], "Differs from the paper"),
    ],
)
def test_convergence_discussion_follows_the_measurements(model, he, xavier, verdict):
    results = _convergence_results(he, xavier, model)
    text = report_text.convergence_section(results, "| table |", "figure.png")
    assert verdict in text
    learned = sum(not r["stalled"] for r in results["runs"][model]["xavier"])
    assert f"the Xavier learned in {learned} of 2 seeds" in text


def test_a_run_that_falls_back_towards_chance_is_called_unstable():
    text = report_text.convergence_section(
        _convergence_results([0.85, 0.6, 0.8], [0.9, 0.9, 0.9]), "| table |", "figure.png"
    )
    assert "rectifier init run with seed 0 was unstable" in text
    assert "after 60.0% at epoch 2" in text
    steady = report_text.convergence_section(
        _convergence_results([0.85, 0.6, 0.5], [0.9, 0.9, 0.9]), "| table |", "figure.png"
    )
    assert "unstable" not in steady


def test_a_diverged_run_is_reported_not_compared():
    results = _convergence_results([0.85, 0.6], [0.9, 0.9])
    results["runs"]["small_30"]["xavier"][1].update(
        diverged="loss became nan at step 3", stalled=None
    )
    text = report_text.convergence_section(results, "| table |", "figure.png")
    assert "Xavier seed 1 diverged (loss became nan at step 3)" in text
    assert "no comparison" in text


@pytest.mark.parametrize(
    "flag",
    [
        ["delving.experiments.convergence", "--models=small_31"],
        ["delving.experiments.activations", "--activations=swish"],
        ["delving.experiments.activations", "--seeds=0,x"],
        ["delving.experiments.signal_propagation", "--inits=glorot"],
        ["delving.experiments.report", "--experiment_flag=nothing"],
        ["delving.experiments.report", "--experiment_flag=training:--epochs=3"],
    ],
)
def test_bad_flags_fail_in_one_line(flag):
    proc = _run(flag, timeout=train_testutil.HANG_GUARD_S)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert flag[1].split("=")[0] in proc.stderr


def test_render_only_rewrites_the_same_report_from_the_runs(quick_report, tmp_path):
    again = tmp_path / "again.md"
    proc = _run(
        [
            "delving.experiments.report",
            "--quick",
            "--render_only",
            f"--output={again}",
            f"--figures_dir={tmp_path / 'figures'}",
            f"--work_dir={quick_report['work']}",
        ],
        timeout=train_testutil.HANG_GUARD_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = quick_report["report"].read_text().splitlines()
    # Everything but the line naming the report command is the same.
    assert [l for l in again.read_text().splitlines() if "Generated by" not in l] == [
        l for l in first if "Generated by" not in l
    ]


def _slopes(conv1, conv2, conv3, fc=0.1):
    """Table 1's layers with the given slope per stage (std 0)."""
    stage = {"conv1": conv1, "conv2": conv2, "conv3": conv3, "fc": fc}
    return {k: (stage[k[:5] if k.startswith("conv") else "fc"], 0.0) for k in common.PAPER_TABLE1}


@pytest.mark.parametrize(
    "stages, words",
    [
        (
            (0.6, 0.3, 0.15),
            ["Like the paper, conv1 learns the largest", "like the paper, the deeper"],
        ),
        ((0.2, 0.4, 0.15), ["Unlike the paper, conv1 does not", "do not fall with depth"]),
        ((0.25, 0.25, 0.251, 0.25), ["barely moved"]),
    ],
)
def test_slope_pattern_states_table1s_observations_from_the_slopes(stages, words):
    text = report_text.slope_pattern(_slopes(*stages), "prelu")
    for w in words:
        assert w in text
    assert f"conv1 {stages[0]:.3f} (paper 0.596)" in text
