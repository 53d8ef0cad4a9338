"""delving.experiments.convergence (Fig. 2 and 3: He against Xavier init), as
the quick report ran it (tests/experiments_testutil.py)."""

import pytest

from delving.experiments import common
from tests import experiments_testutil


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    return experiments_testutil.quick_report(tmp_path_factory)


@pytest.fixture(scope="module")
def results(quick_report):
    return experiments_testutil.results(quick_report, "convergence")


def test_quick_mode_trains_one_model_with_one_seed(results):
    assert set(results["runs"]) == {"small_30"}  # --quick trains one model
    assert results["seeds"] == [0]  # --quick: one seed


def test_every_init_trains_one_epoch(results):
    for per_init in results["runs"].values():
        assert set(per_init) == {"he_fan_in", "xavier"}
        for runs in per_init.values():
            (r,) = runs
            assert r["seed"] == 0 and len(r["history"]) == 1
            for key in ("train_top1_error", "val_top1_error", "val_top5_error"):
                assert 0.0 <= r["history"][0][key] <= 1.0
            assert isinstance(r["stalled"], bool)
            assert r["chance_error"] == pytest.approx(0.9)


def test_recipe_is_the_presets_with_only_the_quick_overrides(results):
    recipe = results["recipes"]["small_30"]  # from the run's config.json
    for key, value in common.QUICK_FIELDS.items():
        assert recipe[key] == (list(value) if isinstance(value, tuple) else value), key


def test_table_has_one_xavier_row(quick_report):
    md = (quick_report["work"] / "convergence" / "convergence.md").read_text()
    assert md.count("Xavier") == 1


def test_draws_its_figure(quick_report):
    assert experiments_testutil.is_png(quick_report["work"] / "convergence" / "convergence.png")


def test_bad_flag_fails_in_one_line():
    experiments_testutil.assert_bad_flag_fails_in_one_line(
        ["delving.experiments.convergence", "--models=small_31"]
    )
