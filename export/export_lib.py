"""SavedModels for TensorFlow Serving: dense multi-scale inference in the graph.

`export_saved_model(model_dirs, export_base)` writes `export_base/<N>/`, a
SavedModel made with `keras.export.ExportArchive` (which, unlike a Keras
model wrapped in a plain `tf.Module`, the server's session-based C++ loader
can restore), with two signatures:

- `serving_default`: `image_bytes` string `[batch]` (JPEG, PNG, GIF first
  frame, BMP; images in one batch may differ in size) ->
  `probabilities` float32 `[batch, classes]`, `classes` int32 `[batch, k]`,
  `scores` float32 `[batch, k]`, `labels` string `[batch, k]`.
- `predict_images`: `images` uint8 `[batch, height, width, 3]` -> the same.

Both run `delving.evaluation.dense.DenseInference`, the paper's dense multi-view
testing (Sec. 4), whose per-scale step `delving.evaluation.dense.dense_scores` is also
what `delving.evaluate --views=dense` runs, so offline evaluation and serving
compute the same thing (exactly, for images up to the 4:1 aspect-ratio
limit). Several model dirs make one ensemble whose probabilities are the
mean of its members'.

Only core TensorFlow ops, no `tf.py_function`, no XLA-only functions.
Undecodable input fails the request with `InvalidArgument`, never the server:
empty strings and unknown formats are reported by name, and requests over
their `export.request_limits.RequestLimits` (images, decoded pixels in all
and per image, read from the headers: a 60000x60000 PNG is a few KB on the
wire and 10 GB decoded) are refused before any image is decoded. The images
of a request run one at a time, so memory is one image's
(`export.request_limits.memory_bound`). Probabilities that are not finite (a
float16 model that overflowed) fail the request with `InvalidArgument`
rather than being ranked.

After the SavedModel, `export/serving_files.py` adds
`assets.extra/tf_serving_warmup_requests` (replayed by the server at load)
and `export_base/models.config`. `export/versions.py` claims the version
number atomically and publishes the version directory whole.
"""

import dataclasses
import os

import keras
import tensorflow as tf
from absl import logging

from delving.evaluation import dense
from delving.models import from_config
from delving.training import config as config_lib
from delving.training import run_dir
from export import client_lib, image_decoding, request_limits, serving_files, versions
from export.client_lib import SIGNATURE_BYTES, SIGNATURE_IMAGES
from export.versions import ExportError
from pipelines import preprocessing

DEFAULT_TOP_K = 5


@dataclasses.dataclass(frozen=True)
class ServableModel:
    """One trained model and what dense inference needs to know about it."""

    model_dir: str
    model: keras.Model
    config: config_lib.TrainConfig
    classes: tuple  # ((synset, name), ...) in label order

    def dense_inference(self, *, scales=None, **kwargs):
        """`delving.evaluation.dense.DenseInference` with this run's window and
        normalization; `scales` default: the paper's, scaled to the run's crop
        size (`dense.default_scales`); `kwargs`: flip, max_aspect_ratio."""
        return dense.DenseInference(
            self.model,
            window=from_config.dense_window(self.config),
            mean=preprocessing.MEAN_RGB,
            std=from_config.input_std(self.config),
            scales=scales or dense.default_scales(self.config.image_size),
            **kwargs,
        )


def load_servable(model_dir):
    """The final model of a training run (`config.json`, `classes.tsv`,
    `model.keras`, as `delving.train` writes them)."""
    paths = run_dir.paths(model_dir)
    missing = [
        os.path.basename(paths[key])
        for key in ("config", "classes", "model")
        if not tf.io.gfile.exists(paths[key])
    ]
    if missing:
        raise ExportError(
            f"{model_dir}: missing {', '.join(missing)} (is it "
            f"the --model_dir of a finished training run?)"
        )
    cfg = run_dir.load_config(paths["config"])
    classes = tuple((synset, name) for _, synset, name in run_dir.read_classes(model_dir))
    model = keras.saving.load_model(paths["model"], safe_mode=True)
    num_classes = model.output_shape[-1]
    if num_classes != len(classes):
        raise ExportError(
            f"{model_dir}: model has {num_classes} outputs but "
            f"classes.tsv lists {len(classes)} classes"
        )
    return ServableModel(model_dir, model, cfg, classes)


def check_ensemble(servables):
    """All members must classify into the same classes, in the same order."""
    first = servables[0]
    for other in servables[1:]:
        if [s for s, _ in other.classes] != [s for s, _ in first.classes]:
            raise ExportError(
                f"{other.model_dir} and {first.model_dir} have "
                f"different classes.tsv; an ensemble averages "
                f"probabilities of the same classes"
            )


