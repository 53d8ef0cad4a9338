"""Runs made by earlier versions of the project resume: the checkpoint names,
config.json and training_log.csv of a run directory are a stable format.

tests/data/run_made_before_regrouping/ is a 2-step run of the tiny recipe
(`tests.train_testutil.TINY_RECIPE`, one training shard) written by the last
version with the flat `delving` package (the trainer then lived in
`delving/trainer.py`); only what a resume reads was kept (no model.keras,
no TensorBoard logs).
"""

import os
import shutil

import numpy as np
import tensorflow as tf

from delving.training import config, loop, run_dir
from tests import train_testutil

OLD_RUN = os.path.join(train_testutil.ROOT, "tests", "data", "run_made_before_regrouping")


def _old_run(tmp_path):
    model_dir = tmp_path / "run"
    shutil.copytree(OLD_RUN, model_dir)
    return str(model_dir)


def _recipe(model_dir, data_dir):
    old = run_dir.load_config(os.path.join(model_dir, "config.json"))
    fields = {k: getattr(old, k) for k in train_testutil.TINY_RECIPE if k != "preset"}
    fields.update(
        epochs=2, checkpoint_every_steps=1, keep_checkpoints=1, in_memory=False, cache_data=False
    )
    return config.resolve_config(preset="builtin", data_dir=data_dir, model_dir=model_dir, **fields)


def test_old_config_json_loads(tmp_path):
    cfg = run_dir.load_config(os.path.join(_old_run(tmp_path), "config.json"))
    assert (cfg.model, cfg.width_multiplier, cfg.steps_per_epoch) == ("small_14", 0.125, 2)


def test_old_run_resumes_from_its_last_step(tmp_path, tmp_path_factory):
    model_dir = _old_run(tmp_path)
    before = run_dir.read_history(model_dir)
    result = loop.train(
        _recipe(model_dir, train_testutil.tiny_data_dir(tmp_path_factory)), verbose=0
    )
    assert (result.step, result.epoch) == (4, 2)  # 2 old steps + the 2 of epoch 2
    history = run_dir.read_history(model_dir)
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[0] == before[0]


def test_old_checkpoint_restores_its_weights(tmp_path, tmp_path_factory):
    model_dir = _old_run(tmp_path)
    cfg = _recipe(model_dir, train_testutil.tiny_data_dir(tmp_path_factory))
    result = loop.train(config.resolve_config(**{**vars(cfg), "epochs": 1}), verbose=0)
    assert result.step == 2  # nothing left to train: the state is the restored one
    reader = tf.train.load_checkpoint(os.path.join(OLD_RUN, "checkpoints", "ckpt-2"))
    stored = [reader.get_tensor(k) for k in reader.get_variable_to_shape_map()]
    kernel = next(w for w in result.model.weights if w.path.endswith("conv1/kernel")).numpy()
    assert any(np.shape(t) == kernel.shape and np.array_equal(t, kernel) for t in stored)
