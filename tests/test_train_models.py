"""End-to-end smoke run of every network through the real training loop."""

import math

import pytest

from delving.models import networks
from delving.training import config, loop
from tests import train_testutil as util


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return util.tiny_data_dir(tmp_path_factory)


@pytest.mark.parametrize("name", networks.MODEL_NAMES)
def test_every_model_trains_one_step(name, data_dir, tmp_path):
    cfg = config.resolve_config(
        **dict(
            util.TINY_RECIPE,
            model=name,
            data_dir=data_dir,
            model_dir=str(tmp_path),
            width_multiplier=1 / 32,
            fc_units=8,
            image_size=64,
            scale_range=(64, 72),
            eval_resize=64,
            batch_size=2,
            steps_per_epoch=1,
            eval_steps=1,
        )
    )
    result = loop.train(cfg, verbose=0)
    assert result.step == 1 and result.epoch == 1
    row = result.history[-1]
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])
    assert (tmp_path / "model.keras").exists()
    # The Table 1 style coefficients cover the conv layers and fc1/fc2.
    assert "fc1_prelu" in result.prelu and "fc2_prelu" in result.prelu
    assert all(math.isfinite(v) for v in result.prelu.values())
