"""Keras progress bars that suit where stdout goes.

Keras redraws its `Progbar` in place with ANSI colours and carriage returns
whenever `"posix" in sys.modules`, i.e. always on Linux and macOS, so a log
file fills with escape codes. Here the bar is drawn in place only on a
terminal; elsewhere (a file, a pipe) it prints one plain line when it
completes (Keras' `verbose=2`), or, for a long count (`counter`), a plain
line every so often.
"""

import sys
import time

import keras


def progress_bar(target, *, stateful_metrics=(), visible=True):
    """A `keras.utils.Progbar` for `target` steps (None: unknown).

    `stateful_metrics`: names whose values are already running means (or
    totals), shown as given instead of re-averaged over the updates.
    """
    terminal = sys.stdout.isatty()
    verbose = (1 if terminal else 2) if visible else 0
    bar = keras.utils.Progbar(target, verbose=verbose, stateful_metrics=list(stateful_metrics))
    bar._dynamic_display = terminal  # pylint: disable=protected-access
    return bar


def end_line(bar):
    """Ends a bar drawn part of the way, so that what is printed next (an
    error, say) starts on a line of its own."""
    drawn = bar.verbose == 1 and bar._seen_so_far  # pylint: disable=protected-access
    if drawn and (bar.target is None or bar._seen_so_far < bar.target):
        sys.stdout.write("\n")
        sys.stdout.flush()


class PlainLines:
    """Progress of a long count as plain text lines: one at most every
    `every_s` seconds and one at the end. Written by hand because Keras'
    plain mode (`verbose=2`) prints only the end, which in a log of an
    hours-long conversion says nothing until it is over."""

    def __init__(self, target, *, label, unit, every_s=30.0):
        self.target, self.label, self.unit, self.every_s = target, label, unit, every_s
        self.start = self.last = time.monotonic()

    def update(self, current, finalize=False):
        now = time.monotonic()
        if not finalize and now - self.last < self.every_s:
            return
        self.last = now
        line = f"{self.label}: {current}/{self.target} {self.unit}s"
        if self.target:
            line += f" ({100 * current // self.target}%)"
        elapsed = now - self.start
        if current and elapsed > 0:
            line += f", {current / elapsed:.3g} {self.unit}s/s"
            if not finalize and self.target:
                line += f", about {(self.target - current) * elapsed / current:.0f} s left"
        print(line, flush=True)


def counter(target, *, label, unit, every_s=30.0):
    """Progress of `target` `unit`s: a Keras bar drawn in place on a
    terminal, `PlainLines` elsewhere; both take `update(current, finalize=)`."""
    if sys.stdout.isatty():
        return keras.utils.Progbar(target, unit_name=unit)
    return PlainLines(target, label=label, unit=unit, every_s=every_s)
