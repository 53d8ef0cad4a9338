"""delving.experiments.report_text: the report's templated discussion follows
the measurements it is given, both ways round (constructed results)."""

import pytest

from delving import paper
from delving.experiments import report_text


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


def _slopes(conv1, conv2, conv3, fc=0.1):
    """Table 1's layers with the given slope per stage (std 0)."""
    stage = {"conv1": conv1, "conv2": conv2, "conv3": conv3, "fc": fc}
    return {k: (stage[k[:5] if k.startswith("conv") else "fc"], 0.0) for k in paper.TABLE1}


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
