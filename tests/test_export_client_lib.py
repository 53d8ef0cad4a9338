"""export.client_lib: the requests the client sends and the answers it reads."""

import base64
import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from export import client_lib

IMAGES = [b"\xff\xd8jpeg", b"\x89PNG..."]


def test_predict_request_of_image_bytes_round_trips():
    images = IMAGES
    request = client_lib.build_predict_request(images, model_name="m", version=3)
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert (
        request.model_spec.name,
        request.model_spec.signature_name,
        request.model_spec.version.value,
    ) == ("m", "serving_default", 3)
    assert list(tf.make_ndarray(request.inputs["image_bytes"])) == images


def test_predict_request_of_pixels_holds_uint8_images():
    pixels = np.zeros((2, 5, 6, 3), np.uint8)
    request = client_lib.build_predict_request(
        pixels, model_name="m", signature_name="predict_images"
    )
    array = tf.make_ndarray(request.inputs["images"])
    assert array.dtype == np.uint8 and array.shape == pixels.shape


def test_rest_body_sends_image_bytes_as_base64():
    images = IMAGES
    body = json.loads(json.dumps(client_lib.build_rest_body(images)))
    assert body["signature_name"] == "serving_default"
    assert [base64.b64decode(i["b64"]) for i in body["instances"]] == images


def test_parse_responses():
    response = predict_pb2.PredictResponse()
    for key, value in {
        "labels": [[b"cat", b"dog"]],
        "classes": [[3, 1]],
        "scores": [[0.75, 0.25]],
    }.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    want = [
        [{"label": "cat", "class": 3, "score": 0.75}, {"label": "dog", "class": 1, "score": 0.25}]
    ]
    assert client_lib.parse_predict_response(response) == want
    rest = {
        "predictions": [
            {
                "labels": ["cat", "dog"],
                "classes": [3, 1],
                "scores": [0.75, 0.25],
                "probabilities": [],
            }
        ]
    }
    assert client_lib.parse_rest_response(rest) == want
    with pytest.raises(RuntimeError, match="server error: bad"):
        client_lib.parse_rest_response({"error": "bad"})
