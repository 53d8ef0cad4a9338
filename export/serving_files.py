"""Files TF Serving reads next to a SavedModel.

- `<version>/assets.extra/tf_serving_warmup_requests`: a TFRecord of
  `PredictionLog` protos. The server replays them when it loads the version,
  before it serves traffic, so the first user request does not pay for
  graph initialization. Real requests: a JPEG and a PNG through
  `serving_default` (batch 1 and 2), and an image through `predict_images`.
- `<export_base>/models.config`: a `ModelServerConfig` text proto for
  `tensorflow_model_server --model_config_file=...`.
"""

import os

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from common import files
from export import client_lib, versions

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MODELS_CONFIG = "models.config"


def warmup_image(height=240, width=320):
    """A deterministic RGB test card (gradients and stripes), uint8."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [
            255 * x // max(1, width - 1),
            255 * y // max(1, height - 1),
            ((x // 16 + y // 16) % 2) * 255,
        ],
        axis=-1,
    ).astype(np.uint8)


def warmup_requests(model_name):
    """The `PredictRequest`s written to the warmup file."""
    image = warmup_image()
    jpeg = tf.io.encode_jpeg(image).numpy()
    png = tf.io.encode_png(image[:200, :300]).numpy()
    return [
        client_lib.build_predict_request([jpeg], model_name=model_name),
        client_lib.build_predict_request([jpeg, png], model_name=model_name),
        client_lib.build_predict_request(
            image[None], model_name=model_name, signature_name=client_lib.SIGNATURE_IMAGES
        ),
    ]


def write_warmup_requests(version_dir, *, model_name):
    """Writes `assets.extra/tf_serving_warmup_requests`; returns its path."""
    path = os.path.join(version_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for request in warmup_requests(model_name):
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def models_config(export_base, *, model_name):
    """A `ModelServerConfig` serving the latest version under `export_base`."""
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add()
    entry.name = model_name
    entry.base_path = versions.normalize(export_base)
    entry.model_platform = "tensorflow"
    return config


def write_models_config(export_base, *, model_name):
    """Writes `<export_base>/models.config` (text proto) whole, through
    `tf.io.gfile`, under a name of this process's first (exports may run
    side by side); returns its path."""
    path = os.path.join(versions.normalize(export_base), MODELS_CONFIG)
    config = models_config(export_base, model_name=model_name)
    files.atomic_write(path, text_format.MessageToString(config))
    return path
