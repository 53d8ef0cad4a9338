"""benchmarks/torch_net.py (PyTorch peer of train_throughput.py) against build_model."""

import os
import sys

import pytest

from delving.models import networks
from delving.models import stats as model_stats

torch = pytest.importorskip("torch")
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
)
import torch_net  # noqa: E402


def _pair(name):
    """Our network and its PyTorch peer, built with the same arguments."""
    kwargs = dict(num_classes=7, activation="prelu", width_multiplier=0.0625, fc_units=16)
    return networks.build_model(name, dropout=0.0, **kwargs), torch_net.build(name, **kwargs)


@pytest.mark.parametrize("name", networks.MODEL_NAMES)
def test_same_parameter_count_as_build_model(name):
    ours, peer = _pair(name)
    assert sum(p.numel() for p in peer.parameters()) == ours.count_params()


@pytest.mark.parametrize("name", networks.MODEL_NAMES)
def test_same_output_sizes_as_build_model(name):
    ours, peer = _pair(name)
    # The same conv work per image: the feature maps have the same sizes.
    stats = model_stats.layer_stats(ours, 64)
    convs = [s.output_shape for s in stats if s.kind == "Conv2D"]
    shapes, x = [], torch.zeros(1, 3, 64, 64)
    for layer in peer:
        x = layer(x)
        if isinstance(layer, torch.nn.Conv2d):
            shapes.append((x.shape[2], x.shape[3], x.shape[1]))
    assert shapes == convs
    assert tuple(x.shape) == (1, 7)
