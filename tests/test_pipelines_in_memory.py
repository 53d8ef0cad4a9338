"""The in-memory training input: geometry, labels, shards, eager == graph, limits.

Ramp images make the geometry checkable exactly: bilinear resampling
reproduces a linear function, so a crop of an image whose red channel is
`4 * row` and green channel `4 * column` must again be a pair of ramps, red
along the crop's rows and green along its columns, whatever the orientation
on the canvas, with slopes that give the scale back.
"""

import numpy as np
import pytest
import tensorflow as tf

from common import errors
from pipelines import dataset_ops, in_memory
from pipelines.config import LIGHTING_STD, InputConfig

IMAGE_SIZE, SCALES, SIDE = 16, (16, 20), 32
# The trainer's stream: endless, uint8 crops and lighting shifts.
STREAM = InputConfig(
    batch_size=8, image_size=IMAGE_SIZE, scale_range=SCALES, repeat=True, normalize=False
)


def ramp(height, width):
    rows, cols = np.mgrid[:height, :width].astype(np.float32)
    return np.stack([4 * rows + 2, 4 * cols + 2, np.full_like(rows, 77)], axis=-1)


def split_of(images, labels):
    ds = tf.data.Dataset.from_generator(
        lambda: zip(images, labels),
        output_signature=(
            tf.TensorSpec([None, None, 3], tf.float32),
            tf.TensorSpec([], tf.int64),
        ),
    )
    return in_memory.load(ds, side=SIDE)


def augment(split, indices, seed, **kwargs):
    kwargs = dict(image_size=IMAGE_SIZE, scale_range=SCALES, lighting_std=0.0) | kwargs
    return in_memory.augment_batch(split, tf.constant(indices), tf.constant(seed), **kwargs)


def test_load_keeps_each_orientation_on_its_own_canvas():
    images = [ramp(SIDE, 48), ramp(40, SIDE), ramp(SIDE, SIDE), ramp(44, SIDE)]
    split = split_of(images, [3, 5, 6, 7])
    assert split.landscape.shape == (2, SIDE, 48, 3) and split.landscape.dtype == tf.uint8
    assert split.portrait_canvas.shape == (2, 44, SIDE, 3)
    assert split.portrait.numpy().tolist() == [False, True, False, True]
    assert split.slots.numpy().tolist() == [0, 0, 1, 1]
    assert split.long_sides.numpy().tolist() == [48, 40, SIDE, 44]
    assert split.labels.numpy().tolist() == [3, 5, 6, 7]
    np.testing.assert_array_equal(split.portrait_canvas[0, :40].numpy(), ramp(40, SIDE))
    np.testing.assert_array_equal(split.landscape[1, :, :SIDE].numpy(), ramp(SIDE, SIDE))
    assert not split.portrait_canvas[0, 40:].numpy().any()  # padding
    assert not split.landscape[1, :, SIDE:].numpy().any()
    only_wide = split_of([ramp(SIDE, 40)], [0])  # an empty canvas is one blank image
    assert only_wide.portrait_canvas.shape == (1, SIDE, SIDE, 3)
    images, _, labels = augment(only_wide, [0, 0], [1, 1])
    assert images.shape == (2, IMAGE_SIZE, IMAGE_SIZE, 3) and labels.numpy().tolist() == [0, 0]


@pytest.mark.parametrize("shape", [(SIDE, 48), (48, SIDE), (SIDE, SIDE)], ids=str)
def test_crops_are_ramps_in_the_image_orientation_at_the_drawn_scale(shape):
    split = split_of([ramp(*shape)], [0])
    images, _, _ = augment(split, [0] * 256, [7, 1])
    images = images.numpy().astype(np.float32)
    red, green = images[..., 0], images[..., 1]
    # Red (the image's rows) varies only down the crop, green only across it.
    assert np.abs(np.diff(red, axis=2)).max() <= 1
    assert np.abs(np.diff(green, axis=1)).max() <= 1
    # Slope per output pixel: 4 * window / image_size = 4 * SIDE / s.
    red_slope = (red[:, -1, :] - red[:, 0, :]).mean(axis=1) / (IMAGE_SIZE - 1)
    green_slope = (green[:, :, -1] - green[:, :, 0]).mean(axis=1) / (IMAGE_SIZE - 1)
    low, high = 4 * SIDE / SCALES[1], 4 * SIDE / SCALES[0]
    assert np.all((red_slope > low - 0.1) & (red_slope < high + 0.1))
    # Flipped crops run right to left: the same scale, the sign reversed.
    np.testing.assert_allclose(np.abs(green_slope), red_slope, atol=0.1)
    flipped = np.mean(green_slope < 0)
    assert 0.35 < flipped < 0.65
    # Every scale in the range is drawn.
    assert red_slope.min() < low + 0.3 and red_slope.max() > high - 0.3
    # Crops stay inside the image: the ramp's values there, nothing of the padding.
    assert red.min() >= 2 and red.max() <= 4 * (shape[0] - 1) + 2
    assert green.min() >= 2 and green.max() <= 4 * (shape[1] - 1) + 2
    assert np.all(images[..., 2] == 77)
    # Windows move across the whole room left: both ends are reached.
    if shape[1] > SIDE:
        assert green.min() < 8 and green.max() > 4 * (shape[1] - 1) - 6


def coloured_split():
    """Six flat images of widths SIDE.. and colours 10, 30, ..., labelled 0..5."""
    colours = [np.full((SIDE, SIDE + 10 * i, 3), 20.0 * i + 10, np.float32) for i in range(6)]
    return split_of(colours, list(range(6)))


