"""The one error type for user mistakes with the data, and its tf.data twin.

Python-side checks (missing directory, empty file pattern, bad labels file)
raise `DataError` directly. Checks that can only happen inside a running
tf.data pipeline (a truncated shard, an undecodable image, a record without a
required feature) fail through `tf.debugging.Assert`, whose message starts
with `MARKER`; `as_data_error` turns such a TensorFlow error back into a
one-line `DataError`, so a training binary can print it without a traceback.
"""

import re

MARKER = "DataError:"


class DataError(ValueError):
    """A problem with the user's data, described in one line (what and where)."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).split()))


def assert_that(condition, *parts):
    """In-graph check: fails with a one-line message that `as_data_error` reads.

    The parts are only formatted when the check fails (the bare `Assert` op,
    without the `cond` that `tf.debugging.Assert` wraps it in inside graphs),
    so a passing check costs next to nothing per element of a pipeline.

    Args:
      condition: scalar bool tensor.
      *parts: strings and scalar tensors (strings or numbers), read as one
        message; keep "]" out of them.

    Returns:
      The assert op (use it as a control dependency).
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return tf.raw_ops.Assert(
        condition=condition,
        data=[tf.constant(MARKER)] + [tf.convert_to_tensor(p) for p in parts],
        summarize=1,
    )


# Assert prints each part in brackets: "[DataError:] [record ] [3] [ of ]...".
_ASSERTED = re.compile(rf"\[{re.escape(MARKER)}\]((?: \[[^\]\n]*\])+)")
_PART = re.compile(r" \[([^\]\n]*)\]")


def as_data_error(error):
    """Returns a `DataError` for a tf.errors.OpError raised by our pipelines.

    Args:
      error: any exception, typically the `tf.errors.InvalidArgumentError`
        raised while iterating a dataset from `pipelines.imagenet.make_dataset`.

    Returns:
      A `DataError` with the one-line message the pipeline asserted, or None
      when the error did not come from one of our data checks.
    """
    match = _ASSERTED.search(getattr(error, "message", None) or str(error))
    if not match:
        return None
    return DataError("".join(_PART.findall(match.group(1))))
