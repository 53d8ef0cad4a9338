r"""Dense multi-view testing: our dense computation vs cropping windows.

    python benchmarks/dense_inference.py [--model=model_a] [--scale=256]

Part 1, images/second for the *same set of windows* (every `window x window`
window of the last conv map at stride 1, on the image and its flip):

- `dense (ours)`: `delving.evaluation.dense`, trunk once per image, SPP of all windows
  as stride-1 max pools + strided slices, fc layers as one matmul each.
- `map crops`: trunk once, then each window cropped from the conv map and
  run through the head (SPP-net's per-window head).
- `image crops`: each window's 224x224 image region cropped and run through
  the whole model (what dense testing avoids).

Part 2, latency of one JPEG request through `serving_default`: the exported
SavedModel loaded with the session-based loader TF Serving uses vs the same
computation as a `tf.function` in Python.

Every number is measured in this run, side by side; defaults take < 2 min
on 2 CPU cores. The network is the paper's at reduced width (see flags).
"""

import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

_MODEL = flags.DEFINE_string("model", "model_a", "Network (delving.models.networks).")
_WIDTH = flags.DEFINE_float("width_multiplier", 0.25, "Conv width multiplier.")
_FC_UNITS = flags.DEFINE_integer("fc_units", 1024, "Width of fc1, fc2.")
_CLASSES = flags.DEFINE_integer("num_classes", 1000, "Classes.")
_SCALE = flags.DEFINE_integer("scale", 256, "Shorter side of the test image.")
_WIDTH_PX = flags.DEFINE_integer("image_width", 320, "Longer side.")
_IMAGES = flags.DEFINE_integer("images", 2, "Images per timed batch.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs (median).")


def _median_seconds(fn, repeats):
    fn()  # trace / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")

    from delving.evaluation import dense
    from delving.models import networks
    from delving.training import config as config_lib
    from export import export_lib, serving_files

    name = _MODEL.value
    model = networks.build_model(
        name,
        num_classes=_CLASSES.value,
        width_multiplier=_WIDTH.value,
        fc_units=_FC_UNITS.value,
        seed=0,
    )
    trunk, head = networks.get_trunk(model), networks.get_head(model)
    window, stride = networks.head_window(name), networks.total_stride(name)
    crop = window * stride  # 224: the image region a map window covers
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (_IMAGES.value, _SCALE.value, _WIDTH_PX.value, 3), np.uint8)

    fmap_shape = trunk(np.zeros((1, _SCALE.value, _WIDTH_PX.value, 3), np.float32)).shape
    rows, cols = fmap_shape[1] - window + 1, fmap_shape[2] - window + 1
    windows = rows * cols
    inference = dense.DenseInference(
        model, window=window, scales=(_SCALE.value,), max_aspect_ratio=None
    )
    dense_fn = tf.function(inference, autograph=False)

    def normalized(x):  # at scale == the shorter side: no resampling
        from pipelines import preprocessing

        x = preprocessing.normalize(preprocessing.resize_shorter_side(x, _SCALE.value))
        return tf.concat([x, tf.reverse(x, axis=[2])], axis=0)

    @tf.function(autograph=False)
    def map_crops(x):
        fmap = trunk(normalized(x), training=False)
        crops = [fmap[:, p : p + window, q : q + window] for p in range(rows) for q in range(cols)]
        probs = tf.nn.softmax(head(tf.concat(crops, 0), training=False))
        return tf.reduce_mean(tf.reshape(probs, (len(crops), 2, _IMAGES.value, -1)), axis=(0, 1))

    @tf.function(autograph=False)
    def image_crops(x):
        x = normalized(x)
        crops = [
            x[:, p * stride : p * stride + crop, q * stride : q * stride + crop]
            for p in range(rows)
            for q in range(cols)
        ]
        crops = [tf.image.pad_to_bounding_box(c, 0, 0, crop, crop) for c in crops]
        probs = tf.nn.softmax(model(tf.concat(crops, 0), training=False))
        return tf.reduce_mean(tf.reshape(probs, (len(crops), 2, _IMAGES.value, -1)), axis=(0, 1))

    print(
        f"{name} x{_WIDTH.value} width, fc {_FC_UNITS.value}, "
        f"{_CLASSES.value} classes; image {_SCALE.value}x{_WIDTH_PX.value}, "
        f"conv map {fmap_shape[1]}x{fmap_shape[2]}, {windows} windows of "
        f"{window}x{window} (+ flips); {_IMAGES.value} images per run"
    )
    table = []
    for label, fn in [
        ("dense (ours)", dense_fn),
        ("map crops", map_crops),
        ("image crops", image_crops),
    ]:
        seconds = _median_seconds(lambda f=fn: f(images).numpy(), _REPEATS.value)
        table.append((label, _IMAGES.value / seconds))
    baseline = table[-1][1]
    print(f"\n{'method':<14} {'images/s':>9} {'vs image crops':>15}")
    for label, rate in table:
        print(f"{label:<14} {rate:9.2f} {rate / baseline:14.1f}x")

    # Part 2: the exported model vs the same function in Python.
    cfg = config_lib.TrainConfig(
        model=name,
        num_classes=_CLASSES.value,
        width_multiplier=_WIDTH.value,
        fc_units=_FC_UNITS.value,
    )
    classes = tuple((f"n{i:08d}", f"class {i}") for i in range(_CLASSES.value))
    servable = export_lib.ServableModel("(in memory)", model, cfg, classes)
    classifier = export_lib.DenseClassifier([servable], scales=(_SCALE.value,))
    jpeg = np.array([tf.io.encode_jpeg(images[0]).numpy()], dtype=object)
    python_fn = tf.function(classifier.predict_image_bytes, autograph=False)
    python_latency = _median_seconds(
        lambda: python_fn(tf.constant(jpeg))["probabilities"].numpy(), _REPEATS.value
    )
    with tempfile.TemporaryDirectory() as tmp:
        version_dir = export_lib.write_export(classifier, os.path.join(tmp, "m"))
        with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
            meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], version_dir)
            sig = meta.signature_def["serving_default"]
            fetch = sig.outputs["probabilities"].name
            feed = {sig.inputs["image_bytes"].name: jpeg}
            served_latency = _median_seconds(lambda: sess.run(fetch, feed), _REPEATS.value)
        warmup = os.path.exists(os.path.join(version_dir, serving_files.WARMUP_FILE))
    print(
        f"\none JPEG through serving_default at scale {_SCALE.value} "
        f"(+ flip), warmup file written: {warmup}"
    )
    print(f"{'runtime':<34} {'latency ms':>10} {'vs Python':>10}")
    print(f"{'in Python (tf.function)':<34} {1e3 * python_latency:10.1f} {1.0:9.2f}x")
    print(
        f"{'SavedModel, session loader':<34} {1e3 * served_latency:10.1f} "
        f"{served_latency / python_latency:9.2f}x"
    )


if __name__ == "__main__":
    app.run(main)
