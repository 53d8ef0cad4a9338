"""Dense multi-view testing (delving.evaluation.dense) against explicit window cropping."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_layers
from delving.evaluation import dense
from delving.models import networks
from pipelines import preprocessing

TINY = dict(num_classes=5, width_multiplier=1 / 32, fc_units=16, seed=3)


def _model(name="model_a", **kwargs):
    return networks.build_model(name, **{**TINY, **kwargs})


def _crop_reference(head, feature_map, window):
    """Mean softmax of the real head on every cropped window of the map."""
    spp = dense.split_head(head)[0]
    nchw = spp.data_format == "channels_first"
    fmap = np.transpose(feature_map, (0, 2, 3, 1)) if nchw else feature_map
    _, h, w, _ = fmap.shape
    wh, ww = (window, window) if min(h, w) >= window else (h, w)
    crops = [fmap[:, p : p + wh, q : q + ww] for p in range(h - wh + 1) for q in range(w - ww + 1)]
    probs = [
        tf.nn.softmax(head(np.transpose(c, (0, 3, 1, 2)) if nchw else c, training=False))
        for c in crops
    ]
    return np.mean(probs, axis=0)


@pytest.mark.parametrize(
    "bins,window,shape",
    [
        ((7, 3, 2, 1), 14, (2, 17, 20, 5)),
        ((6, 3, 2, 1), 19, (1, 19, 23, 3)),
        ((3,), 5, (1, 5, 5, 2)),
    ],
)
def test_window_features_equal_spp_of_each_window(bins, window, shape):
    fmap = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    features = dense.window_features(tf.constant(fmap), bins=bins, window=window)
    spp = keras_layers.SpatialPyramidPooling(bins)
    _, h, w, _ = shape
    assert features.shape == (
        shape[0],
        h - window + 1,
        w - window + 1,
        shape[3] * sum(n * n for n in bins),
    )
    for p, q in itertools.product(range(h - window + 1), range(w - window + 1)):
        np.testing.assert_array_equal(
            features[:, p, q], spp(fmap[:, p : p + window, q : q + window])
        )


@pytest.mark.parametrize(
    "map_shape,data_format,activation",
    [
        ((2, 16, 18, 16), "channels_last", "prelu"),  # dense path, 3x5 windows
        ((1, 15, 14, 16), "channels_last", "relu"),
        ((1, 16, 17, 16), "channels_first", "prelu"),  # NCHW head, NHWC pooling
        ((1, 9, 30, 16), "channels_last", "lrelu"),  # smaller than the window
        ((1, 3, 4, 16), "channels_last", "prelu"),
    ],
)
def test_dense_head_equals_head_on_cropped_windows(map_shape, data_format, activation):
    model = _model(activation=activation, data_format=data_format, dropout=0.5)
    head = networks.get_head(model)
    fmap = np.random.default_rng(1).normal(size=map_shape).astype(np.float32)
    if data_format == "channels_first":
        fmap = np.transpose(fmap, (0, 3, 1, 2))
    got = dense._window_probabilities(head, tf.constant(fmap), window=14)
    np.testing.assert_allclose(got, _crop_reference(head, fmap, 14), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.sum(got, -1), 1.0, rtol=1e-5)


def _naive_dense(model, image, window, scales, flip):
    """The paper's procedure written out: resize, trunk, crop every window."""
    trunk, head = networks.get_trunk(model), networks.get_head(model)
    total = 0
    for scale in scales:
        x = preprocessing.normalize(preprocessing.resize_shorter_side(image, scale))[None]
        views = [x, x[:, :, ::-1]] if flip else [x]
        total += np.mean([_crop_reference(head, trunk(v).numpy(), window) for v in views], axis=0)
    return total / len(scales)


