"""Refusing a batch whose activations cannot fit, before any work.

A training step keeps every layer's output for the backward pass and holds
a gradient of the same size while it runs back through it, so a step needs
at least `2 * batch * sum(layer outputs) * bytes per element`, the layer
outputs read from the built model as `delving.summary` shows them
(`delving.models.stats`). That is a lower bound (no weights, optimizer slots,
input pipeline or workspace), so a refused batch would certainly not fit.

Checked where the memory can be read: the host's (the cgroup limit of a
container, else MemAvailable) when the replicas are CPUs. Accelerators
report no total memory through TensorFlow and are not checked here.
"""

import os

from common.memory import host_available_bytes
from delving.models import stats

GIB = 2**30


def step_activation_bytes(model, *, image_size, batch_size, bytes_per_element=4):
    """The lower bound above for one training step of `batch_size` images."""
    per_image = (
        sum(_prod(s.output_shape) for s in stats.layer_stats(model, image_size)) + 3 * image_size**2
    )
    return 2 * batch_size * per_image * bytes_per_element


def _prod(shape):
    out = 1
    for d in shape:
        out *= d
    return out


def check_batch_fits(
    model, *, image_size, batch_size, host_batch, devices, compute_dtype, error_type
):
    """Raises `error_type` (one line, both numbers) when the activations of
    this host's `host_batch` images of the global `batch_size` exceed the
    memory available to `devices` (this host's replicas)."""
    if any("CPU" not in d.upper() for d in devices):
        return  # accelerators: no total memory to compare with (module doc)
    available = host_available_bytes()
    if available is None:
        return
    bytes_per_element = 2 if compute_dtype in ("float16", "bfloat16") else 4
    needed = step_activation_bytes(
        model, image_size=image_size, batch_size=host_batch, bytes_per_element=bytes_per_element
    )
    if needed > available:
        fits = max(1, int(batch_size * available / needed))
        raise error_type(
            f"--batch_size={batch_size} needs at least {needed / GIB:.1f} GiB for the "
            f"activations of one training step, more than the {available / GIB:.1f} GiB "
            f"of memory available (pid {os.getpid()}); use --batch_size={fits} or less"
        )
