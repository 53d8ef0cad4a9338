"""delving.training.summaries on real tiny runs (the built-in data), read
back from the event files with TensorBoard's own EventAccumulator: the PReLU
slopes at step 0 and every epoch end, the hyperparameters for the HPARAMS
tab, under one device and under MirroredStrategy on two logical CPUs."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from delving.models import networks, specs
from delving.training import config, loop, summaries
from tests import train_testutil

STEPS = 3


def _train(data_dir, model_dir, strategy=None, **values):
    recipe = dict(train_testutil.TINY_RECIPE, epochs=2, steps_per_epoch=STEPS)
    recipe.update(values)
    cfg = config.resolve_config(data_dir=data_dir, model_dir=str(model_dir), **recipe)
    return loop.train(cfg, strategy=strategy, verbose=0)


def _logs(model_dir, kind):
    logs = event_accumulator.EventAccumulator(
        os.path.join(model_dir, "logs", kind), size_guidance={event_accumulator.TENSORS: 0}
    )
    logs.Reload()
    return logs


def _values(logs, tag):
    return [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in logs.Tensors(tag)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return train_testutil.tiny_data_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def prelu(data_dir, tmp_path_factory):
    """A channel-wise PReLU run of 2 epochs: (TrainResult, model_dir)."""
    model_dir = str(tmp_path_factory.mktemp("prelu") / "run")
    return _train(data_dir, model_dir, activation="prelu"), model_dir


@pytest.fixture(scope="module")
def resumed(data_dir, tmp_path_factory):
    """A run of 1 epoch, then the same command with --epochs=2: (TrainResult, model_dir)."""
    model_dir = str(tmp_path_factory.mktemp("resumed") / "run")
    _train(data_dir, model_dir, activation="prelu", epochs=1)
    return _train(data_dir, model_dir, activation="prelu", epochs=2), model_dir


@pytest.fixture(scope="module")
def mirrored(data_dir, tmp_path_factory):
    """A channel-shared PReLU run under MirroredStrategy on two logical CPUs."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2, "conftest.py should set up two logical CPUs"
    # ReductionToOneDevice: no collective ops, whose instance keys can clash
    # with another MirroredStrategy created earlier in the same test process.
    strategy = tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    model_dir = str(tmp_path_factory.mktemp("mirrored") / "run")
    return _train(data_dir, model_dir, strategy, activation="prelu_shared"), model_dir


@pytest.fixture(scope="module")
def relu(data_dir, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("relu") / "run")
    return _train(data_dir, model_dir, activation="relu", epochs=1), model_dir


# --- The slopes


def test_every_prelu_layer_is_logged_at_step_0_and_every_epoch_end(prelu):
    result, model_dir = prelu
    history = summaries.slope_history(model_dir)
    assert list(history) == list(networks.prelu_coefficients(result.model))
    for layer, rows in history.items():
        assert [epoch for epoch, _, _ in rows] == [0, 1, 2], layer


def test_the_slopes_start_at_the_papers_0_25(prelu):
    _, model_dir = prelu
    for layer, rows in summaries.slope_history(model_dir).items():
        _, mean, channels = rows[0]
        assert mean == pytest.approx(networks.PRELU_INIT_SLOPE), layer
        np.testing.assert_allclose(channels, networks.PRELU_INIT_SLOPE, err_msg=layer)


def test_the_slopes_move_away_from_0_25_during_training(prelu):
    _, model_dir = prelu
    for layer, rows in summaries.slope_history(model_dir).items():
        _, _, channels = rows[-1]
        assert np.abs(channels - networks.PRELU_INIT_SLOPE).max() > 1e-5, layer


def test_the_last_logged_slopes_are_the_trained_models(prelu):
    result, model_dir = prelu
    layers = {layer.name: layer for layer in networks.prelu_layers(result.model)}
    for layer, rows in summaries.slope_history(model_dir).items():
        _, mean, channels = rows[-1]
        assert mean == pytest.approx(result.prelu[layer], rel=1e-5), layer
        np.testing.assert_allclose(channels, layers[layer].alpha.numpy().reshape(-1), rtol=1e-6)


