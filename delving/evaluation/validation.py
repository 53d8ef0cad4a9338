"""Validation-set evaluation under any strategy, with a registry of test views.

A *view* says how one image becomes class probabilities: which tensors the
input pipeline makes from it, and how the model scores them. Adding a way of
testing is one `register_view(View(...))` call; `Evaluator` does the rest
(distribution over replicas, several scales, loss and top-1/top-5 error).

Views here (the paper, Sec. 4):

- `center`: shorter side resized to the scale, the centre crop.
- `10view`: the 4 corner crops and the centre crop, and their mirrors,
  probabilities averaged.

`delving.evaluation.dense` registers `dense` (the paper's dense multi-view testing on
feature maps) the same way. With several scales (`scales=(256, 384, 480)`)
the probabilities of each image are also averaged over the scales, the
paper's multi-scale combination.
"""

import dataclasses
import functools
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from common import progress as _progress
from delving.evaluation import dense
from pipelines import config as input_config
from pipelines import preprocessing


@dataclasses.dataclass(frozen=True)
class View:
    """One way of testing an image.

    Attributes:
      name: the `--views` value.
      description: one line for --help.
      make_dataset: `fn(source, split, *, scale, image_size, batch_size,
        input_context, dtype) -> tf.data.Dataset` of `(inputs, labels)`
        per-replica batches, where `source` is a `pipelines.sources.DataSource`
        and `batch_size` is global (the `pipelines` readers divide it by the
        replicas of `input_context`).
      scores: `fn(model, inputs, *, image_size) -> float32 [batch, classes]`
        probabilities, `image_size` the training crop side; traced inside a
        `tf.function`, once per replica.
      max_batch_size: a cap on the per-replica batch (None: no cap), e.g. 1
        for views whose inputs differ in size between images.
    """

    name: str
    description: str
    make_dataset: Callable
    scores: Callable
    max_batch_size: int | None = None


VIEWS: dict = {}


def register_view(view: View) -> View:
    VIEWS[view.name] = view
    return view


def _probabilities(logits):
    return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)


def _center_dataset(source, split, *, scale, image_size, batch_size, input_context, dtype):
    config = source.input.replace(
        batch_size=batch_size, image_size=image_size, resize_size=scale, dtype=dtype
    )
    return source.dataset(split, config, is_training=False, input_context=input_context)


