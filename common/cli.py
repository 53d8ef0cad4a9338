"""What every command-line binary shares: list flags, path checks, one-line exits.

absl only at import (no TensorFlow), so `--help` and flag errors answer at once.

Every binary that takes a comma-separated list of integers (`--scale_range`,
`--scales`, `--lr_decay_epochs`, ...) defines it with `define_int_list`, so
the syntax is checked by one validator and fails in one line naming the flag.
A binary whose settings are a dataclass declared with `common.fields` gets
one flag per field from `define_flags`.
"""

import contextlib
import dataclasses
import sys

from absl import flags

from common import fields
from common.errors import DataError, as_data_error

# The flags defined here belong to the binary that asks for them (its --help
# lists them), not to this module.
flags.disclaim_key_flags()


def parse_int_list(values, *, minimum=0, count=None, allow_empty=False):
    """The integers of a list flag's strings, or None if they are not valid."""
    try:
        numbers = [int(v) for v in values]
    except (TypeError, ValueError):
        return None
    if (not numbers and not allow_empty) or any(n < minimum for n in numbers):
        return None
    if count is not None and len(numbers) != count:
        return None
    return numbers


def define_int_list(
    name,
    default,
    help_text,
    *,
    minimum=0,
    count=None,
    allow_empty=False,
    example="1,2",
    flag_values=flags.FLAGS,
):
    """A `DEFINE_list` flag whose value must be integers >= `minimum`.

    Args:
      name, default, help_text: as for `flags.DEFINE_list` (default None: not given).
      minimum: the smallest integer allowed.
      count: the exact number of integers, or None for any.
      allow_empty: whether `--name=` (no integers) is accepted.
      example: shown in the error message, e.g. "256,384".
      flag_values: the `FlagValues` to define it in.

    Returns:
      The FlagHolder; its value stays a list of strings (None if not given).
    """
    holder = flags.DEFINE_list(name, default, help_text, flag_values=flag_values)
    what = f"{count} integers" if count else "integers"
    flags.register_validator(
        name,
        lambda v: (
            v is None
            or parse_int_list(v, minimum=minimum, count=count, allow_empty=allow_empty) is not None
        ),
        f"--{name}: expected {what} >= {minimum}, e.g. --{name}={example}",
        flag_values=flag_values,
    )
    return holder


_DEFINE_BY_TYPE = {
    str: flags.DEFINE_string,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    bool: flags.DEFINE_bool,
}


def define_flags(cls, *, presets=None, flag_values=flags.FLAGS):
    """One flag per field of dataclass `cls`, declared with `common.fields.field`.

    Each flag is typed by its field (str, int, float, bool, a tuple of ints
    as an int list; Optional of any) and defaults to None, "not given", so
    that the caller fills in the rest (from a preset, then the field's
    default). The flags only parse: `fields.check` judges the values, from
    whichever source they came. --help shows the help text, the choices
    and the default, per preset where presets differ.

    Args:
      cls: the dataclass.
      presets: preset name -> {field: value} for the fields it changes.
      flag_values: the `FlagValues` to define them in.

    Returns:
      {field name: FlagHolder}.
    """
    holders = {}
    for f in dataclasses.fields(cls):
        kind, _ = fields.value_type(cls, f.name)
        text = _help(f, presets or {})
        if kind is tuple:
            # Any count, empty included: the field's check says what is allowed.
            example = fields.shown(f.default) if f.default else "1,2"
            holders[f.name] = define_int_list(
                f.name, None, text, allow_empty=True, example=example, flag_values=flag_values
            )
        elif kind in _DEFINE_BY_TYPE:
            holders[f.name] = _DEFINE_BY_TYPE[kind](f.name, None, text, flag_values=flag_values)
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no flag type for {kind.__name__}")
    return holders


def _help(f, presets):
    """The field's help with its choices in front (as absl's enum flags) and its defaults."""
    text = f.metadata.get("help")
    if not text:
        raise TypeError(f"field {f.name}: no help text (declare it with common.fields.field)")
    choices = f.metadata.get("choices")
    if choices:
        text = "<" + "|".join(map(str, choices)) + ">: " + text
    if not f.metadata.get("show_default", True) or f.default is dataclasses.MISSING:
        return text

    none_means = f.metadata.get("none_means")
    values = {name: changes.get(f.name, f.default) for name, changes in presets.items()}
    if len({fields.shown(v) for v in values.values()}) > 1:
        shown = {
            p: (none_means or "not set") if v is None else fields.shown(v)
            for p, v in values.items()
        }
        return text + " [preset " + "; ".join(f"{p}: {v}" for p, v in shown.items()) + "]"
    value = next(iter(values.values())) if values else f.default
    if value is None:  # the help text says what not giving it means
        return text + (f" [default {none_means}]" if none_means else "")
    return text + f" [default {fields.shown(value)}]"


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
    import os

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
    import os

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
