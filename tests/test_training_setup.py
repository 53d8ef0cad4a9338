"""delving.training.setup: when XLA compiles the step; the strategy (a
multi-worker run of the binary: two real worker processes that talk gRPC
over free loopback ports); every check made before anything is written, so
that a failed command leaves the model_dir as it was; and what a run takes
from its data before the first step: the class count (from the labels.txt our
converter writes) and the name its header gives the data, on real records
converted from a folder of JPEG files."""

import dataclasses
import json
import os
import re

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from common import errors
from delving.training import config, loop, run_dir, setup
from pipelines import tfrecord_builder
from tests import imaging_testutil, train_testutil


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return train_testutil.tiny_data_dir(tmp_path_factory)


def test_xla_default_follows_the_replicas_devices():
    cfg = config.resolve_config(preset="builtin")
    assert cfg.jit_compile is None  # not given: decided by the devices
    cpu, gpu = tf.distribute.OneDeviceStrategy("/cpu:0"), tf.distribute.OneDeviceStrategy("/gpu:0")
    assert not setup.uses_xla(cfg, cpu) and setup.uses_xla(cfg, gpu)
    assert not setup.uses_xla(cfg, tf.distribute.get_strategy())  # no GPU here
    assert setup.uses_xla(dataclasses.replace(cfg, jit_compile=True), cpu)
    assert not setup.uses_xla(dataclasses.replace(cfg, jit_compile=False), gpu)


@pytest.mark.slow
def test_multi_worker_two_local_processes(data_dir, tmp_path):
    model_dir = tmp_path / "mw"
    ports = train_testutil.free_ports(2)
    args = train_testutil.as_flags(
        data_dir=data_dir,
        model_dir=model_dir,
        strategy="multi_worker",
        **train_testutil.TINY_RECIPE,
    )
    workers = [
        train_testutil.start("delving.train", args, TF_CONFIG=train_testutil.tf_config(ports, i))
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=train_testutil.HANG_GUARD_S) for w in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    chief_out = outputs[0][0]
    assert "--strategy=multi_worker (CollectiveAllReduceStrategy, 2 replicas)" in chief_out
    steps = train_testutil.TINY_RECIPE["steps_per_epoch"]
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith(f"ckpt-{steps}")
    assert (model_dir / "model.keras").exists()
    assert (model_dir / "training_log.csv").read_text().count("\n") == 2
    # The non-chief's temporary checkpoint directory is gone.
    assert not [p for p in os.listdir(model_dir) if p.startswith(".tmp_checkpoints")]
    assert not (model_dir / "lock.json").exists(), "the chief's lock is released"


def test_another_networks_command_leaves_the_run_intact(data_dir, tmp_path):
    model_dir = tmp_path / "run"
    recipe = dict(train_testutil.TINY_RECIPE, data_dir=data_dir, model_dir=str(model_dir))
    loop.train(config.resolve_config(**recipe), verbose=0)
    classes = (model_dir / "classes.tsv").read_text()
    (model_dir / "config.json").unlink()
    before = sorted(p.name for p in model_dir.rglob("*"))

    # Another network's flags, with no config.json to catch them: the
    # checkpoint restore does, and nothing has been written yet.
    other = config.resolve_config(**dict(recipe, model="small_30"))
    with pytest.raises(loop.ConfigMismatch, match=r"holds checkpoints of a different network"):
        loop.train(other, verbose=0)
    assert sorted(p.name for p in model_dir.rglob("*")) == before
    assert (model_dir / "classes.tsv").read_text() == classes

    # The original command still works.
    result = loop.train(config.resolve_config(**recipe), verbose=0)
    assert result.epoch == 1
    assert run_dir.load_config(str(model_dir / "config.json")).model == "small_14"


def test_a_refused_batch_leaves_no_fresh_directory(data_dir, tmp_path):
    fresh = tmp_path / "fresh"
    recipe = dict(train_testutil.TINY_RECIPE, data_dir=data_dir, model_dir=str(fresh), batch_size=3)
    with pytest.raises(loop.BatchSizeError):
        loop.train(
            config.resolve_config(**recipe),
            strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
            verbose=0,
        )
    assert not fresh.exists()


def test_a_batch_too_large_for_memory_is_refused_before_any_weight_exists(data_dir, tmp_path):
    # Model A takes minutes and GBs to build: the refusal must not wait for it.
    created = []

    def record(next_creator, **kwargs):
        created.append(kwargs.get("name"))
        return next_creator(**kwargs)

    recipe = dict(
        train_testutil.TINY_RECIPE, data_dir=data_dir, model_dir=str(tmp_path), batch_size=10**6
    )
    with tf.variable_creator_scope(record), pytest.raises(loop.BatchSizeError):
        setup.prepare(
            config.resolve_config(**recipe),
            strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
        )
    assert created == []


