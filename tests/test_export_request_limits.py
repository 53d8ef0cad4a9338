"""Per-request limits and non-finite outputs, in the served model.

Two exports are loaded in one fresh process that imports only TensorFlow
and TF Serving's protos, with the server's session loader, and fed real
`PredictRequest`s one after the other, as a server would:

- a tiny model with small limits, sent over 1,000 crafted requests
  (`crafted_testutil.crafted_requests`); after each the process reports its
  peak memory growth (`VmHWM` after the request, reset before it, less
  `VmRSS` before it), which must stay under `DenseClassifier.memory_bound`;
- a float16 model whose activations overflow, sent a real image.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from export import client_lib, export_lib, request_limits
from tests import crafted_testutil, export_testutil, train_testutil

LIMITS = request_limits.RequestLimits(
    max_images=16, max_pixels=2_000_000, max_image_pixels=1_000_000
)
SCALES = (48, 64)

SERVER_SCRIPT = textwrap.dedent(r"""
    import glob, importlib.util, json, os, sys, time
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    out_path, jobs = sys.argv[1], sys.argv[2:]

    def status(key):  # bytes, from the kernel's accounting of this process
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))

    report = {"project_importable": [
        m for m in ("delving", "export", "keras_layers", "pipelines", "common")
        if importlib.util.find_spec(m) is not None], "results": {}}
    for export_dir, requests_dir in zip(jobs[::2], jobs[1::2]):
        sess = tf.compat.v1.Session(graph=tf.Graph())
        sigs = tf.compat.v1.saved_model.loader.load(
            sess, ["serve"], export_dir).signature_def

        def run(request):
            sig = sigs[request.model_spec.signature_name]
            feed = {sig.inputs[k].name: tf.make_ndarray(v)
                    for k, v in request.inputs.items()}
            names = sorted(sig.outputs)
            try:
                values = dict(zip(names, sess.run(
                    [sig.outputs[k].name for k in names], feed)))
            except tf.errors.InvalidArgumentError as e:
                lines = [l for l in e.message.splitlines() if "ssertion" in l]
                return {"error": "InvalidArgument",
                        "message": (lines or e.message.splitlines())[0][:400]}
            except tf.errors.OpError as e:
                return {"error": type(e).__name__, "message": e.message[:400]}
            probs = values["probabilities"]
            return {"images": len(probs), "finite": bool(np.isfinite(probs).all()),
                    "sums": probs.sum(-1).tolist()}

        # As the server does at load: the warmup requests first.
        warmup = os.path.join(export_dir, "assets.extra", "tf_serving_warmup_requests")
        for record in tf.data.TFRecordDataset(warmup).as_numpy_iterator():
            run(prediction_log_pb2.PredictionLog.FromString(record).predict_log.request)
        for path in sorted(glob.glob(os.path.join(requests_dir, "*.pb"))):
            with open(path, "rb") as f:
                request = predict_pb2.PredictRequest.FromString(f.read())
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current VmRSS
            before, start = status("VmRSS:"), time.perf_counter()
            result = run(request)
            result["seconds"] = time.perf_counter() - start
            result["growth"] = status("VmHWM:") - before
            report["results"][os.path.basename(path)[:-3]] = result
    with open(out_path, "w") as f:
        json.dump(report, f)
