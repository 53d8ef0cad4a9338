"""Requests to the exported models on TensorFlow Serving, gRPC and REST.

Used by the client binary (`export/client.py`), the warmup file
(`export/serving_files.py`) and the tests that feed the exported SavedModel
exactly what the server would:

- `build_predict_request`: a gRPC `PredictRequest` (`tf.make_tensor_proto`).
- `build_rest_body`: the REST API's JSON, row format (`instances`): for
  `serving_default` each image's bytes base64-encoded as `{"b64": ...}`,
  which is how TF Serving's REST API takes binary strings; for
  `predict_images` each image as a nested `[height][width][3]` list of ints.
- `parse_predict_response`, `parse_rest_response`: the top-k per image.
- `predict_grpc`, `predict_rest`: send one request.
"""

import base64
import json
import os
import urllib.error
import urllib.request

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

SIGNATURE_BYTES = "serving_default"
SIGNATURE_IMAGES = "predict_images"
#: Signature -> its input name (the exported functions' argument names).
INPUT_NAMES = {SIGNATURE_BYTES: "image_bytes", SIGNATURE_IMAGES: "images"}
OUTPUT_NAMES = ("probabilities", "classes", "scores", "labels")


def default_model_name(export_base):
    """The name `export.export_saved_model` gives the model in models.config
    when no --model_name is given: the basename of its --export_base."""
    path = str(export_base).rstrip("/")
    return os.path.basename(path if "://" in path else os.path.abspath(path))


def build_predict_request(inputs, *, model_name, signature_name=SIGNATURE_BYTES, version=None):
    """A gRPC `PredictRequest`.

    Args:
      inputs: for `serving_default` a list of encoded images (bytes); for
        `predict_images` a uint8 array `[batch, height, width, 3]`.
      model_name: the name the server knows the model by (`models.config`).
      signature_name: `serving_default` or `predict_images`.
      version: a specific version, or None for the latest.
    """
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    if signature_name == SIGNATURE_BYTES:
        tensor = tf.make_tensor_proto([bytes(b) for b in inputs], dtype=tf.string)
    else:
        tensor = tf.make_tensor_proto(np.asarray(inputs, np.uint8), dtype=tf.uint8)
    request.inputs[INPUT_NAMES[signature_name]].CopyFrom(tensor)
    return request


def build_rest_body(inputs, *, signature_name=SIGNATURE_BYTES):
    """The JSON body (a dict) of `POST /v1/models/<name>:predict`.

    Args:
      inputs: as for `build_predict_request`: encoded images (bytes) for
        `serving_default`, a uint8 array `[batch, height, width, 3]` for
        `predict_images`.
      signature_name: `serving_default` or `predict_images`.
    """
    if signature_name == SIGNATURE_BYTES:
        instances = [{"b64": base64.b64encode(bytes(b)).decode("ascii")} for b in inputs]
    elif signature_name == SIGNATURE_IMAGES:
        # JSON numbers: the server converts them to the signature's uint8.
        instances = np.asarray(inputs, np.uint8).tolist()
    else:
        raise ValueError(f"unknown signature {signature_name!r}; use one of {list(INPUT_NAMES)}")
    return {"signature_name": signature_name, "instances": instances}


def _top_k(labels, classes, scores):
    return [
        {
            "label": (label.decode() if isinstance(label, bytes) else label),
            "class": int(c),
            "score": float(s),
        }
        for label, c, s in zip(labels, classes, scores)
    ]


def parse_predict_response(response):
    """`PredictResponse` -> one list of `{label, class, score}` per image."""
    out = {
        name: tf.make_ndarray(response.outputs[name]) for name in ("labels", "classes", "scores")
    }
    return [_top_k(*row) for row in zip(out["labels"], out["classes"], out["scores"])]


def parse_rest_response(body):
    """The REST API's JSON response (a dict) -> same as
    `parse_predict_response`."""
    if "error" in body:
        raise RuntimeError(f"server error: {body['error']}")
    return [_top_k(p["labels"], p["classes"], p["scores"]) for p in body["predictions"]]


def predict_grpc(server, request, *, timeout=60.0):
    import grpc  # only the binary needs a channel
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=timeout)


def predict_rest(server, body, *, model_name, version=None, timeout=60.0):
    path = f"/v1/models/{model_name}"
    if version is not None:
        path += f"/versions/{int(version)}"
    url = (server if "://" in server else f"http://{server}") + path + ":predict"
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:  # the server's {"error": ...} body
        return json.loads(e.read() or b"{}") or {"error": str(e)}