def label_names(classes):
    """The `labels` output: the class name, else its synset, else its index."""
    return [name or synset or str(i) for i, (synset, name) in enumerate(classes)]


class DenseClassifier:
    """The exported computation, also callable in Python (the reference the
    tests compare the served model with).

    Args:
      servables: `ServableModel`s (several: an ensemble).
      scales, flip, max_aspect_ratio: dense testing (`delving.evaluation.dense`).
      top_k: how many classes the top-k outputs hold.
      limits: `export.request_limits.RequestLimits` (default: the defaults).
    """

    def __init__(
        self,
        servables,
        *,
        scales=None,
        flip=True,
        top_k=DEFAULT_TOP_K,
        max_aspect_ratio=dense.DEFAULT_MAX_ASPECT_RATIO,
        limits=None,
    ):
        if not servables:
            raise ExportError("nothing to export: give at least one model_dir")
        check_ensemble(servables)
        self.servables = tuple(servables)
        self.labels = label_names(servables[0].classes)
        self.top_k = max(1, min(top_k, len(self.labels)))
        self.limits = limits or request_limits.RequestLimits()
        self.max_aspect_ratio = max_aspect_ratio
        self._members = [
            s.dense_inference(scales=scales, flip=flip, max_aspect_ratio=max_aspect_ratio)
            for s in self.servables
        ]

    def memory_bound(self, request_bytes=0):
        """`export.request_limits.memory_bound` of this export."""
        return request_limits.memory_bound(self.limits, self._members, request_bytes)

    def probabilities(self, images):
        """uint8 `[B, H, W, 3]` -> float32 `[B, classes]`: the ensemble mean."""
        images = tf.convert_to_tensor(images)
        if self.max_aspect_ratio:  # the members' own crop is then a no-op
            images = dense.limit_aspect_ratio(images, self.max_aspect_ratio)
        # One float32 copy for every scale and member: each would cast its own
        # (the resize casts first), and the graph may run them all at once.
        images = tf.cast(images, tf.float32)
        probs = [member(images) for member in self._members]
        return tf.add_n(probs) / len(probs) if len(probs) > 1 else probs[0]

    def _one_by_one(self, fn, elements):
        """`fn` on each element, one after the other: a request holds one
        image in memory at a time, whatever its size."""
        return tf.map_fn(
            fn,
            elements,
            fn_output_signature=tf.TensorSpec([len(self.labels)], tf.float32),
            parallel_iterations=1,
        )

    def outputs(self, probabilities):
        probabilities = tf.ensure_shape(probabilities, [None, len(self.labels)])
        finite = tf.reduce_all(tf.math.is_finite(probabilities), axis=1)
        check = request_limits.refuse_unless(
            tf.reduce_all(finite),
            "the model's probabilities are not finite (NaN or infinity: a float16 model "
            "that overflowed?); images:",
            tf.where(tf.logical_not(finite))[:, 0],
        )
        with tf.control_dependencies([check]):
            scores, classes = tf.math.top_k(tf.identity(probabilities), k=self.top_k)
        labels = tf.gather(tf.constant(self.labels), classes)
        return {
            "probabilities": probabilities,
            "classes": classes,
            "scores": scores,
            "labels": labels,
        }

    def predict_images(self, images):
        shape = tf.shape(images, out_type=tf.int64)
        checks = [
            request_limits.refuse_unless(
                tf.reduce_all(shape[:3] > 0),
                "images must hold at least one image of at least 1x1 pixels; got shape",
                shape,
            )
        ]
        checks += request_limits.request_checks(
            self.limits, tf.fill(shape[:1], shape[1]), tf.fill(shape[:1], shape[2])
        )
        with tf.control_dependencies(checks):
            images = tf.identity(images)
        probs = self._one_by_one(lambda image: self.probabilities(image[None])[0], images)
        return self.outputs(probs)

    def predict_image_bytes(self, image_bytes):
        check = request_limits.refuse_unless(
            tf.size(image_bytes) > 0, "image_bytes holds no images"
        )
        with tf.control_dependencies([check]):
            image_bytes = tf.identity(image_bytes)
        # Every header first: a request over its limits is refused whole,
        # before any image is decoded.
        headers = image_decoding.Header(
            *tf.map_fn(
                lambda encoded: tuple(image_decoding.inspect(encoded)),
                image_bytes,
                fn_output_signature=(tf.int32, tf.int64, tf.int64, tf.int64),
                parallel_iterations=1,
            )
        )
        checks = request_limits.header_checks(headers) + request_limits.request_checks(
            self.limits, headers.height, headers.width
        )
        with tf.control_dependencies(checks):
            image_bytes = tf.identity(image_bytes)

        # Plain TF code: no AutoGraph conversion, eager or traced alike.
        @tf.autograph.experimental.do_not_convert
        def one(args):
            encoded, header = args[0], image_decoding.Header(*args[1:])
            image = image_decoding.decode_inspected(encoded, header)
            return self.probabilities(image[None])[0]

        return self.outputs(self._one_by_one(one, (image_bytes, *headers)))