""")


def _overflowing_model_dir(path):
    """A float16 model whose first conv's outputs overflow (past 65504):
    the probabilities of every image are NaN."""
    model_dir = export_testutil.write_model_dir(path, model="small_14", mixed_precision="float16")
    file = os.path.join(model_dir, "model.keras")
    model = keras.saving.load_model(file)
    conv = model.get_layer("trunk").get_layer("conv1")
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel * 1e6, bias])
    model.save(file)
    return model_dir


def _request_bytes(signature, inputs):
    if signature == crafted_testutil.IMAGES:
        return int(np.asarray(inputs).nbytes)
    return sum(len(b) for b in inputs)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    servable = export_lib.load_servable(
        export_testutil.write_model_dir(root / "tiny", model="small_14", input_std=True)
    )
    classifier = export_lib.DenseClassifier([servable], scales=SCALES, limits=LIMITS)
    version_dir = export_lib.write_export(classifier, str(root / "serving" / "tiny"))
    overflowing = export_lib.export_saved_model(
        [_overflowing_model_dir(root / "overflow")], str(root / "serving" / "overflow")
    )
    requests = crafted_testutil.crafted_requests(
        LIMITS.max_images, LIMITS.max_pixels, LIMITS.max_image_pixels
    )
    jobs = []
    for name, export_dir, batch in (
        ("corpus", version_dir, requests),
        (
            "overflow",
            overflowing,
            [("overflow_png", crafted_testutil.BYTES, [crafted_testutil.image("png")])],
        ),
    ):
        directory = root / f"requests_{name}"
        directory.mkdir()
        for request_name, signature, inputs in batch:
            request = client_lib.build_predict_request(
                inputs, model_name="tiny", signature_name=signature
            )
            (directory / f"{request_name}.pb").write_bytes(request.SerializeToString())
        jobs += [export_dir, str(directory)]
    script = root / "serve.py"
    script.write_text(SERVER_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    server = subprocess.run(
        [sys.executable, str(script), str(root / "report.json"), *jobs],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
    )
    assert server.returncode == 0, server.stderr[-3000:]
    report = json.loads((root / "report.json").read_text())
    bounds = {
        name: classifier.memory_bound(_request_bytes(signature, inputs))["total"]
        for name, signature, inputs in requests
    }
    return dict(report=report, requests=requests, bounds=bounds)


def _result(served, name):
    return served["report"]["results"][name]


def _refused(served, name, words):
    result = _result(served, name)
    assert result.get("error") == "InvalidArgument", (name, result)
    assert words in result["message"], (name, result["message"])


def test_served_without_project_code(served):
    assert served["report"]["project_importable"] == []


def test_corpus_each_request_answered_or_invalid_argument(served):
    """Over 1,000 crafted requests in one process: it lived through all (or
    the fixture failed), and each one gave probabilities or InvalidArgument."""
    names = [name for name, _, _ in served["requests"]]
    assert len(names) >= 1000 and len(set(names)) == len(names)
    results = [_result(served, name) for name in names]
    other = [
        (n, r)
        for n, r in zip(names, results)
        if r.get("error", "InvalidArgument") != "InvalidArgument"
    ]
    assert not other, other[:3]
    answered = [r for r in results if "error" not in r]
    assert all(r["finite"] and np.allclose(r["sums"], 1, rtol=1e-4) for r in answered)
    print(f"corpus: {len(answered)} answered, {len(results) - len(answered)} refused")


def test_corpus_peak_memory_of_each_request_is_under_the_bound(served):
    over = {
        name: (result["growth"], served["bounds"][name])
        for name, result in served["report"]["results"].items()
        if name in served["bounds"] and result["growth"] > served["bounds"][name]
    }
    assert not over, sorted(over.items())[:5]
    results = served["report"]["results"]
    worst = max(served["bounds"], key=lambda n: results[n]["growth"])
    slowest = max(served["bounds"], key=lambda n: results[n]["seconds"])
    print(
        f"corpus: peak growth {results[worst]['growth'] / 2**20:.1f} MiB ({worst}; bound "
        f"{served['bounds'][worst] / 2**20:.1f} MiB); slowest {results[slowest]['seconds']:.2f}"
        f" s ({slowest}); all {sum(r['seconds'] for r in results.values()):.1f} s"
    )


@pytest.mark.parametrize("kind", list(crafted_testutil.KINDS))
def test_declared_sizes_over_the_limit_are_refused_in_every_format(served, kind):
    for name in served["bounds"]:
        if name.startswith(f"lie_{kind}_") and name.endswith(("_as_4000x4000", "_as_1001x1000")):
            _refused(served, name, "image too large")


def test_gif_size_is_its_first_frames_not_its_logical_screen(served):
    _refused(served, "gif_frames_0", "image too large")  # screen 1x1, frame over the limit
    _refused(served, "gif_frames_1", "[4000] [4000]")
    assert "error" not in _result(served, "gif_frames_4")  # screen 4000x4000, frame 20x30
    assert "error" not in _result(served, "gif_frames_5")  # screen 65535x65535


def test_gif_frames_after_the_first_are_not_decoded(served):
    for name in ("gif_frames_2", "gif_frames_3", "gif_frames_7"):  # later frames 4000+ px
        assert "error" not in _result(served, name), _result(served, name)
    sixty, one = _result(served, "gif_60_frames_at_the_limit"), _result(served, "gif_frames_2")
    assert sixty["growth"] < served["bounds"]["gif_60_frames_at_the_limit"]
    assert "error" not in one


@pytest.mark.parametrize("name", ["jpeg_xl", "webp_raw_lossless", "webp_raw_lossy", "tiff"])
def test_formats_not_served_are_refused_before_decoding(served, name):
    _refused(served, name, "Unknown image file format")


def test_more_images_than_max_request_images_are_refused(served):
    assert _result(served, f"batch_of_{LIMITS.max_images}")["images"] == LIMITS.max_images
    for count in (LIMITS.max_images + 1, 100, 1000):
        _refused(served, f"batch_of_{count}", "max_request_images=16")
    _refused(served, "pixels_1000x1x1", "max_request_images=16")


def test_more_pixels_than_max_request_pixels_are_refused(served):
    assert "error" not in _result(served, "batch_at_the_pixel_limit")
    _refused(served, "batch_over_the_pixel_limit", "max_request_pixels=2000000")
    _refused(served, "pixels_3x1000x1000", "max_request_pixels=2000000")


def test_predict_images_refuses_an_image_over_max_image_pixels(served):
    _refused(served, "pixels_2x1000x1001", "image too large")
    assert _result(served, "pixels_16x1x1")["images"] == 16


def test_non_finite_probabilities_are_refused(served):
    _refused(served, "overflow_png", "probabilities are not finite")
