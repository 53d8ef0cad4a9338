"""delving.experiments.signal_propagation (Sec. 2.2, Eq. 9 and 13), as the
quick report ran it (tests/experiments_testutil.py)."""

import pytest

from tests import experiments_testutil


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    return experiments_testutil.quick_report(tmp_path_factory)


@pytest.fixture(scope="module")
def results(quick_report):
    return experiments_testutil.results(quick_report, "signal_propagation")


def _layers(name):
    return 27 if name.startswith("small_30") else 30


def test_measures_every_layer_of_both_networks(results):
    assert set(results["networks"]) == {"small_30@96", "plain_30"}
    for name, net in results["networks"].items():
        for init, m in net["inits"].items():
            assert len(m["forward"]) == len(m["backward"]) == _layers(name), (name, init)


def test_xavier_signal_vanishes_as_predicted(results):
    for name, net in results["networks"].items():
        xavier = net["inits"]["xavier"]
        # 2^-(L/2) is ~1e-4: Xavier is orders of magnitude below He, and within a
        # small factor of the prediction (finite width scatters around it).
        for direction in ("forward", "backward"):
            measured = xavier[f"{direction}_vs_he_fan_in"]
            predicted = xavier[f"{direction}_vs_he_fan_in_predicted"]
            assert predicted == pytest.approx(2 ** (-_layers(name) / 2))
            assert measured < 1e-3, (name, direction)
            assert predicted / 10 < measured < predicted * 10, (name, direction)


def test_he_fan_in_keeps_the_forward_signal(results):
    plain = results["networks"]["plain_30"]["inits"]
    assert plain["he_fan_in"]["forward_ratio_predicted"] == pytest.approx(1.0)
    # He fan-in keeps the forward signal within a (finite-width) factor of 1.
    assert 0.05 < plain["he_fan_in"]["forward_ratio"] < 20


def test_prints_the_table_it_writes(quick_report):
    md = (quick_report["work"] / "signal_propagation" / "signal_propagation.md").read_text()
    assert md.splitlines()[0] in quick_report["stdout"]


def test_draws_its_figure(quick_report):
    figure = quick_report["work"] / "signal_propagation" / "signal_propagation.png"
    assert experiments_testutil.is_png(figure)


def test_bad_flag_fails_in_one_line():
    experiments_testutil.assert_bad_flag_fails_in_one_line(
        ["delving.experiments.signal_propagation", "--inits=glorot"]
    )
