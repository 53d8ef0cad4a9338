"""Keras 3 layers of *Delving Deep into Rectifiers* (He et al., 2015).

Backend-neutral (only `keras.ops`), serializable under the package name
`keras_layers`:

- `PReLU`: learned rectifier slopes, channel-wise or shared (Eq. 1-5).
- `HeVarianceScaling`, `XavierVarianceScaling`: the paper's rectifier
  initialization (Eq. 10, 14, 15) and the "Xavier" baseline it compares with.
- `SpatialPyramidPooling`: SPP-net max pooling to a fixed-length vector.
- `exclude_prelu_from_weight_decay`: keep the optimizer's weight decay off
  the PReLU slopes, as the paper does.
"""

from keras_layers.initializers import HeVarianceScaling, XavierVarianceScaling
from keras_layers.prelu import PReLU
from keras_layers.spatial_pyramid_pooling import SpatialPyramidPooling
from keras_layers.weight_decay import exclude_prelu_from_weight_decay

__all__ = [
    "PReLU",
    "HeVarianceScaling",
    "XavierVarianceScaling",
    "SpatialPyramidPooling",
    "exclude_prelu_from_weight_decay",
]
