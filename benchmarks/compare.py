"""Side-by-side timing: interleaved repeats, medians, spreads, paired ratios.

Pure Python (no TensorFlow), shared by the benchmarks that compare variants.

Every repeat runs each variant once, in turn, so a change of load on a
shared machine hits all of them alike. Two ways to read the result:

- spreads: each variant's median with min-max over repeats; where the
  spreads of two variants overlap, their difference is not measured;
- paired ratios: `x / y` within each repeat, then median with min-max.
  The variants of one repeat ran seconds apart, so the load they saw is
  nearly the same and largely cancels: a ratio whose min-max excludes 1.00
  held in every repeat even when a load spike widened both spreads.
"""

import statistics


def interleaved(variants, repeats):
    """`{name: [seconds per repeat]}`, calling each of `variants` (name ->
    zero-argument function returning seconds) once per repeat, in turn."""
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            times[name].append(run())
    return times


def spread(values):
    """`(median, min, max)`."""
    return statistics.median(values), min(values), max(values)


def paired_ratio(times, x, y):
    """`(median, min, max)` of `times[x][i] / times[y][i]` over repeats `i`."""
    return spread([a / b for a, b in zip(times[x], times[y])])


def format_ratio(ratio):
    median, low, high = ratio
    return f"{median:.3f}x [{low:.3f}-{high:.3f}]"


def warnings(times, ratios):
    """Lines saying which differences were not measured: every pair of
    variants whose min-max spreads overlap, and every `(x, y)` in `ratios`
    whose paired ratio has a min-max that includes 1.00."""
    lines = []
    names = list(times)
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            if min(times[x]) <= max(times[y]) and min(times[y]) <= max(times[x]):
                lines.append(f"WARNING: {x} and {y} overlap (min-max): no difference measured")
    for x, y in ratios:
        _, low, high = paired_ratio(times, x, y)
        if low <= 1.0 <= high:
            lines.append(
                f"WARNING: {x} / {y} per repeat spans 1.00 ({low:.3f}-{high:.3f}): inside the noise"
            )
    return lines
