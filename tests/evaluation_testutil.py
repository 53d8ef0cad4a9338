"""Shared by the evaluation tests (the library and the evaluate binary): a
tiny trained run, and an untrained run whose validation shards hold
real-sized images, with the dense probabilities its export serves."""

import numpy as np
import tensorflow as tf

from delving.training import config, loop
from export import export_lib
from pipelines import preprocessing, sources
from pipelines.config import InputConfig
from tests import export_testutil, imaging_testutil, train_testutil

#: The dense view's scales: 96 (maps smaller than the window) and 240.
SCALES = (96, 240)


def trained_run(tmp_path_factory):
    """The `TrainResult` of the tiny recipe, validated on the whole split."""
    model_dir = tmp_path_factory.mktemp("evaluate") / "run"
    cfg = config.resolve_config(
        **dict(
            train_testutil.TINY_RECIPE,
            data_dir=train_testutil.tiny_data_dir(tmp_path_factory),
            model_dir=str(model_dir),
            steps_per_epoch=4,
            eval_steps=None,
        )
    )
    return loop.train(cfg, verbose=0)


def dense_run(tmp_path_factory):
    """An untrained model_a run on 3 validation images of 150x200: its
    model_dir, servable, decoded images, labels and data source."""
    root = tmp_path_factory.mktemp("dense_eval")
    data_dir = str(root / "data")
    shards = imaging_testutil.write_shards(
        data_dir,
        "validation",
        num_shards=1,
        per_shard=3,
        num_classes=export_testutil.NUM_CLASSES,
        height=150,
        width=200,
    )
    # input_std: inputs of unit scale, so an untrained net is not saturated.
    model_dir = export_testutil.write_model_dir(
        root / "run", model="model_a", seed=4, data_dir=data_dir, input_std=True
    )
    servable = export_lib.load_servable(model_dir)
    records = list(
        tf.data.TFRecordDataset(shards[0][0]).map(
            lambda r: tf.io.parse_single_example(
                r,
                {
                    "image/encoded": tf.io.FixedLenFeature([], tf.string),
                    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
                },
            )
        )
    )
    images = [tf.io.decode_jpeg(r["image/encoded"], channels=3) for r in records]
    labels = np.array([int(r["image/class/label"]) - 1 for r in records])
    return dict(
        model_dir=model_dir,
        servable=servable,
        images=images,
        labels=labels,
        source=sources.DataSource(
            data_dir=data_dir,
            num_classes=export_testutil.NUM_CLASSES,
            input=InputConfig(batch_size=4, std=preprocessing.STD_RGB),
        ),
    )


def served_loss_and_top1(run, flip):
    """(loss, top-1 error) of the exported dense inference on `dense_run`'s images."""
    member = run["servable"].dense_inference(scales=SCALES, flip=flip)
    probs = np.concatenate([member(image[None]) for image in run["images"]])
    picked = probs[np.arange(len(probs)), run["labels"]]
    assert np.all(picked > 1e-6)  # a loss that tells probabilities apart
    loss = -np.mean(np.log(picked))
    top1 = np.mean(np.argmax(probs, -1) != run["labels"])
    return loss, top1
