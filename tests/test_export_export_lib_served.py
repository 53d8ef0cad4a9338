"""The exported SavedModel, loaded and fed the way TensorFlow Serving does.

One ensemble export (two tiny networks of different architectures, scales
that exercise both the dense windows and the small-map fallback) is loaded
in a fresh Python process that imports only TensorFlow and TF Serving's
protos, with the session-based loader the server uses. That process answers
real gRPC `PredictRequest`s and REST bodies built by `export.client_lib`,
replays the warmup file, and lists every op of the graph and its function
library. Its answers are compared here with the in-Python dense-testing
reference (`delving.evaluation.dense`).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from delving.evaluation import dense
from delving.models import networks
from export import client_lib, export_lib, serving_files
from pipelines import preprocessing
from tests import export_testutil, train_testutil

SCALES = (96, 240)  # 96: maps smaller than the window; 240: 2+ windows

# Emulates the server in a process that imports only TensorFlow and its protos.
SERVER_PROGRAM = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "programs", "serving_session_loader.py"
)


def _images():
    """name -> encoded bytes of real images in every supported format."""
    return {
        "jpeg": export_testutil.encode(export_testutil.picture(200, 260, 1), "JPEG", quality=90),
        "png": export_testutil.encode(
            np.dstack([export_testutil.picture(230, 180, 2), np.full((230, 180), 200, np.uint8)]),
            "PNG",
        ),  # RGBA: alpha dropped
        "gif": export_testutil.animated_gif(150, 170),  # first frame
        "bmp": export_testutil.encode(export_testutil.picture(120, 140, 3), "BMP"),
        "gray_jpeg": export_testutil.encode(export_testutil.picture(170, 170, 4)[..., 0], "JPEG"),
        "one_pixel": export_testutil.encode(np.array([[[10, 200, 30]]], np.uint8), "PNG"),
        "panorama": export_testutil.encode(export_testutil.picture(2, 1500, 5), "PNG"),
        "large": export_testutil.encode(export_testutil.picture(1600, 2400, 6), "JPEG", quality=80),
    }


BAD = {
    "not_an_image": b"this is not an image",
    "empty": b"",
    "bomb": export_testutil.png_header_only(60000, 60000),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export once; serve once in a clean subprocess; return everything."""
    root = tmp_path_factory.mktemp("export")
    # input_std: inputs of unit scale, so the untrained nets are not
    # saturated and the probabilities compared below tell models apart.
    model_dirs = [
        export_testutil.write_model_dir(
            root / "a", model="model_a", activation="prelu", seed=1, input_std=True
        ),
        export_testutil.write_model_dir(
            root / "s", model="small_14", activation="relu", seed=2, input_std=True
        ),
    ]
    export_base = root / "serving" / "prelu"
    version_dir = export_lib.export_saved_model(
        model_dirs, str(export_base), scales=SCALES, top_k=3
    )
    images = _images()
    requests_dir, out_dir = root / "requests", root / "out"
    requests_dir.mkdir()
    out_dir.mkdir()

    def grpc(name, inputs, signature=client_lib.SIGNATURE_BYTES):
        request = client_lib.build_predict_request(
            inputs, model_name="prelu", signature_name=signature
        )
        (requests_dir / f"{name}.pb").write_bytes(request.SerializeToString())

    for name, data in {**images, **BAD}.items():
        grpc(f"single_{name}", [data])
    for name, data in export_testutil.malformed_corpus().items():
        grpc(f"fuzz_{name}", [data])
    batch = ["jpeg", "png", "gif", "bmp"]
    grpc("batch", [images[n] for n in batch])
    grpc("bad_in_batch", [images["jpeg"], BAD["not_an_image"]])
    pixels = np.stack([export_testutil.picture(180, 200, s) for s in (7, 8)])
    grpc("pixels", pixels, client_lib.SIGNATURE_IMAGES)
    grpc("no_images", [])
    grpc("no_pixels", np.zeros((0, 4, 4, 3), np.uint8), client_lib.SIGNATURE_IMAGES)
    grpc("zero_by_zero", np.zeros((1, 0, 0, 3), np.uint8), client_lib.SIGNATURE_IMAGES)
    (requests_dir / "rest.json").write_text(
        json.dumps(client_lib.build_rest_body([images[n] for n in batch]))
    )
    (requests_dir / "rest_pixels.json").write_text(
        json.dumps(client_lib.build_rest_body(pixels, signature_name=client_lib.SIGNATURE_IMAGES))
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # Run the CLI checks alongside the server emulation.
    cli = subprocess.Popen(
        f"saved_model_cli show --dir {version_dir} --all && "
        f"saved_model_cli run --dir {version_dir} --tag_set serve "
        f"--signature_def predict_images --input_exprs "
        f"'images=[[[[10,20,30],[40,50,60]],[[70,80,90],[1,2,3]]]]'",
        shell=True,
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = subprocess.run(
        [sys.executable, SERVER_PROGRAM, version_dir, str(requests_dir), str(out_dir)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
    )
    cli_out = cli.communicate(timeout=train_testutil.HANG_GUARD_S)[0]
    assert server.returncode == 0, server.stderr[-3000:]
    report = json.loads((out_dir / "report.json").read_text())
    served = {
        p[:-4]: dict(np.load(out_dir / p, allow_pickle=True))
        for p in os.listdir(out_dir)
        if p.endswith(".npz")
    }
    servables = [export_lib.load_servable(d) for d in model_dirs]
    reference = [
        dense.DenseInference(
            s.model,
            window=networks.head_window(s.config.model),
            scales=SCALES,
            std=preprocessing.STD_RGB,
        )
        for s in servables
    ]
    # count_params() plus the dropout layers' seed states (variables, not weights).
    model_values = sum(int(np.prod(v.shape)) for s in servables for v in s.model.variables)
    return dict(
        root=root,
        reference=reference,
        model_values=model_values,
        export_base=export_base,
        version_dir=version_dir,
        images=images,
        batch=batch,
        pixels=pixels,
        report=report,
        served=served,
        cli=(cli.returncode, cli_out),
    )


def _reference(exported, images):
    """The in-Python dense testing of uint8 images, averaged over the
    ensemble: what the served model must answer."""
    probs = [
        np.concatenate([member(image[None]) for image in images])
        for member in exported["reference"]
    ]
    return np.mean(probs, axis=0)


def _decoded(data):
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def test_loads_in_a_clean_process_with_the_session_loader(exported):
    report = exported["report"]
    assert report["project_importable"] == []
    sigs = report["signatures"]
    assert sigs["serving_default"]["inputs"] == {"image_bytes": ["string", [-1]]}
    assert sigs["predict_images"]["inputs"] == {"images": ["uint8", [-1, -1, -1, 3]]}
    for name in ("serving_default", "predict_images"):
        assert sigs[name]["outputs"] == {
            "probabilities": ["float32", [-1, export_testutil.NUM_CLASSES]],
            "classes": ["int32", [-1, 3]],
            "scores": ["float32", [-1, 3]],
            "labels": ["string", [-1, 3]],
        }


def test_checkpoint_stores_each_model_variable_once(exported):
    stored = export_testutil.stored_values(exported["version_dir"])
    assert stored == exported["model_values"]


def test_session_loader_holds_each_model_variable_once(exported):
    assert exported["report"]["variable_values"] == exported["model_values"]


def test_only_core_ops_no_python_no_xla(exported):
    report = exported["report"]
    assert report["unregistered_ops"] == []
    assert not {"PyFunc", "PyFuncStateless", "EagerPyFunc"} & set(report["ops"])
    assert report["xla"] == []
    assert {"DecodeImage", "MaxPool", "MatMul", "Conv2D"} <= set(report["ops"])


@pytest.mark.parametrize(
    "name", ["jpeg", "png", "gif", "bmp", "gray_jpeg", "one_pixel", "panorama", "large"]
)
def test_each_format_equals_the_python_reference(exported, name):
    out = exported["served"][f"single_{name}"]
    data = exported["images"][name]
    want = _reference(exported, [_decoded(data)])
    np.testing.assert_allclose(out["probabilities"], want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, rtol=1e-5)
    assert out["probabilities"].max() < 0.99  # not saturated: a real check
    top = np.argsort(-out["probabilities"][0])[:3]
    np.testing.assert_array_equal(out["classes"][0], top)
    np.testing.assert_allclose(out["scores"][0], np.sort(want[0])[::-1][:3], rtol=1e-4)
    assert [label.decode() for label in out["labels"][0]] == [
        f"class {c}" for c in out["classes"][0]
    ]


def test_batch_equals_single_requests(exported):
    served = exported["served"]
    batch = served["batch"]
    assert batch["probabilities"].shape == (4, export_testutil.NUM_CLASSES)
    singles = np.concatenate([served[f"single_{n}"]["probabilities"] for n in exported["batch"]])
    np.testing.assert_allclose(batch["probabilities"], singles, rtol=1e-5, atol=1e-7)


def test_rest_equals_grpc(exported):
    served = exported["served"]
    batch = served["batch"]
    for key in ("probabilities", "classes", "scores", "labels"):
        np.testing.assert_array_equal(served["rest"][key], batch[key])


def test_predict_images_equals_reference(exported):
    out = exported["served"]["pixels"]
    want = _reference(exported, exported["pixels"])
    np.testing.assert_allclose(out["probabilities"], want, rtol=1e-4, atol=1e-6)


def test_rest_predict_images_sends_pixels_as_nested_lists(exported):
    body = client_lib.build_rest_body(
        exported["pixels"], signature_name=client_lib.SIGNATURE_IMAGES
    )
    assert body["instances"][0][0][0] == exported["pixels"][0, 0, 0].tolist()
    for key in ("probabilities", "classes", "scores", "labels"):
        np.testing.assert_array_equal(
            exported["served"]["rest_pixels"][key], exported["served"]["pixels"][key]
        )


def test_bad_input_is_invalid_argument_with_a_clear_message(exported):
    errors = {k: v for k, v in exported["report"]["errors"].items() if not k.startswith("fuzz_")}
    assert set(errors) == {
        "single_not_an_image",
        "single_empty",
        "single_bomb",
        "bad_in_batch",
        "no_images",
        "no_pixels",
        "zero_by_zero",
    }
    # An empty request is refused with a sentence, not an assertion dump.
    assert "image_bytes holds no images" in errors["no_images"]
    for name, shape in (("no_pixels", "[0 4 4 3]"), ("zero_by_zero", "[1 0 0 3]")):
        assert "images must hold at least one image of at least 1x1 pixels" in errors[name]
        assert shape in errors[name] and "Condition" not in errors[name]
    assert "Unknown image file format" in errors["single_not_an_image"]
    assert "Unknown image file format" in errors["bad_in_batch"]
    assert "image_bytes is an empty string" in errors["single_empty"]
    assert "image too large" in errors["single_bomb"]
    assert "[60000] [60000]" in errors["single_bomb"]


def test_every_warmup_request_is_answered(exported):
    warmup = exported["report"]["warmup"]
    assert [w[:2] for w in warmup] == [
        ["prelu", "serving_default"],
        ["prelu", "serving_default"],
        ["prelu", "predict_images"],
    ]
    for _, _, sums in warmup:
        np.testing.assert_allclose(sums, 1.0, rtol=1e-5)


def test_models_config_parses_as_model_server_config(exported):
    text = (exported["export_base"] / "models.config").read_text()
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    (entry,) = config.model_config_list.config
    assert (entry.name, entry.base_path, entry.model_platform) == (
        "prelu",
        str(exported["export_base"]),
        "tensorflow",
    )
    assert exported["version_dir"] == str(exported["export_base"] / "1")
    assert sorted(os.listdir(exported["export_base"])) == ["1", "models.config"]
    assert os.path.exists(os.path.join(exported["version_dir"], serving_files.WARMUP_FILE))


def test_saved_model_cli_shows_both_signatures(exported):
    returncode, output = exported["cli"]
    assert returncode == 0, output[-3000:]
    assert "signature_def['serving_default']" in output
    assert "signature_def['predict_images']" in output


def test_saved_model_cli_runs_predict_images(exported):
    returncode, output = exported["cli"]
    assert returncode == 0, output[-3000:]
    assert "Result for output key probabilities" in output


def test_malformed_request_corpus(exported):
    """1,000 malformed payloads, one request each, in the session loader: each
    gave probabilities or an InvalidArgument (the server process survived all,
    or the fixture failed); every header bomb was refused before decoding."""
    names = [f"fuzz_{n}" for n in export_testutil.malformed_corpus()]
    errors = exported["report"]["errors"]
    answered = {n for n in names if n in exported["served"]}
    refused = {n for n in names if n in errors}
    assert len(names) == 1000 and not answered & refused
    assert answered | refused == set(names), sorted(set(names) - answered - refused)[:5]
    kinds = {}
    for name in names:
        kind = name.split("_")[1]
        kinds.setdefault(kind, [0, 0])[name in refused] += 1
    bombs = [n for n in names if n.startswith("fuzz_bomb_")]
    assert len(bombs) == 150 and all("image too large" in errors[n] for n in bombs)
    assert kinds["random"] == [0, 200], kinds  # never an image
    for name in answered:
        probabilities = exported["served"][name]["probabilities"]
        assert np.all(np.isfinite(probabilities))
        np.testing.assert_allclose(probabilities.sum(-1), 1, rtol=1e-4)
    print("malformed corpus (answered, refused) by kind:", kinds)
