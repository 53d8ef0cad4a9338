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
empty strings and unknown formats are reported by name, and images whose
header claims more than `max_image_pixels` pixels are refused before decoding
(a 60000x60000 PNG is a few KB on the wire and 10 GB decoded).

After the SavedModel, `export/serving_files.py` adds
`assets.extra/tf_serving_warmup_requests` (replayed by the server at load)
and `export_base/models.config`. The version directory is written under a
temporary name and renamed into place, so a server polling `export_base`
never loads a half-written version.
"""

import dataclasses
import os
import re
import shutil

import keras
import tensorflow as tf

from common import files
from delving.evaluation import dense
from delving.models import from_config
from delving.training import config as config_lib
from delving.training import run_dir
from export import client_lib, image_decoding, serving_files
from export.client_lib import SIGNATURE_BYTES, SIGNATURE_IMAGES
from pipelines import preprocessing

DEFAULT_TOP_K = 5
#: Larger images (by their header) are refused: 100 MP is 300 MB decoded.
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000


class ExportError(ValueError):
    """A user mistake in what to export (missing files, mismatched classes)."""


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
    tests compare the served model with)."""

    def __init__(
        self,
        servables,
        *,
        scales=None,
        flip=True,
        top_k=DEFAULT_TOP_K,
        max_aspect_ratio=dense.DEFAULT_MAX_ASPECT_RATIO,
        max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
    ):
        if not servables:
            raise ExportError("nothing to export: give at least one model_dir")
        check_ensemble(servables)
        self.servables = tuple(servables)
        self.labels = label_names(servables[0].classes)
        self.top_k = max(1, min(top_k, len(self.labels)))
        self.max_image_pixels = max_image_pixels
        self._members = [
            s.dense_inference(scales=scales, flip=flip, max_aspect_ratio=max_aspect_ratio)
            for s in self.servables
        ]

    def probabilities(self, images):
        """uint8 `[B, H, W, 3]` -> float32 `[B, classes]`: the ensemble mean."""
        probs = [member(images) for member in self._members]
        return tf.add_n(probs) / len(probs) if len(probs) > 1 else probs[0]

    def outputs(self, probabilities):
        probabilities = tf.ensure_shape(probabilities, [None, len(self.labels)])
        scores, classes = tf.math.top_k(probabilities, k=self.top_k)
        labels = tf.gather(tf.constant(self.labels), classes)
        return {
            "probabilities": probabilities,
            "classes": classes,
            "scores": scores,
            "labels": labels,
        }

    def predict_images(self, images):
        shape = tf.shape(images)
        check = _refuse_unless(
            tf.reduce_all(shape[:3] > 0),
            "images must hold at least one image of at least 1x1 pixels; got shape",
            shape,
        )
        with tf.control_dependencies([check]):
            return self.outputs(self.probabilities(tf.identity(images)))

    def predict_image_bytes(self, image_bytes):
        check = _refuse_unless(tf.size(image_bytes) > 0, "image_bytes holds no images")
        with tf.control_dependencies([check]):
            image_bytes = tf.identity(image_bytes)

        # Plain TF code: no AutoGraph conversion, eager or traced alike.
        @tf.autograph.experimental.do_not_convert
        def one(encoded):
            image = image_decoding.decode_image(encoded, max_pixels=self.max_image_pixels)
            return self.probabilities(image[None])[0]

        num_classes = len(self.labels)
        probs = tf.map_fn(
            one, image_bytes, fn_output_signature=tf.TensorSpec([num_classes], tf.float32)
        )
        return self.outputs(probs)


def _refuse_unless(condition, message, *values):
    """An InvalidArgument with `message` (one sentence, then any `values`)
    when `condition` fails: what a client sees instead of an assertion
    deep inside the resizing ops."""
    return tf.debugging.Assert(condition, [message, *values], summarize=8)


def build_archive(classifier):
    """A `keras.export.ExportArchive` with both signatures."""
    archive = keras.export.ExportArchive()
    for servable in classifier.servables:
        archive.track(servable.model)

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


def next_version(export_base):
    """1 + the largest integer-named version under `export_base` (1 if none)."""
    if not os.path.isdir(export_base):
        return 1
    versions = [int(name) for name in os.listdir(export_base) if re.fullmatch(r"\d+", name)]
    return max(versions, default=0) + 1


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
    max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
    verbose=False,
):
    """Exports one model, or an ensemble of several, for TF Serving.

    Args:
      model_dirs: a model_dir or a list of them (an ensemble).
      export_base: the server's base path (local); versions go to
        `<export_base>/<N>`.
      version: N; default one more than the largest existing version.
      model_name: the name in `models.config`; default basename(export_base).
      scales, flip, max_aspect_ratio: dense testing (`delving.evaluation.dense`); scales
        default: each run's own (`ServableModel.dense_inference`).
      top_k: how many classes the `classes`/`scores`/`labels` outputs hold.
      max_image_pixels: larger images are refused with InvalidArgument.
      verbose: let `ExportArchive.write_out` list the variables.

    Returns:
      The version directory written.
    """
    if isinstance(model_dirs, (str, os.PathLike)):
        model_dirs = [model_dirs]
    if os.path.exists(export_base) and not os.path.isdir(export_base):
        raise ExportError(f"--export_base={export_base} is a file, not a directory")
    classifier = DenseClassifier(
        [load_servable(d) for d in model_dirs],
        scales=scales,
        flip=flip,
        top_k=top_k,
        max_aspect_ratio=max_aspect_ratio,
        max_image_pixels=max_image_pixels,
    )
    return write_export(
        classifier, export_base, version=version, model_name=model_name, verbose=verbose
    )


def _remove_killed_exports(export_base):
    """Removes `.tmp-<version>-<pid>` directories of exports killed on this host."""
    for name in os.listdir(export_base):
        match = re.fullmatch(r"\.tmp-\d+-(\d+)", name)
        if match and not files.pid_alive(int(match.group(1))):
            shutil.rmtree(os.path.join(export_base, name), ignore_errors=True)


def write_export(classifier, export_base, *, version=None, model_name=None, verbose=False):
    """Writes `classifier` (a `DenseClassifier`) as `<export_base>/<version>`
    with its warmup requests, and `<export_base>/models.config`."""
    export_base = os.path.abspath(export_base)
    model_name = model_name or client_lib.default_model_name(export_base)
    version = next_version(export_base) if version is None else int(version)
    final_dir = os.path.join(export_base, str(version))
    if os.path.exists(final_dir):
        raise ExportError(
            f"{final_dir} already exists; pick another --version "
            f"or leave it out for the next free one"
        )
    # Not integer-named: the server ignores it until the rename below.
    tmp_dir = os.path.join(export_base, f".tmp-{version}-{os.getpid()}")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(export_base, exist_ok=True)
    _remove_killed_exports(export_base)
    try:
        build_archive(classifier).write_out(tmp_dir, verbose=verbose)
        serving_files.write_warmup_requests(tmp_dir, model_name=model_name)
        os.rename(tmp_dir, final_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    serving_files.write_models_config(export_base, model_name=model_name)
    return final_dir
