"""The network, dense-testing window and input scaling a `TrainConfig` describes.

Training, evaluation and export all ask here, so a model_dir's network is
built the same way everywhere, dense testing uses the window the head saw
during training (from `cfg.image_size`), and inputs are normalised the way
the model was trained.
"""

import keras

from delving.models import networks
from pipelines import preprocessing


def build(cfg, *, seed=None) -> keras.Model:
    """`networks.build_model` with the config's architecture fields."""
    return networks.build_model(
        cfg.model,
        num_classes=cfg.num_classes,
        activation=cfg.activation,
        init=cfg.init,
        dropout=cfg.dropout,
        width_multiplier=cfg.width_multiplier,
        fc_units=cfg.fc_units,
        seed=seed,
    )


def dense_window(cfg) -> int:
    """Side of the conv-map window the head saw on `cfg.image_size` crops."""
    return networks.head_window(cfg.model, cfg.image_size)


def input_std(cfg):
    """Per-channel divisor after the mean (0-255 scale), or None: mean only."""
    return preprocessing.STD_RGB if cfg.input_std else None
