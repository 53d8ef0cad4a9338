"""Flag helpers shared by the command-line binaries (absl only, no TensorFlow).

Every binary that takes a comma-separated list of integers (`--scale_range`,
`--scales`, `--lr_decay_epochs`, ...) defines it with `define_int_list`, so
the syntax is checked by one validator and fails in one line naming the flag.
"""

from absl import flags

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
    name, default, help_text, *, minimum=0, count=None, allow_empty=False, example="1,2"
):
    """A `DEFINE_list` flag whose value must be integers >= `minimum`.

    Args:
      name, default, help_text: as for `flags.DEFINE_list` (default None: not given).
      minimum: the smallest integer allowed.
      count: the exact number of integers, or None for any.
      allow_empty: whether `--name=` (no integers) is accepted.
      example: shown in the error message, e.g. "256,384".

    Returns:
      The FlagHolder; its value stays a list of strings (None if not given).
    """
    holder = flags.DEFINE_list(name, default, help_text)
    what = f"{count} integers" if count else "integers"
    flags.register_validator(
        name,
        lambda v: (
            v is None
            or parse_int_list(v, minimum=minimum, count=count, allow_empty=allow_empty) is not None
        ),
        f"--{name}: expected {what} >= {minimum}, e.g. --{name}={example}",
    )
    return holder