def test_labels_follow_their_images():
    indices = [5, 0, 3, 3, 1, 4, 2]
    images, _, labels = augment(coloured_split(), indices, [1, 2], lighting_std=LIGHTING_STD)
    assert labels.numpy().tolist() == indices
    for image, label in zip(images.numpy(), labels.numpy()):
        assert np.all(image == 20 * label + 10)


def test_lighting_is_the_pca_shift():
    indices = [5, 0, 3, 3, 1, 4, 2]
    _, shifts, _ = augment(coloured_split(), indices, [1, 2], lighting_std=LIGHTING_STD)
    assert shifts.shape == (7, 3) and np.abs(shifts.numpy()).max() > 0
    # shift = eigvec @ (alpha * eigval): back to alpha, whose std is LIGHTING_STD.
    alpha = np.linalg.solve(
        np.asarray(in_memory.preprocessing.EIGVEC),
        np.asarray(shifts.numpy()).T,
    ).T / np.asarray(in_memory.preprocessing.EIGVAL)
    assert 0.01 < alpha.std() < 0.3


def augment_three():
    """`fn(indices, seed)` augmenting three ramps of either orientation."""
    split = split_of([ramp(SIDE, 48), ramp(40, SIDE), ramp(SIDE, 36)], [0, 1, 2])
    return lambda idx, seed: in_memory.augment_batch(
        split, idx, seed, image_size=IMAGE_SIZE, scale_range=SCALES, lighting_std=LIGHTING_STD
    )


def test_eager_equals_dataset_map():
    fn = augment_three()
    idx, seed = tf.constant([0, 1, 1, 2, 0]), tf.constant([3, 4])
    eager = fn(idx, seed)
    graph = next(iter(tf.data.Dataset.from_tensors((idx, seed)).map(fn)))
    for a, b in zip(eager, graph):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_seed_changes_the_batch():
    fn = augment_three()
    idx = tf.constant([0, 1, 1, 2, 0])
    one, other = fn(idx, tf.constant([3, 4])), fn(idx, tf.constant([3, 5]))
    assert not np.array_equal(one[0].numpy(), other[0].numpy())


def test_pipelines_share_each_pass_without_overlap():
    n, batch = 24, 8  # each of 2 pipelines takes 12 images per pass
    split = split_of([np.full((SIDE, SIDE, 3), 9.0, np.float32)] * n, list(range(n)))
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2
        )
        ds = in_memory.make_dataset(
            split,
            STREAM.replace(batch_size=2 * batch, seed=5),  # global: 8 per pipeline
            input_context=context,
        )
        labels = np.concatenate([y.numpy() for _, y in ds.take(3)])  # 24 = two passes of 12
        features, _ = next(iter(ds))
        assert features[dataset_ops.PIXELS].dtype == tf.uint8
        assert features[dataset_ops.PIXELS].shape == (batch, IMAGE_SIZE, IMAGE_SIZE, 3)
        assert features[dataset_ops.LIGHTING].shape == (batch, 3)
        seen.append([set(labels[:12]), set(labels[12:])])
    for first, second in seen[0], seen[1]:
        assert len(first) == len(second) == 12
    # Each pass is a fresh permutation, shared out between the pipelines.
    for one_pass in zip(*seen):
        assert one_pass[0].isdisjoint(one_pass[1]) and one_pass[0] | one_pass[1] == set(range(n))
    assert seen[0][0] != seen[0][1]


def two_passes(seed, n=16):
    """Two whole-split batches (two passes) of `n` ramps labelled 0..n-1."""
    split = split_of([ramp(SIDE, 40)] * n, list(range(n)))
    ds = in_memory.make_dataset(split, STREAM.replace(batch_size=n, seed=seed))
    return [(x["pixels"].numpy(), y.numpy()) for x, y in ds.take(2)]


def test_same_seed_gives_the_same_stream():
    for (a, la), (b, lb) in zip(two_passes(1), two_passes(1)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_each_pass_is_reshuffled():
    first = two_passes(1)
    assert sorted(first[0][1]) == list(range(16)) and list(first[0][1]) != list(first[1][1])


def test_unrepeated_stream_ends_after_one_pass():
    split = split_of([ramp(SIDE, 40)] * 10, list(range(10)))
    ds = in_memory.make_dataset(split, STREAM.replace(batch_size=4, seed=0, repeat=False))
    assert [int(y.shape[0]) for _, y in ds] == [4, 4]  # full batches only


def four_ramps():
    return tf.data.Dataset.from_tensor_slices((np.stack([ramp(SIDE, 48)] * 4), np.arange(4)))


def test_split_beyond_max_bytes_is_a_one_line_error():
    with pytest.raises(errors.DataError, match="does not fit in memory .* --in_memory") as e:
        in_memory.load(four_ramps(), side=SIDE, max_bytes=SIDE * 48 * 3 * 2, where="the test split")
    assert "\n" not in str(e.value) and "the test split" in str(e.value)


def test_empty_split_is_a_data_error():
    with pytest.raises(errors.DataError, match="has no images"):
        in_memory.load(four_ramps().take(0), side=SIDE)


def test_missing_seed_is_refused():
    split = split_of([ramp(SIDE, 48)] * 4, range(4))
    with pytest.raises(ValueError, match="seed"):
        in_memory.make_dataset(split, STREAM.replace(batch_size=2, seed=None))


def test_scale_range_below_the_crop_is_refused():
    split = split_of([ramp(SIDE, 48)] * 4, range(4))
    with pytest.raises(ValueError, match="scale_range"):
        in_memory.make_dataset(
            split, STREAM.replace(batch_size=2, image_size=20, scale_range=(16, 24), seed=0)
        )