def test_epoch_ends_are_global_steps_tagged_with_the_epoch(prelu):
    result, model_dir = prelu
    epochs = _values(_logs(model_dir, "train"), summaries.EPOCH_TAG)
    assert [(step, int(value)) for step, value in epochs] == [(0, 0), (3, 1), (6, 2)]
    assert [row["step"] for row in result.history] == [3, 6]


def test_channel_wise_layers_get_a_histogram_of_their_slopes(prelu):
    result, model_dir = prelu
    logs = _logs(model_dir, "train")
    for layer in networks.prelu_layers(result.model):
        tag = summaries.HISTOGRAM_TAG + layer.name
        assert logs.SummaryMetadata(tag).plugin_data.plugin_name == "histograms", tag
        buckets = [value for _, value in _values(logs, tag)]
        assert len(buckets) == 3, tag  # step 0 and the two epoch ends
        # (left edge, right edge, count) rows counting every channel once.
        assert buckets[-1][:, 2].sum() == layer.alpha.shape[-1], tag


def test_the_mean_slopes_are_tensorboard_scalars(prelu):
    result, model_dir = prelu
    logs = _logs(model_dir, "train")
    for name in result.prelu:
        tag = summaries.SLOPE_TAG + name
        assert logs.SummaryMetadata(tag).plugin_data.plugin_name == "scalars", tag


def test_channel_shared_layers_log_no_channel_slopes(mirrored):
    _, model_dir = mirrored
    history = summaries.slope_history(model_dir)
    assert history
    assert all(channels is None for rows in history.values() for _, _, channels in rows)
    tags = _logs(model_dir, "train").Tags()["tensors"]
    assert not [t for t in tags if t.startswith(summaries.HISTOGRAM_TAG)]


def _assert_slopes_of_epochs_0_to_2_ending_at_the_final_ones(result, model_dir):
    history = summaries.slope_history(model_dir)
    assert list(history) == list(result.prelu)
    for layer, rows in history.items():
        assert [epoch for epoch, _, _ in rows] == [0, 1, 2], layer
        assert rows[-1][1] == pytest.approx(result.prelu[layer], rel=1e-5), layer


def test_a_mirrored_run_logs_the_slopes_of_every_epoch(mirrored):
    _assert_slopes_of_epochs_0_to_2_ending_at_the_final_ones(*mirrored)


def test_a_relu_run_writes_no_slope_tags(relu):
    _, model_dir = relu
    tags = _logs(model_dir, "train").Tags()["tensors"]
    assert summaries.EPOCH_TAG in tags
    assert not [t for t in tags if t.startswith("prelu_")], tags
    assert summaries.slope_history(model_dir) == {}


def test_a_run_without_logs_has_no_slope_history(tmp_path):
    assert summaries.slope_history(str(tmp_path / "never_trained")) == {}


def test_a_resumed_run_continues_the_slope_history(resumed):
    _assert_slopes_of_epochs_0_to_2_ending_at_the_final_ones(*resumed)


# --- The hyperparameters


def _hparams_content(model_dir, tag):
    logs = _logs(model_dir, "")
    return logs.SummaryMetadata(tag).plugin_data.content


def test_the_hparams_plugin_reads_the_runs_config(prelu):
    result, model_dir = prelu
    info = hparams_metadata.parse_session_start_info_plugin_data(
        _hparams_content(model_dir, hparams_metadata.SESSION_START_INFO_TAG)
    )
    cfg = result.config
    assert info.hparams["activation"].string_value == "prelu"
    assert info.hparams["model"].string_value == cfg.model
    assert info.hparams["learning_rate"].number_value == pytest.approx(cfg.learning_rate)
    assert info.hparams["steps_per_epoch"].number_value == STEPS
    assert info.hparams["epochs"].number_value == 2
    assert info.hparams["scale_range"].string_value == ",".join(map(str, cfg.scale_range))
    assert info.hparams["input_std"].bool_value == cfg.input_std
    assert "tpu" not in info.hparams  # unset


