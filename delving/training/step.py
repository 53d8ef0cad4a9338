"""The compiled training step: the paper's objective and one SGD update.

The objective is the paper's (Sec. 4): softmax cross-entropy averaged over
the *global* batch (`tf.nn.compute_average_loss`), whose gradients the
optimizer all-reduces, plus Caffe-style weight decay on conv and fc kernels,
which the optimizer adds to the reduced gradient inside its momentum update
(`delving.training.optimizer.CaffeSGD`; the reported loss is the data term).

The batches arrive as uint8 crops and lighting shifts and are normalised
here, on the device (the host's CPUs stay on decoding).
"""

import keras
import tensorflow as tf

from delving.models import from_config
from pipelines import dataset_ops, preprocessing


def make_train_step(cfg, state, strategy, *, jit_compile, stop):
    """`train_steps(iterator, count) -> float32 [n, 4]`: per step the mean
    loss, top-1 hits, top-5 hits and images (`setup.EpochSums.add` sums them),
    for the n <= count steps run before `stop` (a bool variable that a signal
    sets from another thread) was found set.

    Each step is one SGD step on the next batch of every replica: the paper's
    objective (module docstring), gradients all-reduced by `apply_gradients`.
    """
    model, optimizer = state.model, state.optimizer
    topk = min(5, cfg.num_classes)
    mean, std = preprocessing.MEAN_RGB, from_config.input_std(cfg)
    dtype = keras.mixed_precision.global_policy().compute_dtype

    @tf.function(jit_compile=jit_compile)
    def gradients(batch, labels):
        """Forward and backward pass of one replica (XLA-compilable)."""
        images = tf.cast(
            preprocessing.normalize(
                batch[dataset_ops.PIXELS], mean, std, shift=batch[dataset_ops.LIGHTING]
            ),
            dtype,
        )
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=labels, logits=logits
            )
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=cfg.batch_size)
            scaled = optimizer.scale_loss(loss)  # the loss itself unless float16
        grads = tape.gradient(scaled, model.trainable_variables)
        return grads, loss, _correct(logits, labels, topk)

    def replica_step(batch, labels):
        grads, loss, (top1, top5) = gradients(batch, labels)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, top1, top5, tf.shape(labels)[0]

    @tf.function
    def train_steps(iterator, count):
        """`count` steps in one call (a graph loop, as Keras' `steps_per_execution`
        and Model Garden's orbit do): the host neither waits for nor dispatches
        each step. Returns one row (loss, top-1 hits, top-k hits, images) per
        step, float32."""
        rows = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=(4,))
        for i in tf.range(count):
            if stop:  # read before every step: a stop lands on a step boundary
                break
            out = strategy.run(replica_step, args=next(iterator))
            out = [strategy.reduce("SUM", x, axis=None) for x in out]
            rows = rows.write(i, tf.stack([tf.cast(x, tf.float32) for x in out]))
        return rows.stack()

    return train_steps


def _correct(logits, labels, k):
    """Number of top-1 and top-k hits in a batch (float32)."""
    labels = tf.cast(labels, tf.int32)
    top1 = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, 1), tf.float32))
    topk = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, k), tf.float32))
    return top1, topk
