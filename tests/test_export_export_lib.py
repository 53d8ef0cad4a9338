"""export_lib, image_decoding, client_lib and the two binaries."""

import base64
import http.server
import json
import os
import subprocess
import sys
import threading

import export_testutil as fx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from delving.models import networks
from export import client_lib, export_lib, image_decoding
from tests import train_testutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
    )


def test_next_version(tmp_path):
    assert export_lib.next_version(str(tmp_path / "missing")) == 1
    for name in ("1", "7", "tmp", ".tmp-9-1"):
        (tmp_path / name).mkdir()
    (tmp_path / "models.config").write_text("")
    assert export_lib.next_version(str(tmp_path)) == 8


@pytest.mark.parametrize(
    "fmt,shape",
    [
        ("JPEG", (37, 51)),
        ("PNG", (23, 70)),
        ("GIF", (64, 9)),
        ("BMP", (31, 40)),
    ],
)
def test_header_size_reads_real_headers(fmt, shape):
    data = fx.encode(fx.picture(*shape), fmt)
    got = image_decoding.header_size(tf.constant(data))
    assert tuple(int(v) for v in got) == shape


def _webp(picture, exif=False, **options):
    import io

    from PIL import Image

    image = Image.fromarray(picture)
    if exif:  # metadata makes the extended (VP8X) layout
        tags = Image.Exif()
        tags[0x010E] = "delving"  # ImageDescription
        options["exif"] = tags.tobytes()
    out = io.BytesIO()
    image.save(out, "WEBP", **options)
    return out.getvalue()


@pytest.mark.parametrize(
    "options,chunk",
    [({"quality": 80}, b"VP8 "), ({"lossless": True}, b"VP8L"), ({"exif": True}, b"VP8X")],
)
def test_webp_sizes_are_read_and_capped(options, chunk):
    """Every WebP kind the decoder takes: lossy, lossless, extended (issue 16)."""
    picture = fx.picture(120, 160)
    data = _webp(picture, **options)
    assert data[12:16] == chunk
    assert tuple(int(v) for v in image_decoding.header_size(tf.constant(data))) == (120, 160)
    with pytest.raises(tf.errors.InvalidArgumentError, match="too large"):
        image_decoding.decode_image(data, max_pixels=10000)
    assert image_decoding.decode_image(data, max_pixels=19200).shape == (120, 160, 3)


def test_webp_bomb_refused_before_decoding():
    data = bytearray(_webp(fx.picture(120, 160), lossless=True))
    # 16383 x 16383 declared in the VP8L header of a file of a few KB.
    bits = int.from_bytes(data[21:25], "little")
    bits = (bits & ~((1 << 28) - 1)) | (16382 << 14) | 16382
    data[21:25] = bits.to_bytes(4, "little")
    assert tuple(int(v) for v in image_decoding.header_size(tf.constant(bytes(data)))) == (
        16383,
        16383,
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="too large"):
        image_decoding.decode_image(bytes(data), max_pixels=10**8)


@pytest.mark.parametrize("data", [b"", b"GIF", b"not an image at all"])
def test_header_size_of_short_or_unknown_bytes_is_zero(data):
    assert tuple(int(v) for v in image_decoding.header_size(data)) in {(0, 0)}


def test_decode_image_refuses_bombs_and_empty_strings():
    with pytest.raises(tf.errors.InvalidArgumentError, match="too large"):
        image_decoding.decode_image(fx.png_header_only(20000, 30000), max_pixels=10**8)
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty string"):
        image_decoding.decode_image(tf.constant(b""))
    image = fx.picture(20, 30)
    np.testing.assert_array_equal(
        image_decoding.decode_image(fx.encode(image, "PNG"), max_pixels=600), image
    )


def test_load_servable_explains_what_is_missing(tmp_path):
    with pytest.raises(
        export_lib.ExportError, match="missing config.json, classes.tsv, model.keras"
    ):
        export_lib.load_servable(str(tmp_path))


def test_ensemble_members_must_share_classes(tmp_path):
    a = export_lib.load_servable(fx.write_model_dir(tmp_path / "a"))
    b = export_lib.load_servable(fx.write_model_dir(tmp_path / "b", seed=1))
    b = export_lib.ServableModel(b.model_dir, b.model, b.config, tuple(reversed(b.classes)))
    with pytest.raises(export_lib.ExportError, match="different classes.tsv"):
        export_lib.DenseClassifier([a, b])


def test_mixed_precision_model_serves_float32(tmp_path):
    servable = export_lib.load_servable(
        fx.write_model_dir(tmp_path / "mixed", mixed_precision="float16")
    )
    trunk = servable.model.get_layer("trunk")
    assert trunk.get_layer("conv1").compute_dtype == "float16"
    classifier = export_lib.DenseClassifier([servable], scales=(64,), top_k=2)
    out = classifier.predict_image_bytes(tf.constant([fx.encode(fx.picture(50, 70), "PNG")]))
    assert out["probabilities"].dtype == tf.float32
    assert out["scores"].dtype == tf.float32 and out["classes"].dtype == tf.int32
    np.testing.assert_allclose(out["probabilities"].numpy().sum(), 1, rtol=1e-5)


