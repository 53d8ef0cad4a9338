"""Naming bad input without checking each image: the bookkeeping of `dataset_ops`.

A bad record fails with one line naming it ("cannot decode the image in
record 17 of /data/train-00003-of-01024"), or with `skip_corrupt=True`
undecodable images are dropped and a running count is printed. A guard per
image would cost ~20 us each (a tf.data function call, see
`dataset_ops`), so instead:

1. `number`: records are numbered on batches of `BOOKKEEPING_BATCH`; each
   carries its `origin` (index in its file, file name) and the origin of the
   record before it (`previous`). The number is also the image's
   augmentation seed. Finite streams get a sentinel record appended, so that
   a failure in the very last image is found too.
2. `decoder`: the decoding map (the only per-image function) runs in order
   and is followed by `ignore_errors`, so an image that fails to decode
   leaves a gap in the numbers. Records already known to be bad (a missing
   feature, a truncated shard: the reader's `oks` flags) and the sentinel
   decode a placeholder instead, so only undecodable images leave gaps.
3. `batch_and_check`: on the output batches a scan finds the gaps (the
   element after a gap names the dropped image: its `previous`), then the
   flags, labels and gaps are asserted and the sentinel dropped.
"""

import base64
import dataclasses
import functools
import sys
from collections.abc import Callable
from typing import NamedTuple

import tensorflow as tf

from common import errors

# Records per call of the numbering before the decoding map (the checks after
# it run on the output batches).
BOOKKEEPING_BATCH = 32
# A 1x1 PNG, decoded in place of a record already known to be bad.
_PLACEHOLDER_IMAGE = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
    "60e6kgAAAABJRU5ErkJggg=="
)
# The origin index of the sentinel appended to a finite stream.
_NOT_AN_EXAMPLE = -1


class Origin(NamedTuple):
    """Where a record came from: its int64 index in its file, and the file."""

    index: tf.Tensor
    source: tf.Tensor


class Numbered(NamedTuple):
    """A record before decoding."""

    raw: tuple  # the reader's record, for its parse_fn
    count: tf.Tensor  # int64 number: augmentation seed and gap detector
    origin: Origin
    previous: Origin  # the record numbered before this one


class Decoded(NamedTuple):
    """A record after the decoding map (batched: one row per image)."""

    image: tf.Tensor
    shift: tf.Tensor  # lighting shift [3]
    label: tf.Tensor  # int64, as stored
    count: tf.Tensor
    oks: tf.Tensor  # bool [len(checks)]: the reader's checks passed
    real: tf.Tensor  # False for the sentinel
    origin: Origin
    previous: Origin


class Counted(NamedTuple):
    """A batch of `Decoded` with, per image, how many images before it failed to decode."""

    decoded: Decoded
    dropped: tf.Tensor


def origin_parts(index, source):
    """The words naming a record, for messages: `record 17 of <source>`."""
    return ("record ", index, " of ", source)


