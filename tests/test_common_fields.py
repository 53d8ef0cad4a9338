"""common/fields.py: dataclass fields that carry their help, choices and check."""

import dataclasses

import pytest

from common import fields


@dataclasses.dataclass(frozen=True)
class Settings:
    size: int = fields.field(8, "side.", check=fields.POSITIVE)
    steps: int | None = fields.field(None, "steps; default: all.", check=fields.POSITIVE)
    mode: str = fields.field("fast", "how.", choices=("fast", "slow"))
    sizes: tuple[int, ...] = fields.field((1, 2), "sides.")
    rate: float = fields.field(0.5, "rate.", check=fields.FRACTION)


def test_field_keeps_its_default():
    assert Settings().size == 8


def test_field_metadata_holds_what_the_flag_needs():
    mode, size = (Settings.__dataclass_fields__[n].metadata for n in ("mode", "size"))
    assert (mode["help"], mode["choices"], mode["check"]) == ("how.", ("fast", "slow"), None)
    assert size["check"] is fields.POSITIVE


def test_check_passes_the_defaults():
    fields.check(Settings())


def test_check_error_is_one_line_naming_the_flag():
    with pytest.raises(ValueError) as refused:
        fields.check(Settings(size=0))
    assert str(refused.value) == "--size=0: must be positive"


def test_check_error_lists_the_choices():
    with pytest.raises(ValueError) as refused:
        fields.check(Settings(mode="medium"))
    assert str(refused.value) == "--mode=medium: must be one of fast, slow"


def test_check_applies_to_an_optional_fields_value():
    with pytest.raises(ValueError, match=r"^--steps=0: must be positive$"):
        fields.check(Settings(steps=0))


def test_check_accepts_none_for_an_optional_field():
    fields.check(Settings(steps=None))


def test_check_reports_the_first_bad_field_in_declaration_order():
    with pytest.raises(ValueError, match=r"^--size=0:"):
        fields.check(Settings(size=0, rate=2.0))


def test_fraction_excludes_one():
    with pytest.raises(ValueError, match=r"^--rate=1.0: must be in \[0, 1\)$"):
        fields.check(Settings(rate=1.0))


def test_error_writes_a_tuple_as_on_the_command_line():
    assert str(fields.error("sizes", (64, 80), "why")) == "--sizes=64,80: why"


@pytest.mark.parametrize(
    "name,expected",
    [("size", (int, False)), ("steps", (int, True)), ("sizes", (tuple, False))],
)
def test_value_type_of_each_annotation(name, expected):
    assert fields.value_type(Settings, name) == expected


def test_value_type_refuses_a_union_of_two_types():
    @dataclasses.dataclass
    class Two:
        either: int | str = fields.field(0, "one or the other.")

    with pytest.raises(TypeError, match="Two.either"):
        fields.value_type(Two, "either")