def test_predict_request_and_rest_body_round_trip():
    images = [b"\xff\xd8jpeg", b"\x89PNG..."]
    request = client_lib.build_predict_request(images, model_name="m", version=3)
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert (
        request.model_spec.name,
        request.model_spec.signature_name,
        request.model_spec.version.value,
    ) == ("m", "serving_default", 3)
    assert list(tf.make_ndarray(request.inputs["image_bytes"])) == images
    pixels = np.zeros((2, 5, 6, 3), np.uint8)
    request = client_lib.build_predict_request(
        pixels, model_name="m", signature_name="predict_images"
    )
    array = tf.make_ndarray(request.inputs["images"])
    assert array.dtype == np.uint8 and array.shape == pixels.shape
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


class _RestServer(http.server.BaseHTTPRequestHandler):
    """Answers `:predict` like TF Serving's REST API does, from the request:
    one prediction per instance whose score is the decoded length."""

    seen = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _RestServer.seen.append((self.path, body))
        sizes = [len(base64.b64decode(i["b64"])) for i in body["instances"]]
        payload = json.dumps(
            {
                "predictions": [
                    {"labels": ["big", "small"], "classes": [1, 0], "scores": [s / 1000, 0.0]}
                    for s in sizes
                ]
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_client_binary_over_rest(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _RestServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        image = tmp_path / "cat.png"
        image.write_bytes(b"x" * 123)
        result = _run(
            "export.client",
            f"--server=127.0.0.1:{server.server_port}",
            "--rest",
            "--model_name=prelu",
            str(image),
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{image}\n  1. 0.1230  big (class 1)" in result.stdout
    path, body = _RestServer.seen[-1]
    assert path == "/v1/models/prelu:predict"
    assert base64.b64decode(body["instances"][0]["b64"]) == b"x" * 123


def test_client_model_name_defaults_to_the_basename_of_export_base(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _RestServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    image = tmp_path / "cat.png"
    image.write_bytes(b"x" * 10)
    seen = []
    try:
        for flags in ([f"--export_base={tmp_path}/serving/cats/"], []):
            result = _run(
                "export.client",
                f"--server=127.0.0.1:{server.server_port}",
                "--rest",
                *flags,
                str(image),
            )
            assert result.returncode == 0, result.stderr[-2000:]
            seen.append(_RestServer.seen[-1][0])
    finally:
        server.shutdown()
    # The second: the default --export_base, the README's /models/prelu.
    assert seen == ["/v1/models/cats:predict", "/v1/models/prelu:predict"]


def test_client_binary_reports_unreachable_server_in_one_line(tmp_path):
    image = tmp_path / "cat.jpg"
    image.write_bytes(b"x")
    result = _run("export.client", "--server=127.0.0.1:1", "--rest", "--timeout=5", str(image))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: 127.0.0.1:1:")
    assert "Traceback" not in result.stderr


def test_export_binary_writes_the_next_version(tmp_path):
    model_dir = fx.write_model_dir(tmp_path / "run", model="small_14")
    base = tmp_path / "models" / "prelu"
    (base / "3").mkdir(parents=True)  # an older version already served
    # What a killed export leaves (its pid is gone), and a live one's.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], stdout=-1)
    killed = base / f".tmp-2-{int(dead.stdout)}"
    live = base / f".tmp-9-{os.getpid()}"
    for d in (killed, live):
        (d / "variables").mkdir(parents=True)
    result = _run(
        "export.export_saved_model",
        f"--model_dir={model_dir}",
        f"--export_base={base}",
        "--scales=80",
        "--flip=false",
        "--top_k=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == str(base / "4")
    assert sorted(os.listdir(base)) == [live.name, "3", "4", "models.config"]
    assert {"saved_model.pb", "variables", "assets.extra"} <= set(os.listdir(base / "4"))


def test_export_binary_user_errors_are_one_line(tmp_path):
    result = _run(
        "export.export_saved_model", f"--model_dir={tmp_path}", f"--export_base={tmp_path / 'out'}"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}: missing config.json, classes.tsv, model.keras "
        f"(is it the --model_dir of a finished training run?)"
    )
    result = _run(
        "export.export_saved_model", "--model_dir=x", "--export_base=y", "--scales=256,big"
    )
    assert result.returncode == 1 and "--scales: expected integers >= 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_scales_and_window_default_to_the_runs_own_crop_size(tmp_path):
    """A 64-px built-in run is not exported at the ImageNet scales (its
    served predictions were at chance): scales and window follow its config."""
    small = fx.write_model_dir(tmp_path / "small", model="small_14", image_size=64)
    (member,) = export_lib.DenseClassifier([export_lib.load_servable(small)])._members
    assert member.scales == (73, 110, 137)
    assert member.window == networks.head_window("small_14", 64) == 6
    paper = fx.write_model_dir(tmp_path / "paper", model="model_a")  # 224-px crops
    (member,) = export_lib.DenseClassifier([export_lib.load_servable(paper)])._members
    assert (member.scales, member.window) == ((256, 384, 480), 14)
    given = export_lib.DenseClassifier([export_lib.load_servable(small)], scales=(80,))
    assert given._members[0].scales == (80,)