@dataclasses.dataclass(frozen=True)
class Bookkeeping:
    """The three bookkeeping stages around one reader's decoding map.

    Attributes:
      plan: the `dataset_ops.InputPlan`. Image `i` of input pipeline `p` gets
        number `p + i * num_pipelines`, so two pipelines never draw the same
        augmentation.
      checks: one `fn(index, source, label) -> message parts` per flag of the
        reader's `oks`, the error raised when that flag is False.
      label_offset, num_classes: labels must lie in
        `[label_offset, label_offset + num_classes)`; they come out 0-based.
      skip_corrupt: drop undecodable images (logged with a running count).
      check_images: False: no `ignore_errors`, no sentinel; a bad image then
        fails with TensorFlow's own error, which does not name the file.
      finite: whether the stream ends (False for a repeated one).
      seed_per_worker: each image's seed is `[random, number]`, the first
        drawn where the graph runs (`InputConfig.seed_per_worker`).
    """

    plan: object
    checks: tuple[Callable, ...]
    label_offset: int
    num_classes: int
    skip_corrupt: bool
    check_images: bool
    finite: bool
    seed_per_worker: bool = False

    @property
    def sentinel(self):
        return self.check_images and self.finite

    def number(self, ds):
        """`(raw, (index, source))` elements -> `Numbered` elements."""
        if self.sentinel:
            ds = ds.concatenate(tf.data.Dataset.from_tensors(_sentinel(ds.element_spec)))
        start = (tf.constant(0, tf.int64), tf.constant(-1, tf.int64), tf.constant(""))
        step = functools.partial(
            _number, seed_start=self.plan.pipeline_id, seed_step=self.plan.num_pipelines
        )
        return ds.batch(BOOKKEEPING_BATCH).scan(start, step).unbatch()

    def decoder(self, parse_fn, preprocess_fn):
        """The decoding map: `Numbered -> Decoded`.

        Args:
          parse_fn: `fn(*raw) -> (image_bytes, label, oks)`.
          preprocess_fn: `fn(image_bytes, seed pair) -> (image, shift)`.
        """
        seed = self.plan.seed

        def decode(record: Numbered) -> Decoded:
            image_bytes, label, oks = parse_fn(*record.raw)
            real = record.origin.index != _NOT_AN_EXAMPLE
            image_bytes = tf.cond(
                tf.logical_and(tf.reduce_all(oks), real),
                lambda: image_bytes,
                lambda: _PLACEHOLDER_IMAGE,
            )
            first = seed
            if self.seed_per_worker:
                # Seeds 0, 0: the kernel seeds itself from the OS, each worker its own.
                first = tf.raw_ops.RandomUniformInt(
                    shape=tf.constant([], tf.int32),
                    minval=tf.constant(0, tf.int64),
                    maxval=tf.constant(2**31 - 1, tf.int64),
                    seed=0,
                    seed2=0,
                )
            seed_pair = tf.stack([tf.cast(first, tf.int64), record.count])
            image, shift = preprocess_fn(image_bytes, tf.cast(seed_pair % (2**31 - 1), tf.int32))
            return Decoded(
                image=image,
                shift=shift,
                label=tf.cast(label, tf.int64),
                count=record.count,
                oks=tf.logical_or(oks, tf.logical_not(real)),
                real=real,
                origin=record.origin,
                previous=record.previous,
            )

        return decode

    def batch_and_check(self, ds):
        """`Decoded` elements -> checked batches `(images, shifts, labels)`.

        With a sentinel the last batch may hold it: everything is batched, the
        sentinel dropped after the checks, then the remainder (and the static
        batch size, lost on the way, is restored).
        """
        plan = self.plan
        ds = ds.batch(plan.batch_size, drop_remainder=plan.drop_remainder and not self.sentinel)
        start = (tf.constant(plan.pipeline_id, tf.int64), tf.constant(0, tf.int64))
        count = functools.partial(
            _count_dropped, seed_step=plan.num_pipelines, skip_corrupt=self.skip_corrupt
        )
        ds = ds.scan(start, count).map(self._check)
        if self.sentinel and plan.drop_remainder:
            size = plan.batch_size
            ds = ds.filter(lambda images, shifts, labels: tf.equal(tf.size(labels), size)).map(
                lambda *batch: tuple(tf.ensure_shape(t, [size, *t.shape[1:]]) for t in batch)
            )
        elif self.sentinel:
            ds = ds.filter(lambda images, shifts, labels: tf.size(labels) > 0)
        return ds

    def _label_message(self, index, source, label):
        last = self.label_offset + self.num_classes - 1
        return (
            "label ",
            label,
            f" outside {self.label_offset}..{last} in ",
            *origin_parts(index, source),
            " (check num_classes and label_offset)",
        )

    def _check(self, counted: Counted):
        """Asserts a batch's flags and labels (naming its first bad element), drops
        the sentinel, makes labels 0-based int32. Not inside the scan: a failing
        step would leave the scan's count behind and make the next batch look like
        a gap."""
        b = counted.decoded
        label_ok = tf.logical_or(
            tf.logical_not(b.real),
            tf.logical_and(
                b.label >= self.label_offset, b.label < self.label_offset + self.num_classes
            ),
        )
        oks = tf.concat([b.oks, label_ok[:, tf.newaxis]], axis=1)

        def first(bad, *tensors):
            i = tf.argmax(bad, output_type=tf.int32)
            return [t[i] for t in tensors]

        asserts = [
            errors.assert_that(
                tf.reduce_all(oks[:, i]),
                *message(*first(tf.logical_not(oks[:, i]), *b.origin, b.label)),
            )
            for i, message in enumerate((*self.checks, self._label_message))
        ]
        if not self.skip_corrupt:
            asserts.append(
                errors.assert_that(
                    tf.reduce_all(counted.dropped == 0),
                    "cannot decode the image in ",
                    *origin_parts(*first(counted.dropped > 0, *b.previous)),
                    # Parse failures leave the same gap: say so (issue 16).
                    " (an undecodable image, or a record that is no tf.train.Example with "
                    "a bytes image/encoded; pass --skip_corrupt, skip_corrupt=True, to "
                    "skip such records)",
                )
            )
        label = tf.cast(b.label - self.label_offset, tf.int32)
        with tf.control_dependencies(asserts):
            if not self.sentinel:
                return tuple(tf.identity(t) for t in (b.image, b.shift, label))
            return tf.cond(  # Copies the images only in the batch with the sentinel.
                tf.reduce_all(b.real),
                lambda: (b.image, b.shift, label),
                lambda: tuple(tf.boolean_mask(t, b.real) for t in (b.image, b.shift, label)),
            )


