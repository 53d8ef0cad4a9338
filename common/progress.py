"""Keras progress bars that suit where stdout goes.

Keras redraws its `Progbar` in place with ANSI colours and carriage returns
whenever `"posix" in sys.modules`, i.e. always on Linux and macOS, so a log
file fills with escape codes. Here the bar is drawn in place only on a
terminal; elsewhere (a file, a pipe) it prints one plain line when it
completes (Keras' `verbose=2`).
"""

import sys

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
