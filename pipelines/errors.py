"""The one error type for user mistakes with the data, and its tf.data twin.

Python-side checks (missing directory, empty file pattern, bad labels file)
raise `DataError` directly. Checks that can only happen inside a running
tf.data pipeline (a truncated shard, an undecodable image, a record without a
required feature) fail through `tf.debugging.Assert`, whose message starts
with `MARKER`; `as_data_error` turns such a TensorFlow error back into a
one-line `DataError`, so a training binary can print it without a traceback.
"""

import contextlib
import re
import sys

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


@contextlib.contextmanager
def exit_on_user_error(program, also=()):
    """Ends a binary with one line, no traceback, for mistakes with the data.

    `DataError`, the exception types in `also`, permission errors (Python's
    or TensorFlow's) and TensorFlow errors that `as_data_error` recognises
    become `"<program>: error: <message>"` and exit status 1; any other error
    propagates with its traceback.
    """
    import tensorflow as tf  # Imported late: flag parsing stays fast.

    try:
        yield
    except (DataError, *also) as e:
        sys.exit(f"{program}: error: {e}")
    except PermissionError as e:  # a file inside a readable directory
        sys.exit(f"{program}: error: {e.filename}: permission denied")
    except tf.errors.PermissionDeniedError as e:  # the same through tf.io.gfile
        sys.exit(f"{program}: error: {e.message.split(';')[0].strip()}: permission denied")
    except tf.errors.OpError as e:
        data_error = as_data_error(e)
        if data_error is None:
            raise
        sys.exit(f"{program}: error: {data_error}")


def _local(path):
    return path and "://" not in str(path)  # gs:// and the like: no local checks


def check_paths(*, files=None, dirs=None, output_dirs=None, output_files=None):
    """Raises a one-line `DataError` naming the first wrong path flag.

    Each argument maps a flag name to its value (None: not given, skipped).
    Paths on remote file systems (`gs://...`) are not checked here.

    Args:
      files: paths that must be existing files.
      dirs: paths that must be existing directories.
      output_dirs: directories to write into: may not exist yet, must not be
        a file.
      output_files: files to write: may not exist yet, must not be a
        directory.
    """
    import os  # pylint: disable=import-outside-toplevel

    for flag, path in (files or {}).items():
        if _local(path) and not os.path.isfile(path):
            why = "is a directory, not a file" if os.path.isdir(path) else "does not exist"
            raise DataError(f"--{flag}={path} {why}")
        if _local(path) and not os.access(path, os.R_OK):
            raise DataError(f"--{flag}={path} is not readable: permission denied")
    for flag, path in (dirs or {}).items():
        if _local(path) and not os.path.isdir(path):
            why = "is a file, not a directory" if os.path.exists(path) else "does not exist"
            raise DataError(f"--{flag}={path} {why}")
        if _local(path) and not os.access(path, os.R_OK | os.X_OK):
            raise DataError(f"--{flag}={path} is not readable: permission denied")
    for flag, path in (output_dirs or {}).items():
        if _local(path) and os.path.exists(path) and not os.path.isdir(path):
            raise DataError(f"--{flag}={path} is a file, not a directory")
        _check_writable(flag, path)
    for flag, path in (output_files or {}).items():
        if _local(path) and os.path.isdir(path):
            raise DataError(f"--{flag}={path} is a directory, not a file")
        _check_writable(flag, path)


def _check_writable(flag, path):
    """The output path, or its nearest existing ancestor, can be written to."""
    import os  # pylint: disable=import-outside-toplevel

    if not _local(path):
        return
    there = os.path.abspath(path)
    while not os.path.exists(there):
        there = os.path.dirname(there)
    where = "" if there == os.path.abspath(path) else f" ({there})"
    if there != os.path.abspath(path) and not os.path.isdir(there):
        raise DataError(f"--{flag}={path}: {there} is a file, not a directory")
    wanted = os.W_OK | (os.X_OK if os.path.isdir(there) else 0)
    if not os.access(there, wanted):
        raise DataError(f"--{flag}={path} is not writable{where}: permission denied")


def pid_alive(pid):
    """Whether process `pid` runs on this host: the owners of temporary
    directories and locks named after their process."""
    import os  # pylint: disable=import-outside-toplevel

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def no_arguments(program, argv):
    """Exits in one line when a binary is given positional arguments (absl's
    UsageError would print the whole module docstring)."""
    if len(argv) > 1:
        sys.exit(f"{program}: error: unexpected arguments: {' '.join(argv[1:])}")


def exit_on_bad_paths(program, **paths):
    """`check_paths(**paths)`, ending the binary in one line if one is wrong."""
    try:
        check_paths(**paths)
    except DataError as e:
        sys.exit(f"{program}: error: {e}")
