"""Every public piece of keras_layers under the Keras backend KERAS_BACKEND
names: the layers against NumPy, then a model with all of them fitted one
step, saved and loaded in safe mode.

Usage: layers_on_a_backend.py BACKEND MODEL_PATH (BACKEND: the expected one).
Run by tests/test_layers.py; prints SECOND_BACKEND_OK when every check passed.
"""

import math
import sys

import keras
import numpy as np

import keras_layers

assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
rng = np.random.default_rng(0)

# The layers alone, against NumPy.
x = rng.standard_normal((2, 5, 7, 4)).astype("float32")
y = keras.ops.convert_to_numpy(keras_layers.PReLU()(x))
np.testing.assert_allclose(y, np.maximum(x, 0) + 0.25 * np.minimum(x, 0), rtol=1e-6)
pooled = keras.ops.convert_to_numpy(keras_layers.SpatialPyramidPooling((2, 1))(x))
top_left = x[:, 0:3, 0:4].max(axis=(1, 2))
np.testing.assert_array_equal(pooled[:, :4], top_left)
np.testing.assert_array_equal(pooled[:, -4:], x.max(axis=(1, 2)))
w = keras.ops.convert_to_numpy(keras_layers.HeVarianceScaling("fan_out")((3, 3, 64, 128)))
assert abs(w.std() / math.sqrt(2 / (9 * 128)) - 1) < 0.05

# A model with every piece: fit one step, save, load in safe mode.
inputs = keras.Input((None, None, 3))
he = keras_layers.HeVarianceScaling("fan_out")
h = keras.layers.Conv2D(4, 3, kernel_initializer=he)(inputs)
h = keras_layers.PReLU()(h)
h = keras_layers.PReLU(channel_shared=True)(h)
h = keras_layers.SpatialPyramidPooling((3, 2, 1))(h)
h = keras.layers.Dense(3, kernel_initializer=keras_layers.XavierVarianceScaling())(h)
model = keras.Model(inputs, h)
optimizer = keras.optimizers.SGD(0.1, weight_decay=5e-4)
assert len(keras_layers.exclude_prelu_from_weight_decay(optimizer, model)) == 2
model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = model.fit(
    rng.standard_normal((4, 9, 8, 3)).astype("float32"),
    np.array([0, 1, 2, 0]),
    epochs=1,
    verbose=0,
)
assert np.isfinite(history.history["loss"][0])
model.save(sys.argv[2])
restored = keras.models.load_model(sys.argv[2], safe_mode=True)
x = rng.standard_normal((2, 6, 11, 3)).astype("float32")
np.testing.assert_allclose(
    keras.ops.convert_to_numpy(restored(x)),
    keras.ops.convert_to_numpy(model(x)),
    rtol=1e-5,
    atol=1e-6,
)
print("SECOND_BACKEND_OK")