@pytest.mark.parametrize(
    "name,scales,flip",
    [
        ("model_a", (224, 250), True),  # one window at 224, 1x2..2x3 at 250
        ("small_14", (100, 240), False),  # 9x.. map: whole-map fallback at 100
    ],
)
def test_dense_probabilities_equal_naive_procedure(name, scales, flip):
    model = _model(name)
    image = np.random.default_rng(2).integers(0, 256, (210, 290, 3), np.uint8)
    window = networks.head_window(name)
    got = dense.dense_probabilities(model, image[None], window=window, scales=scales, flip=flip)
    assert got.dtype == tf.float32 and got.shape == (1, 5)
    np.testing.assert_allclose(
        got, _naive_dense(model, image, window, scales, flip), rtol=1e-4, atol=1e-6
    )


def test_single_window_equals_the_whole_model():
    """A 224x224 image at scale 224 is exactly one 14x14 window: the dense
    result is the model's own softmax on the image (and on its flip)."""
    model = _model()
    image = np.random.default_rng(3).integers(0, 256, (224, 224, 3), np.uint8)
    got = dense.dense_probabilities(model, image[None], window=14, scales=(224,), flip=True)
    x = preprocessing.normalize(image)[None]
    want = (tf.nn.softmax(model(x)) + tf.nn.softmax(model(x[:, :, ::-1]))) / 2
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _unknown_size_function(model):
    return tf.function(
        lambda images: dense.dense_probabilities(model, images, window=14, scales=(224, 256)),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)],
    )


def test_tf_function_of_unknown_sizes_equals_eager():
    model = _model()
    fn = _unknown_size_function(model)
    rng = np.random.default_rng(4)
    for shape in [(2, 230, 300, 3), (1, 1, 1, 3), (1, 400, 90, 3)]:
        images = rng.integers(0, 256, shape, np.uint8)
        got = fn(images)
        np.testing.assert_allclose(
            got,
            dense.dense_probabilities(model, images, window=14, scales=(224, 256)),
            rtol=1e-5,
            atol=1e-6,
        )
        np.testing.assert_allclose(np.sum(got, -1), 1.0, rtol=1e-5)


def test_a_batch_equals_its_images_one_at_a_time():
    fn = _unknown_size_function(_model())
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (3, 240, 260, 3), np.uint8)
    np.testing.assert_allclose(
        fn(images), np.concatenate([fn(images[i : i + 1]) for i in range(3)]), rtol=1e-5, atol=1e-6
    )


def test_mixed_precision_gives_float32_close_to_float32_model():
    reference = _model()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = _model()
    finally:
        keras.config.set_dtype_policy("float32")
    mixed.set_weights(reference.get_weights())
    image = np.random.default_rng(5).integers(0, 256, (1, 240, 250, 3), np.uint8)
    kwargs = dict(window=14, scales=(224, 240))
    got = dense.dense_probabilities(mixed, image, **kwargs)
    assert got.dtype == tf.float32
    np.testing.assert_allclose(
        got, dense.dense_probabilities(reference, image, **kwargs), atol=2e-2
    )


@pytest.mark.parametrize("image_size,window", [(224, 14), (160, 10)])
def test_window_of_the_view_comes_from_the_training_crop_size(image_size, window):
    model = _model()
    x = tf.random.stateless_normal([1, 240, 260, 3], [1, 2])
    assert networks.head_window("model_a", image_size) == window
    np.testing.assert_allclose(
        dense.evaluation_scores(model, x, image_size=image_size),
        dense.dense_scores(model, x, window=window),
    )


def test_limit_aspect_ratio_crops_the_centre_of_the_longer_side():
    image = np.arange(2 * 50).reshape(1, 2, 50, 1)
    cropped = dense.limit_aspect_ratio(image, 4.0)
    np.testing.assert_array_equal(cropped, image[:, :, 21:29])
    square = np.zeros((1, 30, 40, 3))
    assert dense.limit_aspect_ratio(square, 4.0).shape == square.shape


def test_rejects_no_scales():
    with pytest.raises(ValueError, match="at least one scale"):
        dense.dense_probabilities(_model(), np.zeros((1, 8, 8, 3), np.uint8), window=14, scales=())
