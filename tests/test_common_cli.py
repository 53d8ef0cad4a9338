"""common/cli.py: flags generated from a dataclass's fields, on real absl FlagValues."""

import dataclasses

import pytest
from absl import flags

from common import cli, fields


@dataclasses.dataclass(frozen=True)
class Settings:
    name: str | None = fields.field(None, "what to call it.")
    size: int = fields.field(8, "side.", check=fields.POSITIVE)
    rate: float = fields.field(0.5, "rate.", check=fields.FRACTION)
    fast: bool = fields.field(False, "hurry.")
    sizes: tuple[int, ...] = fields.field((64, 80), "sides.")
    mode: str = fields.field("fast", "how.", choices=("fast", "slow"))
    origin: str = fields.field("here", "where; default: the caller's.", show_default=False)
    classes: int = fields.field(10, "classes.", none_means="from the data")


# Preset name -> the fields it changes, as a binary's presets are given.
PRESETS = {"big": {}, "small": {"size": 2, "sizes": (4, 5), "classes": None}}


def _define(cls=Settings, presets=PRESETS):
    flag_values = flags.FlagValues()
    holders = cli.define_flags(cls, presets=presets, flag_values=flag_values)
    return flag_values, holders


def _parse(*args, cls=Settings):
    flag_values, holders = _define(cls)
    flag_values(["prog", *args])
    return holders


def test_define_flags_makes_one_flag_per_field():
    flag_values, holders = _define()
    names = [f.name for f in dataclasses.fields(Settings)]
    assert sorted(holders) == sorted(names)
    assert all(name in flag_values for name in names)


def test_define_flags_leaves_every_flag_not_given_by_default():
    assert {name: h.value for name, h in _parse().items()} == dict.fromkeys(
        [f.name for f in dataclasses.fields(Settings)]
    )


def test_define_flags_parses_each_type():
    holders = _parse("--name=x", "--size=3", "--rate=0.25", "--fast", "--sizes=4,5", "--mode=slow")
    values = {name: h.value for name, h in holders.items() if h.value is not None}
    assert values == dict(name="x", size=3, rate=0.25, fast=True, sizes=["4", "5"], mode="slow")


def test_define_flags_bool_takes_the_no_prefix():
    assert _parse("--nofast")["fast"].value is False


def test_define_flags_int_list_accepts_an_empty_list():
    assert _parse("--sizes=")["sizes"].value == []


def test_define_flags_int_list_refuses_words():
    with pytest.raises(flags.IllegalFlagValueError, match="--sizes: expected integers"):
        _parse("--sizes=a,b")


def test_define_flags_int_list_error_shows_the_default_as_example():
    with pytest.raises(flags.IllegalFlagValueError, match="e.g. --sizes=64,80"):
        _parse("--sizes=a")


def test_define_flags_only_parses_values_it_does_not_check():
    assert _parse("--size=0")["size"].value == 0  # fields.check judges it


def test_define_flags_help_starts_with_the_fields_help():
    flag_values, _ = _define()
    assert flag_values["size"].help.startswith("side.")


def test_define_flags_help_shows_the_choices():
    flag_values, _ = _define()
    assert flag_values["mode"].help.startswith("<fast|slow>: how.")


def test_define_flags_help_shows_each_presets_default_where_they_differ():
    flag_values, _ = _define()
    assert flag_values["sizes"].help == "sides. [preset big: 64,80; small: 4,5]"


def test_define_flags_help_shows_one_default_where_presets_agree():
    flag_values, _ = _define()
    assert flag_values["rate"].help == "rate. [default 0.5]"


def test_define_flags_help_shows_the_fields_default_without_presets():
    flag_values, _ = _define(presets=None)
    assert flag_values["size"].help == "side. [default 8]"


def test_define_flags_help_reads_none_as_told():
    flag_values, _ = _define()
    assert flag_values["classes"].help == "classes. [preset big: 10; small: from the data]"


def test_define_flags_help_shows_no_default_of_none():
    flag_values, _ = _define()
    assert flag_values["name"].help == "what to call it."


def test_define_flags_help_leaves_the_default_to_the_text_when_told():
    flag_values, _ = _define()
    assert flag_values["origin"].help == "where; default: the caller's."


def test_define_flags_belong_to_the_calling_module():
    flag_values, _ = _define()
    assert flag_values.find_module_defining_flag("size") == __name__


def test_define_flags_refuses_a_field_without_help():
    @dataclasses.dataclass
    class Bare:
        size: int = 3

    with pytest.raises(TypeError, match="size: no help text"):
        _define(Bare, presets=None)


def test_define_flags_refuses_a_type_it_cannot_parse():
    @dataclasses.dataclass
    class Odd:
        table: dict = fields.field(None, "a table.")

    with pytest.raises(TypeError, match="Odd.table: no flag type for dict"):
        _define(Odd, presets=None)


def test_a_new_fields_declaration_is_all_its_flag_needs():
    @dataclasses.dataclass(frozen=True)
    class Grown(Settings):
        depth: int = fields.field(3, "layers.", check=fields.POSITIVE)

    flag_values, holders = _define(Grown)
    flag_values(["prog", "--depth=0"])
    assert flag_values["depth"].help == "layers. [default 3]"
    given = {name: h.value for name, h in holders.items() if h.value is not None}
    with pytest.raises(ValueError) as refused:
        fields.check(Grown(**given))
    assert str(refused.value) == "--depth=0: must be positive"