def test_the_batch_a_memory_refusal_suggests_splits_over_the_replicas(data_dir, tmp_path):
    recipe = dict(
        train_testutil.TINY_RECIPE, data_dir=data_dir, model_dir=str(tmp_path), batch_size=10**6
    )
    with pytest.raises(loop.BatchSizeError, match=r"use --batch_size=(\d+) or less") as caught:
        loop.train(
            config.resolve_config(**recipe),
            strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
            verbose=0,
        )
    suggested = int(re.search(r"use --batch_size=(\d+)", str(caught.value)).group(1))
    assert suggested % 2 == 0


CLASSES = {"n01": 8, "n02": 8, "n03": 8}  # three classes, as a real folder names them


@pytest.fixture(scope="module")
def three_class_records(tmp_path_factory):
    """Records of a three-class image folder, written by the converter with its labels.txt."""
    root = tmp_path_factory.mktemp("folder")
    out = str(root / "records")
    for split in ("train", "validation"):
        imaging_testutil.write_image_folder(
            str(root / split), CLASSES, size=(40, 56), seed=len(split)
        )
        tfrecord_builder.build(str(root / split), out, split, num_shards=1, progress=False)
    return out


def _recipe(data_dir, model_dir, **changes):
    """The tiny recipe under the paper's preset (imagenet; a three-class
    folder alone gets photos), at a rate its fan-out init does not diverge
    at: only the set-up is tested."""
    recipe = dict(train_testutil.TINY_RECIPE, preset="imagenet")
    recipe["learning_rate"] = 1e-4
    return config.resolve_config(
        data_dir=data_dir, model_dir=str(model_dir), **dict(recipe, **changes)
    )


def test_class_count_of_a_records_folder_comes_from_its_labels_file(three_class_records, tmp_path):
    cfg = _recipe(three_class_records, tmp_path / "run")
    assert cfg.preset == "imagenet" and cfg.num_classes is None
    result = loop.train(cfg, verbose=0)
    assert result.config.num_classes == 3
    assert result.model.output_shape[-1] == 3


def test_config_json_holds_the_class_count_from_the_data(three_class_records, tmp_path):
    loop.train(_recipe(three_class_records, tmp_path / "run"), verbose=0)
    saved = run_dir.load_config(str(tmp_path / "run" / "config.json"))
    assert saved.num_classes == 3


def test_run_with_the_class_count_from_the_data_resumes(three_class_records, tmp_path):
    loop.train(_recipe(three_class_records, tmp_path / "run"), verbose=0)
    resumed = loop.train(_recipe(three_class_records, tmp_path / "run", epochs=2), verbose=0)
    assert resumed.epoch == 2


def test_explicit_other_class_count_is_refused_in_one_line(three_class_records, tmp_path):
    cfg = _recipe(three_class_records, tmp_path / "run", num_classes=5)
    with pytest.raises(errors.DataError) as refused:
        loop.train(cfg, verbose=0)
    assert "lists 3 classes but num_classes is 5" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "run").exists()


def test_header_names_the_records_dir_under_the_builtin_preset(
    three_class_records, tmp_path, capsys
):
    cfg = _recipe(three_class_records, tmp_path / "run", preset="builtin")
    loop.train(cfg, verbose=1)
    header = next(line for line in capsys.readouterr().out.splitlines() if "Training " in line)
    assert f" on {three_class_records} with " in header
    assert "built-in" not in header


def test_tfds_class_count_given_explicitly_is_checked_before_any_work(tmp_path):
    model_dir = tmp_path / "run"
    recipe = {k: v for k, v in train_testutil.TINY_RECIPE.items() if k != "preset"}
    cfg = config.resolve_config(
        preset="imagenet",
        tfds_name="imagenette",
        tfds_data_dir=str(tmp_path / "tfds"),
        model_dir=str(model_dir),
        num_classes=1000,
        **recipe,
    )
    assert cfg.num_classes == 1000  # given explicitly: imagenette has 10
    refused = pytest.raises(errors.DataError, match=r"^--num_classes=1000 but imagenette has 10")
    with tfds.testing.mock_data(num_examples=8), refused:
        loop.train(cfg, verbose=0)
    assert not model_dir.exists()


def test_tfds_class_count_comes_from_the_label_feature(tmp_path):
    recipe = {k: v for k, v in train_testutil.TINY_RECIPE.items() if k != "preset"}
    cfg = config.resolve_config(
        tfds_name="imagenette",
        tfds_data_dir=str(tmp_path / "tfds"),
        model_dir=str(tmp_path / "run"),
        **recipe,
    )
    with tfds.testing.mock_data(num_examples=8):
        prepared = setup.prepare(cfg)
    assert prepared.cfg.num_classes == 10


def test_workers_on_this_host_counts_the_local_training_tasks():
    cluster = {
        "chief": ["localhost:2000"],
        "worker": ["127.0.0.1:2001", "192.0.2.7:2002"],  # 192.0.2.0/24: never a real host
        "ps": ["127.0.0.1:2003"],
    }
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})
    assert setup.workers_on_this_host(tf_config) == 2


def test_workers_on_this_host_is_one_without_a_cluster():
    assert setup.workers_on_this_host(None) == 1
