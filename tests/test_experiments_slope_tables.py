"""delving.experiments.slope_tables: Table 1 as the reports write it, and read back."""

import os

from delving.experiments import slope_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ("conv1", "conv2_1", "fc2")


def _results():
    return {
        "summary": {
            "prelu_shared": {"prelu": {l: (0.5 + i / 10, 0.01 * i) for i, l in enumerate(LAYERS)}},
            "prelu": {"prelu": {l: (0.25 - i / 100, 0.002) for i, l in enumerate(LAYERS)}},
        }
    }


def test_coefficient_table_shows_each_layer_beside_the_paper():
    table = slope_tables.coefficient_table(_results())
    conv1 = next(l for l in table.splitlines() if l.startswith("| conv1 |"))
    assert "0.500 ± 0.000" in conv1 and "0.681" in conv1 and "0.596" in conv1


def test_read_coefficient_table_reads_back_what_coefficient_table_writes():
    text = "# A report\n\nSome words.\n\n" + slope_tables.coefficient_table(_results()) + "\n\nEnd."
    back = slope_tables.read_coefficient_table(text)["summary"]
    for variant, per_layer in _results()["summary"].items():
        for layer, (mean, std) in per_layer["prelu"].items():
            assert back[variant]["prelu"][layer] == (round(mean, 3), round(std, 3))


def test_read_coefficient_table_reads_the_published_shapes_report():
    with open(os.path.join(ROOT, "docs", "REPRODUCTION.md")) as f:
        back = slope_tables.read_coefficient_table(f.read())["summary"]
    assert set(back) == {"prelu_shared", "prelu"}
    assert len(back["prelu"]["prelu"]) == 13 and "conv1" in back["prelu_shared"]["prelu"]


def test_read_coefficient_table_is_none_without_the_table():
    assert (
        slope_tables.read_coefficient_table("| layer | other |\n| --- | --- |\n| a | b |") is None
    )
