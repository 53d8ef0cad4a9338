"""Rectifier-aware weight initializers (He et al. 2015, Sec. 2.2 and 2.3).

`HeVarianceScaling` draws zero-mean weights with

    std = sqrt(2 / ((1 + a**2) * n))                       (Eq. 10, 14, 15)

where `n` is the fan-in `k*k*c` (Eq. 10, forward signal) or the fan-out
`k*k*d` (Eq. 14, backward signal) of a `k x k` conv kernel with `c` input and
`d` output channels (`n` = input / output units for a dense kernel), and `a`
the negative slope of the rectifier (0 for ReLU, Eq. 15 for PReLU/LReLU).

`XavierVarianceScaling` is the baseline the paper compares against
(Sec. 2.3): `Var[w] = 1 / n`, as Caffe's "xavier" filler does -- not Glorot's
`2 / (fan_in + fan_out)`.

Unlike `keras.initializers.HeNormal`, the default distribution is a *plain*
Gaussian as in the paper (HeNormal is a truncated normal without tails beyond
two standard deviations, and uses fan-in only).

Seeding. Keras' own initializers return the *same* tensor on every call when
`seed` is None or an int, so one instance shared by two layers gives them
identical kernels. Here every call draws fresh values:

- `seed=None`: each call takes a new seed from Python's `random` module, so
  results follow `keras.utils.set_random_seed` and are otherwise random.
- `seed=<int>`: the instance yields a reproducible *sequence*: call 0 uses
  `seed` itself (the same values Keras would give), call `i` a seed derived
  from `(seed, i)`. Two instances with the same seed, or a freshly
  deserialized one, produce the same sequence.

Seeds stay Python ints passed to stateless random ops, so no random-state
variable is created (nothing to place under a distribution strategy, nothing
to checkpoint).
"""

import math
import random as python_random

import keras

_MODES = ("fan_in", "fan_out")
_DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")
# keras.random.truncated_normal cuts at 2 std; the std of a standard normal
# truncated to [-2, 2] is this constant, so dividing by it restores the target.
_TRUNCATED_STD = 0.87962566103423978
# Odd 32-bit constant (golden ratio) that spreads call indices over seed space.
_SEED_STRIDE = 0x9E3779B1


def compute_fans(shape, input_axes=None, output_axes=None):
    """Returns `(fan_in, fan_out)` of a kernel shape, by Keras' own rules.

    Keras stores conv kernels as `(k1, ..., kr, in, out)` whatever the layer's
    `data_format`, so the receptive field is the product of the leading dims:
    fan-in `k*k*c` and fan-out `k*k*d` as in Sec. 2.2. `EinsumDense` kernels
    (e.g. `MultiHeadAttention`'s `(dim, heads, key_dim)`) are no conv
    kernels: the layer names which axes hold input and output units, and the
    fans are the products over those axes, as in
    `keras.initializers.VarianceScaling`.

    Args:
        shape: tuple of ints, the kernel shape.
        input_axes, output_axes: the axes of input and output units (both or
            neither), as `EinsumDense` passes them.

    Returns:
        Tuple of two ints.
    """
    shape = tuple(int(d) for d in shape)
    if input_axes is not None and output_axes is not None:
        return (
            math.prod(shape[a] for a in input_axes),
            math.prod(shape[a] for a in output_axes),
        )
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


