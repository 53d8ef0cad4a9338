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
import textwrap

import export_testutil as fx
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from delving.evaluation import dense
from delving.models import networks
from export import client_lib, export_lib, serving_files
from pipelines import preprocessing
from tests import train_testutil

SCALES = (96, 240)  # 96: maps smaller than the window; 240: 2+ windows

# Emulates the server: only TensorFlow and tensorflow_serving protos.
SERVER_SCRIPT = textwrap.dedent(r"""
    import base64, glob, importlib.util, json, os, sys
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.framework import op_def_registry
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    export_dir, requests_dir, out_dir = sys.argv[1:4]
    report = {"project_importable": [
        m for m in ("delving", "export", "keras_layers", "pipelines")
        if importlib.util.find_spec(m) is not None]}
    sess = tf.compat.v1.Session(graph=tf.Graph())
    meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], export_dir)
    sigs = meta.signature_def
    report["signatures"] = {
        name: {part: {k: [tf.dtypes.as_dtype(v.dtype).name,
                          [d.size for d in v.tensor_shape.dim]]
                      for k, v in getattr(s, part).items()}
               for part in ("inputs", "outputs")}
        for name, s in sigs.items() if name != "__saved_model_init_op"}
    graph = meta.graph_def
    nodes = list(graph.node) + [n for f in graph.library.function
                                for n in f.node_def]
    ops = {n.op for n in nodes}
    report["ops"] = sorted(ops)
    report["unregistered_ops"] = sorted(
        op for op in ops if op_def_registry.get(op) is None)
    report["xla"] = [n.name for n in nodes if n.attr["_XlaMustCompile"].b] + [
        f.signature.name for f in graph.library.function
        if f.attr["_XlaMustCompile"].b]

    def run(signature_name, inputs):
        sig = sigs[signature_name or "serving_default"]
        feed = {sig.inputs[k].name: v for k, v in inputs.items()}
        names = sorted(sig.outputs)
        try:
            values = sess.run([sig.outputs[k].name for k in names], feed)
        except tf.errors.InvalidArgumentError as e:
            return {"error": "InvalidArgument", "message": e.message}
        return dict(zip(names, values))

    def b64(value):  # TF Serving's JSON: {"b64": ...} is a binary string
        if isinstance(value, dict) and set(value) == {"b64"}:
            return base64.b64decode(value["b64"])
        return value

    results = {}
    for path in sorted(glob.glob(os.path.join(requests_dir, "*"))):
        name = os.path.splitext(os.path.basename(path))[0]
        if path.endswith(".pb"):  # gRPC PredictRequest
            with open(path, "rb") as f:
                request = predict_pb2.PredictRequest.FromString(f.read())
            results[name] = run(request.model_spec.signature_name, {
                k: tf.make_ndarray(v) for k, v in request.inputs.items()})
        else:  # REST body, row format ("instances")
            with open(path) as f:
                body = json.load(f)
            sig = sigs[body.get("signature_name", "serving_default")]
            (input_name,) = sig.inputs
            spec = sig.inputs[input_name]
            if spec.dtype == tf.string.as_datatype_enum:
                batch = np.array([b64(v) for v in body["instances"]], dtype=object)
            else:  # numbers, as the server converts JSON to the input's dtype
                dtype = tf.dtypes.as_dtype(spec.dtype).as_numpy_dtype
                batch = np.array(body["instances"], dtype=dtype)
            results[name] = run(body.get("signature_name"), {input_name: batch})
    for name, result in results.items():
        if "error" in result:
            report.setdefault("errors", {})[name] = result["message"]
        else:
            np.savez(os.path.join(out_dir, name + ".npz"), **result)

    report["warmup"] = []
    warmup = os.path.join(export_dir, "assets.extra",
                          "tf_serving_warmup_requests")
    for record in tf.data.TFRecordDataset(warmup).as_numpy_iterator():
        request = prediction_log_pb2.PredictionLog.FromString(
            record).predict_log.request
        result = run(request.model_spec.signature_name, {
            k: tf.make_ndarray(v) for k, v in request.inputs.items()})
        report["warmup"].append([
            request.model_spec.name, request.model_spec.signature_name,
            result.get("message") or result["probabilities"].sum(-1).tolist()])
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f)
""")


