"""The paper's networks in plain PyTorch, from the same `delving.models.specs`
tables as `delving.models.networks.build_model` (the peer that train_throughput.py
compares with). Same layers, shapes and padding scheme, NCHW (PyTorch's CPU
layout): convs with "same" padding (even kernels alternate bottom/right and
top/left, as in the builder), max pools with "same" padding, SPP as adaptive
max pools (the same bins as `keras_layers.SpatialPyramidPooling`), fc layers.
"""

import math

import torch
from torch import nn

from delving.models import specs


def _activation(kind, channels):
    if kind == "relu":
        return nn.ReLU()
    if kind == "lrelu":
        return nn.LeakyReLU(0.25)
    return nn.PReLU(1 if kind == "prelu_shared" else channels, init=0.25)


class _SamePad(nn.Module):
    """TensorFlow's "same" padding for a `kernel`/`stride` window (value
    `fill`), or the builder's top/left padding for every other even kernel."""

    def __init__(self, kernel, stride, fill=0.0, top_left=False):
        super().__init__()
        self.kernel, self.stride, self.fill, self.top_left = kernel, stride, fill, top_left

    def forward(self, x):
        pads = []
        for size in (x.shape[3], x.shape[2]):  # F.pad: last axis first
            total = max((math.ceil(size / self.stride) - 1) * self.stride + self.kernel - size, 0)
            before = total - total // 2 if self.top_left else total // 2
            pads += [before, total - before]
        return nn.functional.pad(x, pads, value=self.fill)


class _SPP(nn.Module):
    def __init__(self, bins):
        super().__init__()
        self.pools = nn.ModuleList(nn.AdaptiveMaxPool2d(n) for n in bins)

    def forward(self, x):
        # NHWC order of the flattened bins, like the Keras layer.
        return torch.cat([p(x).permute(0, 2, 3, 1).flatten(1) for p in self.pools], 1)


def build(name, *, num_classes, activation="prelu", width_multiplier=1.0, fc_units=4096):
    """nn.Sequential for `specs.MODEL_SPECS[name]`, input (N, 3, H, W)."""
    spec = specs.MODEL_SPECS[name]
    layers, channels, even_kernels = [], 3, 0
    for stage in spec.stages:
        filters = max(1, int(stage.filters * width_multiplier + 0.5))
        for j in range(stage.repeats):
            stride = stage.stride if j == 0 else 1
            top_left = False
            if stage.kernel % 2 == 0 and stride == 1:
                even_kernels += 1
                top_left = even_kernels % 2 == 0
            layers += [
                _SamePad(stage.kernel, stride, top_left=top_left),
                nn.Conv2d(channels, filters, stage.kernel, stride),
                _activation(activation, filters),
            ]
            channels = filters
        if stage.pool:
            pool = stage.pool
            layers += [
                _SamePad(pool.size, pool.stride, -math.inf),
                nn.MaxPool2d(pool.size, pool.stride),
            ]
    layers.append(_SPP(spec.spp_bins))
    features = channels * sum(n * n for n in spec.spp_bins)
    for _ in range(2):
        layers += [nn.Linear(features, fc_units), _activation(activation, fc_units)]
        features = fc_units
    layers.append(nn.Linear(features, num_classes))
    for m in layers:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in")
            nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)
