"""A training step of a channel-shared keras_layers.PReLU slope under each of
Keras' norm constraints, on the backend KERAS_BACKEND names.

Run by tests/test_layers_prelu.py in a process of its own per backend;
prints PRELU_BACKEND_OK <backend> when every check passed.
"""

import keras
import numpy as np

import keras_layers

backend = keras.backend.backend()
rng = np.random.default_rng(0)
keras.utils.set_random_seed(0)
for constraint in ("MaxNorm", "UnitNorm", "NonNeg"):
    model = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            keras.layers.Conv2D(2, 3),
            keras_layers.PReLU(channel_shared=True, alpha_constraint=constraint),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(
        rng.standard_normal((4, 4, 4, 3)).astype("float32"),
        rng.standard_normal((4, 2)).astype("float32"),
        epochs=1,
        verbose=0,
    )
    alpha = keras.ops.convert_to_numpy(model.layers[1].alpha)
    assert alpha.shape == () and np.isfinite(alpha), (constraint, alpha)
    if constraint == "UnitNorm":  # a / (1e-7 + |a|)
        np.testing.assert_allclose(abs(alpha), 1.0, rtol=1e-5)
print("PRELU_BACKEND_OK", backend)
