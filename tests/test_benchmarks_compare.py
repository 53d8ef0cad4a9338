"""benchmarks/compare.py: interleaving, paired ratios and the noise warnings."""

import os
import sys

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
)
import compare  # noqa: E402


def test_repeats_are_interleaved():
    calls = []
    variants = {name: (lambda name=name: calls.append(name) or 1.0) for name in "xyz"}
    times = compare.interleaved(variants, repeats=2)
    assert calls == list("xyzxyz") and times == {n: [1.0, 1.0] for n in "xyz"}


def test_a_load_spike_widens_spreads_but_cancels_in_paired_ratios():
    # x is 1.1x slower than y in every repeat; repeat 2 ran under load (3x).
    times = {"y": [1.0, 1.0, 3.0], "x": [1.1, 1.1, 3.3]}
    median, low, high = compare.paired_ratio(times, "x", "y")
    assert abs(median - 1.1) < 1e-9 and abs(low - 1.1) < 1e-9 and abs(high - 1.1) < 1e-9
    assert compare.format_ratio((median, low, high)) == "1.100x [1.100-1.100]"
    lines = compare.warnings(times, [("x", "y")])
    assert lines == ["WARNING: y and x overlap (min-max): no difference measured"]


def test_a_ratio_spanning_one_is_inside_the_noise():
    times = {"y": [1.0, 1.0, 1.0], "x": [0.9, 1.0, 1.2]}
    lines = compare.warnings(times, [("x", "y")])
    assert any("x / y per repeat spans 1.00 (0.900-1.200): inside the noise" in s for s in lines)
    assert compare.warnings({"y": [1.0, 1.1], "x": [2.0, 2.1]}, [("x", "y")]) == []
