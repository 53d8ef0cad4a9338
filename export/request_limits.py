"""What one request to the served model may ask for, and the memory that leaves it.

`RequestLimits` are set at export (`export.export_saved_model` flags) and
checked inside the graph before any image is decoded (for `image_bytes`,
from every image's header; for `images`, from the tensor's shape). A request
over one is refused whole with `InvalidArgument`:

- `max_images`: images in one request, either signature.
- `max_pixels`: decoded pixels of all its images together.
- `max_image_pixels`: decoded pixels of any one image.

The images of a request run one after the other, so a request holds one
image's memory at a time; `max_images` and `max_pixels` bound its time.
`memory_bound` is the worst case those limits allow, in bytes (the formula,
its terms and the default's number: docs/SERVING.md):

    3 x request bytes                          the request, its tensor, and
                                               its images split one by one
  + 8 MiB                                      a GIF's first-frame search
  + 18 x P                                     decoded image (3 bytes a pixel),
                                               its aspect-ratio crop (3) and
                                               float32 copy (12); P = the
                                               most pixels one image may have
  + sum over models m and scales s of
      12 x s x sqrt(r x P)                     the antialiased resize's buffer
    + dense(m, s)                              the dense pass on an s x r*s
                                               image and its flip

with `r` the aspect-ratio limit and `dense(m, s)` every activation of the
trunk, the window features and fc outputs of that pass added up as if all
were alive at once (TensorFlow frees each after its last use, so this
over-counts). Scales and models are added because the graph may run them
at once.
"""

import dataclasses
import math

import keras
import tensorflow as tf

from delving.evaluation import dense
from delving.models import networks
from export import image_decoding
from keras_layers.spatial_pyramid_pooling import bin_edges

DEFAULT_MAX_IMAGES = 32
#: 100 MP: a 10000 x 10000 photo, or 32 of 3 MP.
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
#: Bytes per pixel of one image in flight: uint8 decoded + crop, float32 copy.
BYTES_PER_PIXEL = 3 + 3 + 12
#: Copies of the request's bytes: the request, the tensor made from it, and
#: its images split for one-by-one processing.
REQUEST_COPIES = 3
_FLOAT32 = 4


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """Per-request caps; None (or 0) lifts one."""

    max_images: int | None = DEFAULT_MAX_IMAGES
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS

    def image_pixels(self):
        """The most pixels one image may decode to; None: no cap."""
        caps = [c for c in (self.max_pixels, self.max_image_pixels) if c]
        return min(caps) if caps else None


def refuse_unless(condition, message, *values):
    """An InvalidArgument with `message` (one sentence, then any `values`)
    when `condition` fails: what a client sees instead of an assertion deep
    inside the decoding or resizing ops."""
    return tf.debugging.Assert(condition, [message, *values], summarize=8)


def _first(mask):
    """Index of the first True of `mask`, `len(mask)` if none (an Assert
    computes its message's values even when it passes)."""
    return tf.argmax(tf.concat([mask, [True]], 0))


def _at(values, index):
    """`values[index]`, 0 past the end."""
    return tf.concat([values, tf.zeros([1], values.dtype)], 0)[index]


def request_checks(limits, heights, widths):
    """The assertions on one request of `len(heights)` images (int64
    heights and widths, as their headers or the tensor's shape give them):
    InvalidArgument naming the limit and the first image over it."""
    count = tf.size(heights, out_type=tf.int64)
    pixels = heights * widths
    checks = []
    if limits.max_images:
        checks.append(
            refuse_unless(
                count <= limits.max_images,
                f"too many images: more than max_request_images={limits.max_images} in one "
                f"request; images:",
                count,
            )
        )
    if limits.max_image_pixels:
        first = _first(pixels > limits.max_image_pixels)
        checks.append(
            refuse_unless(
                tf.reduce_all(pixels <= limits.max_image_pixels),
                image_decoding.too_large(limits.max_image_pixels),
                _at(heights, first),
                _at(widths, first),
                "image:",
                first,
            )
        )
    if limits.max_pixels:
        checks.append(
            refuse_unless(
                tf.reduce_sum(pixels) <= limits.max_pixels,
                f"request too large: more than max_request_pixels={limits.max_pixels} decoded "
                f"pixels in all its images; pixels:",
                tf.reduce_sum(pixels),
            )
        )
    return checks


def header_checks(headers):
    """Every image of a request is a non-empty string of a served format."""
    lengths, formats = headers.length, headers.format
    return [
        refuse_unless(
            tf.reduce_all(lengths > 0),
            image_decoding.EMPTY + "; image:",
            _first(lengths <= 0),
        ),
        refuse_unless(
            tf.reduce_all(formats >= 0),
            image_decoding.UNKNOWN_FORMAT + " (by the first bytes); image:",
            _first(formats < 0),
        ),
    ]


def _layer_bytes(shape):
    return _FLOAT32 * math.prod(shape)


def dense_pass_bytes(member, scale):
    """`dense(m, s)`: activations of one `delving.evaluation.dense.DenseInference`
    pass at `scale` on the widest image the aspect-ratio limit lets through
    (and its flip), all added up, in bytes (float32 throughout: mixed-precision
    activations are half that)."""
    model = member.model
    ratio = member.max_aspect_ratio or 1
    images = 2 if member.flip else 1
    shape = (images, scale, math.ceil(ratio * scale), 3)
    total = 3 * _layer_bytes(shape)  # resized, normalized, with its flip
    head = networks.get_head(model)
    spp, fc_layers = dense.split_head(head)
    if spp.data_format == "channels_first":
        shape = (images, 3, shape[1], shape[2])
    for layer in networks.get_trunk(model).layers[1:]:  # [0]: its input
        shape = tuple(layer.compute_output_shape(shape))
        total += _layer_bytes(shape)
    if spp.data_format == "channels_first":
        shape = (shape[0], shape[2], shape[3], shape[1])
    _, height, width, channels = shape
    window = member.window
    windows = images * max(1, height - window + 1) * max(1, width - window + 1)
    bin_sizes = {
        (b - t, r - left)
        for n in spp.bins
        for t, b in bin_edges(window, n)
        for left, r in bin_edges(window, n)
    }
    total += len(bin_sizes) * _layer_bytes((images, height, width, channels))  # pooled maps
    features = channels * sum(n * n for n in spp.bins)
    total += 2 * _layer_bytes((windows, features))  # slices and their concatenation
    for layer in fc_layers:
        if isinstance(layer, keras.layers.Dense):
            total += 2 * _layer_bytes((windows, layer.units))  # output, activation
    return total


def memory_bound(limits, members, request_bytes=0):
    """The most bytes one request may add to the server's memory (module
    docstring): a dict of the terms and their `total`; None when no pixel
    limit or no aspect-ratio limit bounds an image.

    Args:
      limits: the export's `RequestLimits`.
      members: the ensemble's `DenseInference` objects.
      request_bytes: the request's size (its tensor's bytes).
    """
    pixels = limits.image_pixels()
    if not pixels or not all(m.max_aspect_ratio for m in members):
        return None
    terms = {
        "request": REQUEST_COPIES * request_bytes,
        "gif_search": image_decoding.SEARCH_BYTES,
        "image": BYTES_PER_PIXEL * pixels,
        "resize": sum(
            3 * _FLOAT32 * s * math.sqrt(m.max_aspect_ratio * pixels)
            for m in members
            for s in m.scales
        ),
        "dense": sum(dense_pass_bytes(m, s) for m in members for s in m.scales),
    }
    terms = {k: int(v) for k, v in terms.items()}
    terms["total"] = sum(terms.values())
    return terms