def store_each_variable_once(archive):
    """Puts in `archive`'s variable collections the `tf.Variable`s its
    endpoints capture, in place of the Keras variables `track` put there.

    The two are different objects for one buffer, so `tf.saved_model.save`
    writes each weight twice and every loader (TF Serving included)
    restores both, the Keras one's copy unused by the graph. With one object
    per buffer the save keeps one. Call it after the last `track`.
    """
    # Keras stores tracked weights twice (keras-team/keras#23553); a no-op once it does not.
    for name in ("variables", "trainable_variables", "non_trainable_variables"):
        archive.add_variable_collection(name, [_tf_variable(v) for v in getattr(archive, name)])


def _tf_variable(variable):
    """The `tf.Variable` under a Keras variable (a `tf.Variable` as it is)."""
    value = getattr(variable, "value", None)
    return value if isinstance(value, tf.Variable) else variable


def build_archive(classifier):
    """A `keras.export.ExportArchive` with both signatures, each variable stored once."""
    archive = keras.export.ExportArchive()
    for servable in classifier.servables:
        archive.track(servable.model)
    store_each_variable_once(archive)

    # The argument names are the signatures' input names.
    def serving_default(image_bytes):
        return classifier.predict_image_bytes(image_bytes)

    def predict_images(images):
        return classifier.predict_images(images)

    archive.add_endpoint(
        SIGNATURE_BYTES,
        serving_default,
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
    )
    archive.add_endpoint(
        SIGNATURE_IMAGES,
        predict_images,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
    )
    return archive


def export_saved_model(
    model_dirs,
    export_base,
    *,
    version=None,
    model_name=None,
    scales=None,
    flip=True,
    top_k=DEFAULT_TOP_K,
    max_aspect_ratio=dense.DEFAULT_MAX_ASPECT_RATIO,
    limits=None,
    verbose=False,
):
    """Exports one model, or an ensemble of several, for TF Serving.

    Args:
      model_dirs: a model_dir or a list of them (an ensemble).
      export_base: the server's base path (local, or remote with `version`);
        versions go to `<export_base>/<N>`.
      version: N; default one more than the largest existing version.
      model_name: the name in `models.config`; default basename(export_base).
      scales, flip, max_aspect_ratio: dense testing (`delving.evaluation.dense`); scales
        default: each run's own (`ServableModel.dense_inference`).
      top_k: how many classes the `classes`/`scores`/`labels` outputs hold.
      limits: `export.request_limits.RequestLimits`; requests over them are
        refused with InvalidArgument.
      verbose: let `ExportArchive.write_out` list the variables.

    Returns:
      The version directory written.
    """
    if isinstance(model_dirs, (str, os.PathLike)):
        model_dirs = [model_dirs]
    versions.check_base(export_base, version)
    if tf.io.gfile.exists(export_base) and not tf.io.gfile.isdir(export_base):
        raise ExportError(f"--export_base={export_base} is a file, not a directory")
    classifier = DenseClassifier(
        [load_servable(d) for d in model_dirs],
        scales=scales,
        flip=flip,
        top_k=top_k,
        max_aspect_ratio=max_aspect_ratio,
        limits=limits,
    )
    return write_export(
        classifier, export_base, version=version, model_name=model_name, verbose=verbose
    )


def write_export(classifier, export_base, *, version=None, model_name=None, verbose=False):
    """Writes `classifier` (a `DenseClassifier`) as `<export_base>/<version>`
    with its warmup requests, and `<export_base>/models.config`."""
    export_base = versions.normalize(export_base)
    model_name = model_name or client_lib.default_model_name(export_base)

    def write(directory):
        build_archive(classifier).write_out(directory, verbose=verbose)
        serving_files.write_warmup_requests(directory, model_name=model_name)

    final_dir = versions.write_version(
        export_base, write, version=None if version is None else int(version)
    )
    serving_files.write_models_config(export_base, model_name=model_name)
    bound = classifier.memory_bound()
    logging.info(
        "requests limited to %s; worst-case memory per request: %s (docs/SERVING.md)",
        classifier.limits,
        f"{bound['total'] / 2**30:.2f} GiB + 3 x the request's bytes" if bound else "unbounded",
    )
    return final_dir
