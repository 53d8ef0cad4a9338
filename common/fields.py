"""Dataclass fields that say what they mean: help text, allowed values, check.

A settings dataclass declares each field with `field(default, help, ...)`:
the one place that says what the setting is and which values it takes.
`common.cli.define_flags` makes a command-line flag of every field from it,
and `check` validates an instance against the same metadata, failing in one
line that names the flag: `--name=value: why`. Adding a field so adds its
flag, its help and its validation at once.
"""

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Check:
    """A condition on one value, and what to tell the user when it fails."""

    holds: Callable[[Any], bool]
    why: str


POSITIVE = Check(lambda v: v > 0, "must be positive")
AT_LEAST_ZERO = Check(lambda v: v >= 0, "must be >= 0")
FRACTION = Check(lambda v: 0 <= v < 1, "must be in [0, 1)")


def field(default, help_text, *, choices=None, check=None, none_means=None, show_default=True):
    """A `dataclasses.field` carrying what its flag and validation need.

    Args:
      default: the field's default value.
      help_text: what the setting is, as its flag's --help says it.
      choices: the allowed values, if only some are.
      check: a `Check` the value must pass (None passes where the type is
        Optional: it means "not set").
      none_means: how --help reads a default of None, e.g. "from the data".
      show_default: False where `help_text` itself says what the default is.
    """
    metadata = {
        "help": help_text,
        "choices": tuple(choices) if choices is not None else None,
        "check": check,
        "none_means": none_means,
        "show_default": show_default,
    }
    return dataclasses.field(default=default, metadata=metadata)


def value_type(cls, name):
    """(type, optional) of field `name`: `int | None` gives (int, True).

    Generic types give their origin: `tuple[int, ...]` gives tuple.
    """
    hint = typing.get_type_hints(cls)[name]
    members = typing.get_args(hint) if _is_union(hint) else (hint,)
    kinds = [m for m in members if m is not type(None)]
    if len(kinds) != 1:
        raise TypeError(f"{cls.__name__}.{name}: one type (or Optional of one) expected")
    return typing.get_origin(kinds[0]) or kinds[0], len(kinds) < len(members)


def _is_union(hint):
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def shown(value):
    """A value as it is written on the command line: lists as a,b,c."""
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def error(name, value, why):
    """The one-line error for flag `name`: `--name=value: why`."""
    return ValueError(f"--{name}={shown(value)}: {why}")


def check_field(cls, name, value):
    """Raises `error` if `value` is not allowed for field `name` of `cls`."""
    f = cls.__dataclass_fields__[name]
    if value is None and value_type(cls, name)[1]:
        return
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        raise error(name, value, f"must be one of {', '.join(map(str, choices))}")
    rule = f.metadata.get("check")
    if rule is not None and not rule.holds(value):
        raise error(name, value, rule.why)


def check(instance):
    """Every field of `instance` against its choices and check, in field order."""
    for f in dataclasses.fields(instance):
        check_field(type(instance), f.name, getattr(instance, f.name))