def _sentinel(element_spec):
    """An element of `element_spec` whose origin index is -1."""
    zeros = lambda spec: tf.zeros([d or 0 for d in spec.shape], spec.dtype)
    raw, (index, source) = tf.nest.map_structure(zeros, element_spec)
    return raw, (tf.constant(_NOT_AN_EXAMPLE, index.dtype), source)


def _number(state, batch, seed_start, seed_step):
    """Scan step over a batch of records: their numbers and previous origins."""
    done, last_index, last_source = state
    raw, (index, source) = batch
    size = tf.shape(index, out_type=tf.int64)[0]
    numbered = Numbered(
        raw=raw,
        count=seed_start + (done + tf.range(size)) * seed_step,
        origin=Origin(index, source),
        previous=Origin(
            tf.concat([[last_index], index[:-1]], 0), tf.concat([[last_source], source[:-1]], 0)
        ),
    )
    return (done + size, index[-1], source[-1]), numbered


def _count_dropped(state, batch: Decoded, seed_step, skip_corrupt):
    """Scan step over a batch: how many images before each one failed to decode.

    `ignore_errors` dropped them, leaving gaps in the numbers; the element
    after a gap names the last of them (its `previous`). With `skip_corrupt`
    they are logged and counted here, and zeros go on to the assertion.
    """
    expected, skipped = state
    count = batch.count
    dropped = (count - tf.concat([[expected - seed_step], count[:-1]], 0)) // seed_step - 1
    if skip_corrupt:
        skipped += tf.reduce_sum(dropped)
        last = (
            tf.shape(dropped)[0] - 1 - tf.argmax(tf.reverse(dropped, [0]) > 0, output_type=tf.int32)
        )

        def log():
            tf.print(
                tf.strings.join(
                    [
                        "pipelines: skipped ",
                        tf.strings.as_string(tf.reduce_sum(dropped)),
                        " undecodable image(s), the last in record ",
                        tf.strings.as_string(batch.previous.index[last]),
                        " of ",
                        batch.previous.source[last],
                        " (",
                        tf.strings.as_string(skipped),
                        " skipped so far)",
                    ]
                ),
                output_stream=sys.stderr,
            )
            return tf.constant(0)

        tf.cond(tf.reduce_any(dropped > 0), log, lambda: tf.constant(0))
        dropped = tf.zeros_like(dropped)
    return (count[-1] + seed_step, skipped), Counted(batch, dropped)