def _images():
    """name -> encoded bytes of real images in every supported format."""
    return {
        "jpeg": fx.encode(fx.picture(200, 260, 1), "JPEG", quality=90),
        "png": fx.encode(
            np.dstack([fx.picture(230, 180, 2), np.full((230, 180), 200, np.uint8)]), "PNG"
        ),  # RGBA: alpha dropped
        "gif": fx.animated_gif(150, 170),  # first frame
        "bmp": fx.encode(fx.picture(120, 140, 3), "BMP"),
        "gray_jpeg": fx.encode(fx.picture(170, 170, 4)[..., 0], "JPEG"),
        "one_pixel": fx.encode(np.array([[[10, 200, 30]]], np.uint8), "PNG"),
        "panorama": fx.encode(fx.picture(2, 1500, 5), "PNG"),
        "large": fx.encode(fx.picture(1600, 2400, 6), "JPEG", quality=80),
    }


BAD = {
    "not_an_image": b"this is not an image",
    "empty": b"",
    "bomb": fx.png_header_only(60000, 60000),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export once; serve once in a clean subprocess; return everything."""
    root = tmp_path_factory.mktemp("export")
    # input_std: inputs of unit scale, so the untrained nets are not
    # saturated and the probabilities compared below tell models apart.
    model_dirs = [
        fx.write_model_dir(root / "a", model="model_a", activation="prelu", seed=1, input_std=True),
        fx.write_model_dir(root / "s", model="small_14", activation="relu", seed=2, input_std=True),
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
    for name, data in fx.malformed_corpus().items():
        grpc(f"fuzz_{name}", [data])
    batch = ["jpeg", "png", "gif", "bmp"]
    grpc("batch", [images[n] for n in batch])
    grpc("bad_in_batch", [images["jpeg"], BAD["not_an_image"]])
    pixels = np.stack([fx.picture(180, 200, s) for s in (7, 8)])
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
    script = root / "serve.py"
    script.write_text(SERVER_SCRIPT)
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
        [sys.executable, str(script), version_dir, str(requests_dir), str(out_dir)],
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
    reference = [
        dense.DenseInference(
            s.model,
            window=networks.head_window(s.config.model),
            scales=SCALES,
            std=preprocessing.STD_RGB,
        )
        for s in map(export_lib.load_servable, model_dirs)
    ]
    return dict(
        root=root,
        reference=reference,
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
            "probabilities": ["float32", [-1, fx.NUM_CLASSES]],
            "classes": ["int32", [-1, 3]],
            "scores": ["float32", [-1, 3]],
            "labels": ["string", [-1, 3]],
        }


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


def test_batch_equals_single_requests_and_rest_equals_grpc(exported):
    served = exported["served"]
    batch = served["batch"]
    assert batch["probabilities"].shape == (4, fx.NUM_CLASSES)
    singles = np.concatenate([served[f"single_{n}"]["probabilities"] for n in exported["batch"]])
    np.testing.assert_allclose(batch["probabilities"], singles, rtol=1e-5, atol=1e-7)
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


def test_warmup_requests_parse_and_run(exported):
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


def test_saved_model_cli_show_and_run(exported):
    returncode, output = exported["cli"]
    assert returncode == 0, output[-3000:]
    assert "signature_def['serving_default']" in output
    assert "signature_def['predict_images']" in output
    assert "Result for output key probabilities" in output


def test_malformed_request_corpus(exported):
    """1,000 malformed payloads, one request each, in the session loader: each
    gave probabilities or an InvalidArgument (the server process survived all,
    or the fixture failed); every header bomb was refused before decoding."""
    names = [f"fuzz_{n}" for n in fx.malformed_corpus()]
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
