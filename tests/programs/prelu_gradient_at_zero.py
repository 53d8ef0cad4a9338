"""keras_layers.PReLU's gradients at exactly y = 0 (and on both sides), with
the backend's own autodiff (KERAS_BACKEND), against torch.nn.PReLU.

Run by tests/test_layers_prelu.py in a process of its own per backend;
prints PRELU_BACKEND_OK <backend> when every check passed.
"""

import keras
import numpy as np
import torch

import keras_layers

backend = keras.backend.backend()
x = np.array([[-1.5, 0.0, 2.0, 0.0, -0.5]], "float32")
upstream = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]], "float32")


def ours(alpha, channel_shared):
    layer = keras_layers.PReLU(channel_shared=channel_shared)
    layer.build(x.shape)
    layer.alpha.assign(alpha.reshape(layer.alpha.shape))
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            loss = tf.reduce_sum(layer(xt) * upstream)
        dx, da = tape.gradient(loss, [xt, layer.alpha.value])
    elif backend == "jax":
        import jax

        def loss(x, a):
            y, _ = layer.stateless_call([a], [], x)
            return (y * upstream).sum()

        dx, da = jax.grad(loss, argnums=(0, 1))(x, layer.alpha.value)
    else:
        xt = torch.tensor(x, requires_grad=True)
        (layer(xt) * torch.tensor(upstream)).sum().backward()
        dx, da = xt.grad, layer.alpha.value.grad
    return [keras.ops.convert_to_numpy(v) for v in (dx, da)]


def reference(alpha):
    prelu = torch.nn.PReLU(alpha.size)
    prelu.weight.data = torch.tensor(alpha)
    xt = torch.tensor(x, requires_grad=True)
    (prelu(xt) * torch.tensor(upstream)).sum().backward()
    return xt.grad.numpy(), prelu.weight.grad.numpy()


for alpha, shared in [
    (np.array([0.25, 0.5, 0.25, -0.75, 1.5], "float32"), False),
    (np.array([0.25], "float32"), True),
]:
    for got, want in zip(ours(alpha, shared), reference(alpha)):
        np.testing.assert_allclose(np.reshape(got, want.shape), want, rtol=1e-6)
print("PRELU_BACKEND_OK", backend)
