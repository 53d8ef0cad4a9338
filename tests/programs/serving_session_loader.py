"""Emulates TensorFlow Serving on an exported SavedModel with nothing but
TensorFlow and tensorflow_serving's protos (the project itself must not be
importable here): the session-based loader the server uses, gRPC
PredictRequests and REST bodies from files, and the warmup file replayed.

Usage: serving_session_loader.py EXPORT_DIR REQUESTS_DIR OUT_DIR
Writes OUT_DIR/<request>.npz per answered request and OUT_DIR/report.json
(signatures, ops, variable values held, errors, warmup). Run by
tests/test_export_export_lib_served.py.
"""

import base64
import glob
import importlib.util
import json
import os
import sys

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import op_def_registry
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

export_dir, requests_dir, out_dir = sys.argv[1:4]
report = {
    "project_importable": [
        m
        for m in ("delving", "export", "keras_layers", "pipelines")
        if importlib.util.find_spec(m) is not None
    ]
}
sess = tf.compat.v1.Session(graph=tf.Graph())
meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], export_dir)
sigs = meta.signature_def
report["signatures"] = {
    name: {
        part: {
            k: [tf.dtypes.as_dtype(v.dtype).name, [d.size for d in v.tensor_shape.dim]]
            for k, v in getattr(s, part).items()
        }
        for part in ("inputs", "outputs")
    }
    for name, s in sigs.items()
    if name != "__saved_model_init_op"
}
graph = meta.graph_def
nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
ops = {n.op for n in nodes}
report["ops"] = sorted(ops)
report["unregistered_ops"] = sorted(op for op in ops if op_def_registry.get(op) is None)
# The values of the variables the loader restored: what the server holds (a
# VarHandleOp no one assigned holds no memory).
handles = [n for n in graph.node if n.op == "VarHandleOp"]
with sess.graph.as_default():
    held = sess.run(
        [
            tf.raw_ops.VarIsInitializedOp(resource=sess.graph.get_tensor_by_name(n.name + ":0"))
            for n in handles
        ]
    )
report["variable_values"] = sum(
    int(np.prod([d.size for d in n.attr["shape"].shape.dim]))
    for n, initialized in zip(handles, held)
    if initialized
)
report["xla"] = [n.name for n in nodes if n.attr["_XlaMustCompile"].b] + [
    f.signature.name for f in graph.library.function if f.attr["_XlaMustCompile"].b
]


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
        results[name] = run(
            request.model_spec.signature_name,
            {k: tf.make_ndarray(v) for k, v in request.inputs.items()},
        )
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
warmup = os.path.join(export_dir, "assets.extra", "tf_serving_warmup_requests")
for record in tf.data.TFRecordDataset(warmup).as_numpy_iterator():
    request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
    result = run(
        request.model_spec.signature_name,
        {k: tf.make_ndarray(v) for k, v in request.inputs.items()},
    )
    report["warmup"].append(
        [
            request.model_spec.name,
            request.model_spec.signature_name,
            result.get("message") or result["probabilities"].sum(-1).tolist(),
        ]
    )
with open(os.path.join(out_dir, "report.json"), "w") as f:
    json.dump(report, f)
