"""The client binary (export.client) against a server that answers like TF
Serving's REST API."""

import base64
import http.server
import json
import threading

from tests import train_testutil


def _client(*args):
    """Runs the client binary: (exit code, stdout, stderr)."""
    return train_testutil.run("export.client", list(args))


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


def test_predicts_over_rest(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _RestServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        image = tmp_path / "cat.png"
        image.write_bytes(b"x" * 123)
        code, out, err = _client(
            f"--server=127.0.0.1:{server.server_port}",
            "--rest",
            "--model_name=prelu",
            str(image),
        )
    finally:
        server.shutdown()
    assert code == 0, err[-2000:]
    assert f"{image}\n  1. 0.1230  big (class 1)" in out
    path, body = _RestServer.seen[-1]
    assert path == "/v1/models/prelu:predict"
    assert base64.b64decode(body["instances"][0]["b64"]) == b"x" * 123


def test_model_name_defaults_to_the_basename_of_export_base(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _RestServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    image = tmp_path / "cat.png"
    image.write_bytes(b"x" * 10)
    seen = []
    try:
        for flags in ([f"--export_base={tmp_path}/serving/cats/"], []):
            code, out, err = _client(
                f"--server=127.0.0.1:{server.server_port}",
                "--rest",
                *flags,
                str(image),
            )
            assert code == 0, err[-2000:]
            seen.append(_RestServer.seen[-1][0])
    finally:
        server.shutdown()
    # The second: the default --export_base, the README's /models/prelu.
    assert seen == ["/v1/models/cats:predict", "/v1/models/prelu:predict"]


def test_reports_an_unreachable_server_in_one_line(tmp_path):
    image = tmp_path / "cat.jpg"
    image.write_bytes(b"x")
    code, out, err = _client("--server=127.0.0.1:1", "--rest", "--timeout=5", str(image))
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("error: 127.0.0.1:1:")
    assert "Traceback" not in err