class _RectifierVarianceScaling(keras.initializers.VarianceScaling):
    """Shared sampling code: subclasses only set the variance gain.

    A `VarianceScaling` subclass only so that layers treat it as one:
    `EinsumDense` (inside `MultiHeadAttention`, ...) gives such initializers
    the axes of its kernel's input and output units through `from_config`.
    Sampling and seeding are our own (`VarianceScaling.__init__` is not
    called: its "normal" is truncated and its seeds are fixed per instance).
    """

    def __init__(self, mode, distribution, seed, input_axes=None, output_axes=None):
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
        if distribution not in _DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {_DISTRIBUTIONS}, got {distribution!r}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be None or an int, got {seed!r}.")
        self.mode = mode
        self.distribution = distribution
        self.seed = seed
        self.input_axes = None if input_axes is None else list(input_axes)
        self.output_axes = None if output_axes is None else list(output_axes)
        self._calls = 0

    def _gain(self):
        raise NotImplementedError

    def stddev(self, shape):
        """The target standard deviation for a kernel of `shape`."""
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        n = fan_in if self.mode == "fan_in" else fan_out
        return math.sqrt(self._gain() / max(1, n))

    def _next_seed(self):
        if self.seed is None:
            return python_random.randint(1, 2**31 - 1)
        seed = (self.seed + self._calls * _SEED_STRIDE) % 2**32
        self._calls += 1
        return seed

    def __call__(self, shape, dtype=None):
        std = self.stddev(shape)
        seed = self._next_seed()
        if self.distribution == "normal":
            return keras.random.normal(shape, stddev=std, dtype=dtype, seed=seed)
        if self.distribution == "truncated_normal":
            return keras.random.truncated_normal(
                shape, stddev=std / _TRUNCATED_STD, dtype=dtype, seed=seed
            )
        # U(-l, l) has variance l^2 / 3.
        limit = math.sqrt(3.0) * std
        return keras.random.uniform(shape, minval=-limit, maxval=limit, dtype=dtype, seed=seed)

    def get_config(self):
        config = {"mode": self.mode, "distribution": self.distribution, "seed": self.seed}
        if self.input_axes is not None or self.output_axes is not None:
            config.update(input_axes=self.input_axes, output_axes=self.output_axes)
        return config


@keras.saving.register_keras_serializable(package="keras_layers")
class HeVarianceScaling(_RectifierVarianceScaling):
    """He ("MSRA") initializer: `std = sqrt(2 / ((1 + a^2) n))`, Eq. 10/14/15.

    Args:
        mode: `"fan_in"` (n = k*k*c, Eq. 10: keeps the forward signal's
            variance) or `"fan_out"` (n = k*k*d, Eq. 14: keeps the gradient's
            variance; the paper trains its ImageNet models with this).
        negative_slope: slope `a` of the rectifier for negative inputs; 0 for
            ReLU, the initial PReLU coefficient (0.25) for PReLU (Eq. 15).
        distribution: `"normal"` (plain Gaussian, the paper's choice),
            `"truncated_normal"` (cut at 2 std and rescaled to the same std) or
            `"uniform"` (same variance).
        seed: None (fresh values on every call) or an int (reproducible
            sequence of draws; see the module docstring).

    Example:

    >>> conv = keras.layers.Conv2D(
    ...     64, 3, kernel_initializer=HeVarianceScaling("fan_out"))
    >>> w = HeVarianceScaling("fan_in", negative_slope=0.25)((3, 3, 64, 64))
    """

    def __init__(
        self,
        mode="fan_in",
        negative_slope=0.0,
        distribution="normal",
        seed=None,
        input_axes=None,
        output_axes=None,
    ):
        super().__init__(mode, distribution, seed, input_axes, output_axes)
        self.negative_slope = float(negative_slope)

    def _gain(self):
        return 2.0 / (1.0 + self.negative_slope**2)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


@keras.saving.register_keras_serializable(package="keras_layers")
class XavierVarianceScaling(_RectifierVarianceScaling):
    """The paper's "Xavier" baseline: `Var[w] = 1 / n` (Sec. 2.3).

    With rectifiers each layer then halves the signal's variance, so it
    shrinks like `2^-L` with depth (the 30-layer model stalls, Fig. 3).

    Args:
        mode: `"fan_in"` (n = k*k*c) or `"fan_out"` (n = k*k*d).
        distribution: `"normal"`, `"truncated_normal"` or `"uniform"`, all
            with variance `1 / n`.
        seed: None or an int, as for `HeVarianceScaling`.

    Example:

    >>> dense = keras.layers.Dense(10, kernel_initializer=XavierVarianceScaling())
    """

    def __init__(
        self, mode="fan_in", distribution="normal", seed=None, input_axes=None, output_axes=None
    ):
        super().__init__(mode, distribution, seed, input_axes, output_axes)

    def _gain(self):
        return 1.0
