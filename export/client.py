r"""Sends images to a model served by TensorFlow Serving; prints the top-k.

    python -m export.client --server=localhost:8500 cat.jpg dog.png
    python -m export.client --server=localhost:8501 --rest cat.jpg

The files' bytes go unchanged to the `serving_default` signature (the server
decodes them and runs the paper's dense multi-scale testing); requests are
built by `export/client_lib.py`.
"""

import sys

from absl import app, flags

# client_lib loads TensorFlow: imported in main(), so --help answers at once.

_SERVER = flags.DEFINE_string(
    "server",
    "localhost:8500",
    "host:port of TF Serving: its gRPC port (8500), or with --rest its REST port (8501).",
)
_REST = flags.DEFINE_bool("rest", False, "Use the REST API instead of gRPC.")
_EXPORT_BASE = flags.DEFINE_string(
    "export_base",
    "/models/prelu",
    "The export's --export_base; the default --model_name is its basename, as "
    "export.export_saved_model names the model in models.config.",
)
_MODEL_NAME = flags.DEFINE_string(
    "model_name",
    None,
    "Model name on the server (its models.config); default: the basename of --export_base.",
)
_VERSION = flags.DEFINE_integer(
    "version", None, "Model version; default the latest.", lower_bound=1
)
_TIMEOUT = flags.DEFINE_float("timeout", 60.0, "Request timeout, seconds.")
flags.register_validator("timeout", lambda v: v > 0, "--timeout must be > 0 seconds")
flags.register_validator(
    "server", lambda v: bool(v.strip()), "--server must be host:port, e.g. localhost:8500"
)


def model_name():
    """--model_name, else the name export_saved_model gives --export_base."""
    from export import client_lib

    return _MODEL_NAME.value or client_lib.default_model_name(_EXPORT_BASE.value)


def main(argv):
    from common import quiet_start

    quiet_start.start()
    paths = argv[1:]
    if not paths:
        sys.exit("error: give one or more image files to classify")
    from export import client_lib

    images = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                images.append(f.read())
        except OSError as e:
            sys.exit(f"error: cannot read {path}: {e.strerror}")
    try:
        if _REST.value:
            body = client_lib.predict_rest(
                _SERVER.value,
                client_lib.build_rest_body(images),
                model_name=model_name(),
                version=_VERSION.value,
                timeout=_TIMEOUT.value,
            )
            results = client_lib.parse_rest_response(body)
        else:
            request = client_lib.build_predict_request(
                images, model_name=model_name(), version=_VERSION.value
            )
            results = client_lib.parse_predict_response(
                client_lib.predict_grpc(_SERVER.value, request, timeout=_TIMEOUT.value)
            )
    except (OSError, RuntimeError) as e:  # URLError is an OSError
        sys.exit(f"error: {_SERVER.value}: {e}")
    except Exception as e:  # grpc.RpcError: status and the server's message
        if hasattr(e, "code") and hasattr(e, "details"):
            sys.exit(f"error: {_SERVER.value}: {e.code().name}: {e.details()}")
        raise
    for path, top in zip(paths, results):
        print(path)
        for rank, entry in enumerate(top, 1):
            print(f"  {rank}. {entry['score']:.4f}  {entry['label']} (class {entry['class']})")


if __name__ == "__main__":
    app.run(main)
