"""delving.experiments.slope_evolution: the figure of the learned slopes over
training, drawn from slopes of real trained runs (the photo report's --quick
runs), and the report's fallback while no summary reader exists."""

import pytest

from delving.experiments import common, slope_evolution
from delving.models.specs import PRELU_INIT_SLOPE
from tests import experiments_testutil


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """{run: {layer: [(0, initial, channels), (1, learned mean, learned channels)]}}."""
    act = experiments_testutil.results(
        experiments_testutil.quick_photo_report(tmp_path_factory), "activations"
    )
    out = {}
    for a in ("prelu_shared", "prelu"):
        run = act["runs"][a][0]
        out[a] = {
            layer: [
                (0, PRELU_INIT_SLOPE, [PRELU_INIT_SLOPE] * len(channels)),
                (1, run["prelu"][layer], channels if len(channels) > 1 else None),
            ]
            for layer, channels in run["prelu_channels"].items()
        }
    return out


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


def test_histories_are_empty_without_the_reader(tmp_path):
    assert slope_evolution.histories({"run": str(tmp_path)}, "delving.training.no_reader") == {}