def _ten_view_dataset(source, split, *, scale, image_size, batch_size, input_context, dtype):
    images = source.resized_images(split, resize_size=scale, input_context=input_context)
    crops = images.map(
        lambda image, label: (tf.cast(preprocessing.ten_crop(image, image_size), dtype), label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if input_context:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    return crops.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _ten_view_scores(model, views, image_size):
    del image_size  # the crops are already that size
    shape = tf.shape(views)  # [batch, 10, S, S, 3]
    logits = model(tf.reshape(views, tf.concat([[-1], shape[2:]], 0)), training=False)
    probs = _probabilities(logits)
    return tf.reduce_mean(tf.reshape(probs, [shape[0], shape[1], -1]), axis=1)


register_view(
    View(
        "center",
        "shorter side to the scale, centre crop",
        _center_dataset,
        lambda model, x, image_size: _probabilities(model(x, training=False)),
    )
)
register_view(
    View(
        "10view",
        "4 corners + centre and their mirrors, averaged (Sec. 4)",
        _ten_view_dataset,
        _ten_view_scores,
    )
)
# The function the exported SavedModels run (delving.evaluation.dense), on whole images.
register_view(
    View(
        "dense",
        "every window of the conv map the size the head saw in training (14x14 for"
        " models A/B/C at 224 crops) and flips, averaged (Sec. 4)",
        dense.evaluation_dataset,
        dense.evaluation_scores,
        max_batch_size=1,
    )
)


class Evaluator:
    """Top-1/top-5 error and loss of `model` on a validation split.

    Builds the distributed dataset and the compiled step once; `run()` can be
    called after every epoch.

    Args:
      model: a Keras classifier returning logits.
      source: a `pipelines.sources.DataSource`.
      view: a name in `VIEWS`.
      scales: shorter-side sizes; probabilities are averaged over them.
      image_size: crop side.
      batch_size: global batch size.
      steps: at most this many batches (None: the whole split).
      strategy: a `tf.distribute.Strategy` (default: the current one).
      split: which split (default 'validation').
      dtype: input dtype (the compute dtype of the mixed-precision policy).
      jit_compile: XLA-compile the model's forward pass (views of fixed-size
        crops only; whole images of every size would compile per size).
    """

    def __init__(
        self,
        model,
        source,
        *,
        view="center",
        scales=(input_config.RESIZE_SIZE,),
        image_size=input_config.IMAGE_SIZE,
        batch_size=128,
        steps=None,
        strategy=None,
        split="validation",
        dtype="float32",
        jit_compile=False,
    ):
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")
        self.view, self.model, self.steps = VIEWS[view], model, steps
        self.split = split
        self.where = getattr(source, "data_dir", None) or getattr(source, "tfds_name", None)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.scales = tuple(int(s) for s in scales)
        replicas = self.strategy.num_replicas_in_sync
        per_replica = max(1, batch_size // replicas)
        if self.view.max_batch_size:
            per_replica = min(per_replica, self.view.max_batch_size)
        self.batch_size = per_replica * replicas

        def dataset_fn(context):
            per_scale = [
                self.view.make_dataset(
                    source,
                    split,
                    scale=s,
                    image_size=image_size,
                    batch_size=self.batch_size,
                    input_context=context,
                    dtype=dtype,
                )
                for s in self.scales
            ]
            if len(per_scale) == 1:
                return per_scale[0].map(lambda x, y: ((x,), y))
            return tf.data.Dataset.zip(tuple(per_scale)).map(
                lambda *pairs: (tuple(p[0] for p in pairs), pairs[0][1])
            )

        self.dataset = self.strategy.distribute_datasets_from_function(dataset_fn)

        scores = functools.partial(self.view.scores, model, image_size=image_size)
        if jit_compile and not self.view.max_batch_size:  # fixed-size crops only
            scores = tf.function(scores, jit_compile=True, autograph=False)

        def replica_step(inputs, labels):
            probs = tf.add_n([scores(x) for x in inputs])
            probs /= len(inputs)
            labels = tf.cast(labels, tf.int32)
            k = tf.minimum(5, tf.shape(probs)[-1])
            picked = tf.gather(probs, labels, axis=1, batch_dims=1)
            nll = -tf.math.log(tf.maximum(picked, 1e-12))
            # Rank of the true class: 1 + number of classes scored higher.
            rank = tf.reduce_sum(tf.cast(probs > picked[:, None], tf.int32), axis=1)
            # NaN compares false with everything (rank 0): an image whose
            # probabilities are not all finite (float16 overflow) is wrong.
            finite = tf.reduce_all(tf.math.is_finite(probs), axis=1)
            return (
                tf.reduce_sum(nll),
                tf.reduce_sum(tf.cast((rank < 1) & finite, tf.float32)),
                tf.reduce_sum(tf.cast((rank < k) & finite, tf.float32)),
                tf.cast(tf.shape(labels)[0], tf.float32),
                tf.reduce_sum(tf.cast(tf.logical_not(finite), tf.float32)),
            )

        # No AutoGraph: the views' functions branch only on Python values
        # (explicit tf.cond otherwise), and converting them was behind the
        # suite's one flaky failure (an AutoGraph-converted `get_head` once
        # received a string instead of the model).
        # One trace for every batch: the dataset's spec leaves the image sizes
        # unknown, so the dense view (whole images of every size) does not
        # retrace per image, as the exported SavedModel does not.
        @tf.function(autograph=False, input_signature=[self.dataset.element_spec])
        def step(batch):
            out = self.strategy.run(replica_step, args=batch)
            return [self.strategy.reduce("SUM", x, axis=None) for x in out]

        self._step = step

    def run(self, progress=False, stop=None) -> dict | None:
        """{'loss', 'top1_error', 'top5_error', 'count', 'nonfinite'} over the
        split (`nonfinite`: images whose probabilities held a NaN or an
        infinity, counted as errors); None when `stop()`, checked between
        batches, turned true first."""
        iterator = iter(self.dataset)
        total = np.zeros(5)
        # The values shown are running means already: stateful, not re-averaged.
        bar = (
            _progress.progress_bar(self.steps, stateful_metrics=("top1_err", "top5_err"))
            if progress
            else None
        )
        batches = 0
        while self.steps is None or batches < self.steps:
            if stop is not None and stop():
                return None
            batch = iterator.get_next_as_optional()
            if not batch.has_value():
                break
            total += [x.numpy() for x in self._step(batch.get_value())]
            batches += 1
            if bar:
                bar.update(
                    batches,
                    [("top1_err", 1 - total[1] / total[3]), ("top5_err", 1 - total[2] / total[3])],
                )
        if bar and (self.steps is None or batches < self.steps):  # else already final
            bar.update(batches, finalize=True)
        n = total[3]
        if not n:
            from common import errors

            raise errors.DataError(
                f"the {self.split} split of {self.where} gave no images "
                "(no records, or every one skipped as corrupt)"
            )
        return {
            "loss": total[0] / n,
            "top1_error": 1 - total[1] / n,
            "top5_error": 1 - total[2] / n,
            "count": int(n),
            "nonfinite": int(total[4]),
        }


def evaluate(model, source, **kwargs) -> dict:
    """One-shot `Evaluator(model, source, **kwargs).run()`."""
    progress = kwargs.pop("progress", False)
    return Evaluator(model, source, **kwargs).run(progress=progress)


def load_model(model_dir, *, checkpoint=None):
    """The model of a model_dir: `model.keras`, else config + checkpoint.

    `model.keras` exists once training has finished; before that (or when a
    `checkpoint` path is asked for) the network is rebuilt from `config.json`
    and the checkpoint's weights are restored into it.

    Returns:
      (model, TrainConfig)
    """
    import keras_layers  # noqa: F401  (registers the custom layers)
    from delving.models import from_config
    from delving.training import run_dir

    files = run_dir.paths(model_dir)
    if not tf.io.gfile.exists(files["config"]):
        from common import errors

        raise errors.DataError(f"{model_dir} is not a training model_dir (no {files['config']})")
    cfg = run_dir.load_config(files["config"])
    if checkpoint is None and tf.io.gfile.exists(files["model"]):
        return keras.saving.load_model(files["model"]), cfg
    if checkpoint and not tf.io.gfile.exists(checkpoint + ".index"):
        from common import errors

        raise errors.DataError(
            f"--checkpoint={checkpoint} does not exist (no {checkpoint}.index); "
            f"name a checkpoint prefix such as {files['checkpoints']}/ckpt-<step>"
        )
    checkpoint = checkpoint or tf.train.latest_checkpoint(files["checkpoints"])
    if not checkpoint:
        from common import errors

        raise errors.DataError(f"{model_dir} has neither model.keras nor a checkpoint yet")
    model = from_config.build(cfg)
    logger = tf.get_logger()
    level = logger.level
    # A checkpoint of another network: one DataError, not a warning per value.
    logger.setLevel("ERROR")
    try:  # every weight of this network must come from the checkpoint
        tf.train.Checkpoint(model=model).restore(
            checkpoint
        ).expect_partial().assert_existing_objects_matched()
        logger.setLevel(level)
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        from common import errors

        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise errors.DataError(
            f"--checkpoint={checkpoint} does not hold this run's {cfg.model} weights: {first}"
        ) from None
    return model, cfg
