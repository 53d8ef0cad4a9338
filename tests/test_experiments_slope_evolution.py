"""delving.experiments.slope_evolution: the figure of the learned slopes over
training, drawn from the TensorBoard summaries of real trained runs (the
photo report's --quick runs)."""

import os

import pytest

from delving.experiments import common, slope_evolution
from delving.models.specs import PRELU_INIT_SLOPE
from tests import experiments_testutil


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{activation: run directory} of the quick photo report's PReLU runs."""
    report = experiments_testutil.quick_photo_report(tmp_path_factory)
    act = experiments_testutil.results(report, "activations")
    seed = act["seeds"][0]
    return {
        a: os.path.join(report["work"], "activations", "runs", f"{a}_seed{seed}")
        for a in ("prelu_shared", "prelu")
    }


@pytest.fixture(scope="module")
def history(runs):
    return slope_evolution.histories(runs)


def test_histories_start_at_the_initial_slope(history):
    assert all(points[0][:2] == (0, PRELU_INIT_SLOPE) for points in history["prelu"].values())


def test_histories_leave_out_runs_without_slopes(runs, tmp_path):
    assert slope_evolution.histories({**runs, "relu": str(tmp_path)}).keys() == runs.keys()


def test_plot_draws_one_panel_per_run(history):
    fig = slope_evolution.plot(history)
    assert len(fig.axes) == 2
    common.plt.close(fig)


def test_plot_draws_one_line_per_layer(history):
    fig = slope_evolution.plot(history)
    lines = [l for l in fig.axes[1].get_lines() if not l.get_label().startswith("_")]
    assert len(lines) == len(history["prelu"]) == 13
    common.plt.close(fig)


def test_plot_saves_a_png(history, tmp_path):
    common.save_figure(slope_evolution.plot(history), tmp_path / "evolution.png")
    assert experiments_testutil.is_png(tmp_path / "evolution.png")