def test_the_hparams_config_lists_every_config_field(prelu):
    _, model_dir = prelu
    experiment = hparams_metadata.parse_experiment_plugin_data(
        _hparams_content(model_dir, hparams_metadata.EXPERIMENT_TAG)
    )
    names = [info.name for info in experiment.hparam_infos]
    assert names == [f.name for f in dataclasses.fields(config.TrainConfig)]
    activation = next(i for i in experiment.hparam_infos if i.name == "activation")
    assert sorted(activation.domain_discrete) == sorted(specs.ACTIVATIONS)


def test_the_hparams_metrics_are_tags_the_run_writes(prelu):
    _, model_dir = prelu
    experiment = hparams_metadata.parse_experiment_plugin_data(
        _hparams_content(model_dir, hparams_metadata.EXPERIMENT_TAG)
    )
    metrics = [(m.name.group, m.name.tag) for m in experiment.metric_infos]
    assert metrics == [
        ("validation", "top1_err"),
        ("validation", "top5_err"),
        ("train", "loss"),
    ]
    for group, tag in metrics:
        assert tag in _logs(model_dir, group).Tags()["tensors"], (group, tag)


def test_a_resumed_run_keeps_its_hparams_readable(resumed):
    result, model_dir = resumed
    info = hparams_metadata.parse_session_start_info_plugin_data(
        _hparams_content(model_dir, hparams_metadata.SESSION_START_INFO_TAG)
    )
    assert info.hparams["model_dir"].string_value == result.config.model_dir
    assert info.hparams["activation"].string_value == "prelu"


# --- TensorBoard itself, as `tensorboard --logdir runs/` serves it


def _get(port, route, request):
    url = f"http://127.0.0.1:{port}/data/plugin/hparams/{route}?" + urllib.parse.urlencode(
        {"request": json.dumps(request)}
    )
    with urllib.request.urlopen(url, timeout=train_testutil.HANG_GUARD_S) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def served(prelu, relu, tmp_path_factory):
    """A real TensorBoard server on a runs/ folder holding the PReLU and the ReLU run."""
    runs = tmp_path_factory.mktemp("runs")
    for name, (_, model_dir) in (("prelu", prelu), ("relu", relu)):
        shutil.copytree(os.path.join(model_dir, "logs"), runs / name / "logs")
    (port,) = train_testutil.free_ports(1)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            f"--logdir={runs}",
            f"--port={port}",
            "--host=127.0.0.1",
            "--load_fast=false",  # the Python reader: no data server binary needed
        ],
        env=train_testutil.subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + train_testutil.HANG_GUARD_S
        while True:  # until the server is up and has loaded both runs
            assert server.poll() is None, server.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "TensorBoard did not load the runs"
            try:
                groups = _get(port, "session_groups", _SESSION_GROUPS)
                if len(groups.get("sessionGroups", [])) == 2:
                    break
            except OSError:
                pass
            time.sleep(1)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=train_testutil.HANG_GUARD_S)


_SESSION_GROUPS = {
    "startIndex": 0,
    "sliceSize": 10,
    "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
    "colParams": [
        {"hparam": "activation", "order": "ORDER_ASC"},
        {"metric": {"group": "validation", "tag": "top1_err"}},
        {"metric": {"group": "validation", "tag": "top5_err"}},
        {"metric": {"group": "train", "tag": "loss"}},
    ],
}


def test_tensorboard_compares_the_runs_in_the_hparams_tab(served, prelu, relu):
    groups = _get(served, "session_groups", _SESSION_GROUPS)["sessionGroups"]
    assert [g["hparams"]["activation"] for g in groups] == ["prelu", "relu"]
    for group, (result, _) in zip(groups, (prelu, relu)):
        metrics = {
            (m["name"]["group"], m["name"]["tag"]): m["value"] for m in group["metricValues"]
        }
        last = result.history[-1]
        assert metrics[("validation", "top1_err")] == pytest.approx(last["val_top1_error"])
        assert metrics[("validation", "top5_err")] == pytest.approx(last["val_top5_error"])
        assert metrics[("train", "loss")] == pytest.approx(last["train_loss"], rel=1e-5)
