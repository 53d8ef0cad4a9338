"""export.export_lib in-process: versions, loading runs, ensembles, and what
a run's config decides for its export (the exported SavedModel as a server
loads it: test_export_export_lib_served.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from delving.models import networks
from export import export_lib
from pipelines import preprocessing
from tests import export_testutil


def test_load_servable_explains_what_is_missing(tmp_path):
    with pytest.raises(
        export_lib.ExportError, match="missing config.json, classes.tsv, model.keras"
    ):
        export_lib.load_servable(str(tmp_path))


def test_ensemble_members_must_share_classes(tmp_path):
    a = export_lib.load_servable(export_testutil.write_model_dir(tmp_path / "a"))
    b = export_lib.load_servable(export_testutil.write_model_dir(tmp_path / "b", seed=1))
    b = export_lib.ServableModel(b.model_dir, b.model, b.config, tuple(reversed(b.classes)))
    with pytest.raises(export_lib.ExportError, match="different classes.tsv"):
        export_lib.DenseClassifier([a, b])


def test_store_each_variable_once_keeps_endpoint_only_variables(tmp_path):
    layer = keras.layers.Dense(4)
    layer.build((None, 3))
    offset = tf.Variable([1.0, 2.0, 3.0, 4.0])  # used by the endpoint only
    archive = keras.export.ExportArchive()
    archive.track(layer)
    export_lib.store_each_variable_once(archive)
    archive.add_endpoint(
        "serve", lambda x: layer(x) + offset, input_signature=[tf.TensorSpec([None, 3])]
    )
    archive.write_out(str(tmp_path / "saved"), verbose=False)
    stored = export_testutil.stored_values(tmp_path / "saved")
    assert stored == layer.count_params() + 4


def test_mixed_precision_model_serves_float32(tmp_path):
    servable = export_lib.load_servable(
        export_testutil.write_model_dir(tmp_path / "mixed", mixed_precision="float16")
    )
    trunk = servable.model.get_layer("trunk")
    assert trunk.get_layer("conv1").compute_dtype == "float16"
    classifier = export_lib.DenseClassifier([servable], scales=(64,), top_k=2)
    out = classifier.predict_image_bytes(
        tf.constant([export_testutil.encode(export_testutil.picture(50, 70), "PNG")])
    )
    assert out["probabilities"].dtype == tf.float32
    assert out["scores"].dtype == tf.float32 and out["classes"].dtype == tf.int32
    np.testing.assert_allclose(out["probabilities"].numpy().sum(), 1, rtol=1e-5)


# A 64-px built-in run is not exported at the ImageNet scales (its served
# predictions were at chance): scales and window follow the run's config.


def _member(model_dir, **kwargs):
    (member,) = export_lib.DenseClassifier([export_lib.load_servable(model_dir)], **kwargs)._members
    return member


def _small_run(tmp_path):
    return export_testutil.write_model_dir(tmp_path / "small", model="small_14", image_size=64)


def test_scales_default_to_the_runs_crop_size(tmp_path):
    assert _member(_small_run(tmp_path)).scales == (73, 110, 137)


def test_window_defaults_to_the_runs_crop_size(tmp_path):
    assert _member(_small_run(tmp_path)).window == networks.head_window("small_14", 64) == 6


def test_a_224_px_run_gets_the_papers_dense_testing(tmp_path):
    paper = export_testutil.write_model_dir(tmp_path / "paper", model="model_a")  # 224-px crops
    member = _member(paper)
    assert (member.scales, member.window) == ((256, 384, 480), 14)


def test_given_scales_replace_the_default(tmp_path):
    assert _member(_small_run(tmp_path), scales=(80,)).scales == (80,)


def _input_std_run(tmp_path):
    model_dir = export_testutil.write_model_dir(
        tmp_path / "run", model="small_14", input_std=True, image_size=64, eval_resize=72
    )
    return export_lib.load_servable(model_dir).dense_inference(scales=(72,))


def test_dense_inference_window_follows_the_configs_crop(tmp_path):
    assert _input_std_run(tmp_path).window == 6  # ceil(64 / 12), not the 19 of 224 crops


def test_dense_inference_scales_inputs_as_the_config_says(tmp_path):
    assert _input_std_run(tmp_path).std == preprocessing.STD_RGB
