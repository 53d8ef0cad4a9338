"""delving.models.stats: shapes, params and multiply-adds of every layer."""

import math

import pytest

from delving.models import networks
from delving.models import stats as model_stats

# small_14 at a quarter of its width: conv1 has 16 filters, conv3 64.
SMALL = {"width_multiplier": 0.25, "fc_units": 256, "num_classes": 10}


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_layer_stats_by_hand(data_format):
    model = networks.build_model("small_14", activation="prelu", data_format=data_format, **SMALL)
    stats = {s.name: s for s in model_stats.layer_stats(model, 224)}

    def shape(h, w, c):
        return (h, w, c) if data_format == "channels_last" else (c, h, w)

    # conv1, 7x7 /2 "same" on 224x224x3 -> 112x112x16: each output element
    # takes 7*7*3 = 147 multiply-adds.
    assert stats["conv1"].output_shape == shape(112, 112, 16)
    assert stats["conv1"].macs == 112 * 112 * 16 * 147 == 29_503_488
    assert stats["conv1"].params == 147 * 16 + 16
    assert stats["conv1"].part == "trunk"
    assert stats["conv1_prelu"].params == 16
    assert stats["conv1_prelu"].macs == 0
    # pool1 3x3 /3: ceil(112 / 3) = 38; pool2 2x2 /2: 19.
    assert stats["pool1"].output_shape == shape(38, 38, 16)
    assert stats["conv3_6"].output_shape == shape(19, 19, 64)
    # conv2_1, 2x2 on 16 channels -> 32: 38*38*32 outputs x 2*2*16.
    assert stats["conv2_1"].macs == 38 * 38 * 32 * 64
    # spp {6,3,2,1}: 50 bins x 64 channels -> fc1 (256 units).
    assert stats["spp"].output_shape == (3200,)
    assert stats["fc1"].macs == 3200 * 256
    assert stats["fc1"].part == "head"
    assert stats["fc3"].output_shape == (10,)
    params, macs = model_stats.totals(list(stats.values()))
    assert params == model.count_params()
    assert macs == sum(s.macs for s in stats.values() if s.kind in ("Conv2D", "Dense"))


def test_stats_follow_the_image_size():
    model = networks.build_model("model_a", width_multiplier=0.125, fc_units=64)
    at_224 = {s.name: s for s in model_stats.layer_stats(model, 224)}
    at_448 = {s.name: s for s in model_stats.layer_stats(model, 448)}
    assert at_224["conv4_5"].output_shape == (14, 14, 64)
    assert at_448["conv4_5"].output_shape == (28, 28, 64)
    # Conv cost scales with the area, the head's does not (SPP).
    assert at_448["conv2_3"].macs == 4 * at_224["conv2_3"].macs
    assert at_448["fc1"].macs == at_224["fc1"].macs == 64 * 63 * 64


def _table_lines():
    model = networks.build_model("small_14", activation="relu", **SMALL)
    stats = model_stats.layer_stats(model, 64)
    return model, stats, model_stats.format_table(stats).splitlines()


def test_format_table_has_a_line_per_layer():
    _, stats, lines = _table_lines()
    assert lines[0].split()[:3] == ["layer", "type", "output"]
    assert len(lines) == len(stats) + 4  # header, rules, total


def test_format_table_ends_with_the_total_params():
    model, _, lines = _table_lines()
    assert f"{model.count_params():,}" in lines[-1]


@pytest.mark.parametrize("name", networks.MODEL_NAMES)
@pytest.mark.parametrize("dropout", [0.5, 0.0])
def test_activation_elements_from_the_spec_match_the_built_model(name, dropout):
    narrow = dict(width_multiplier=0.125, fc_units=16, num_classes=7, dropout=dropout)
    model = networks.build_model(name, **narrow)
    for size in (64, 77):  # 77: odd sides round up at every stride
        built = sum(math.prod(s.output_shape) for s in model_stats.layer_stats(model, size))
        assert model_stats.activation_elements(name, size, **narrow) == built
