"""pipelines.data_service: addresses, and the processing mode on real
localhost servers (an in-process dispatcher and two workers) reading real
JPEG records."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from pipelines import data_service, imagenet
from pipelines.config import InputConfig
from tests import data_service_testutil

NUM_SHARDS, PER_SHARD = 4, 24
RECORDS = NUM_SHARDS * PER_SHARD


@pytest.fixture(scope="module")
def ramp_dir(tmp_path_factory):
    return data_service_testutil.ramp_shards(
        str(tmp_path_factory.mktemp("ramps")), num_shards=NUM_SHARDS, per_shard=PER_SHARD
    )


@pytest.fixture(scope="module")
def service():
    with data_service_testutil.servers(2) as (address, _):
        yield address


def _reader(data_dir, **changes):
    config = InputConfig(
        batch_size=8, image_size=32, scale_range=(40, 64), seed=0, normalize=False, **changes
    )
    return imagenet.make_dataset(
        data_dir, "train", config, is_training=True, num_classes=RECORDS, label_offset=1
    )


@pytest.mark.parametrize("good", ["grpc://localhost:5050", "grpc://10.0.0.7:1", "grpc://[::1]:80"])
def test_parse_address_accepts_a_dispatcher_address(good):
    assert data_service.parse_address(good)[1] == int(good.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    "bad", ["localhost:5050", "grpc://localhost", "http://h:1", "grpc://h:0", "grpc://h:99999", ""]
)
def test_parse_address_refuses_in_one_line(bad):
    with pytest.raises(ValueError, match=r"^expected grpc://host:port") as raised:
        data_service.parse_address(bad)
    assert "\n" not in str(raised.value)


def test_one_pass_yields_every_record_exactly_once(ramp_dir, service):
    """The guarantee of ShardingPolicy.DYNAMIC with no worker restarted: each
    record of a pass once, over both workers (OFF would give each twice)."""
    dataset = _reader(ramp_dir, drop_remainder=False, seed_per_worker=True)
    labels = [
        int(label)
        for _, batch in data_service.distribute(dataset, service, job_name="one-pass")
        for label in batch.numpy()
    ]
    counts = collections.Counter(labels)
    assert sorted(counts) == list(range(RECORDS)), sorted(counts)
    assert set(counts.values()) == {1}, counts.most_common(3)


def _shifts(dataset, service, job_name, batches):
    stream = data_service.distribute(dataset, service, job_name=job_name)
    return np.concatenate([f["lighting"].numpy() for f, _ in stream.take(batches)])


def test_workers_draw_distinct_augmentations_with_seed_per_worker(ramp_dir, service):
    shifts = _shifts(_reader(ramp_dir, repeat=True, seed_per_worker=True), service, "own", 16)
    assert len(np.unique(shifts, axis=0)) == len(shifts)


def _instance_shifts(dataset, batches):
    return np.concatenate([f["lighting"].numpy() for f, _ in dataset.take(batches)])


def test_a_graph_seeded_once_repeats_its_augmentations_in_every_instance(ramp_dir):
    """Why `seed_per_worker` exists: each worker runs its own instance of the
    graph the trainer sends, so with fixed op seeds the i-th image of every
    instance draws the same lighting (and crop, and flip). Two instances in
    this process stand for two workers: which worker serves which batch is
    up to the dispatcher, so a check through the service could see one."""
    dataset = _reader(ramp_dir, repeat=True)
    np.testing.assert_array_equal(_instance_shifts(dataset, 4), _instance_shifts(dataset, 4))


def test_seed_per_worker_draws_anew_in_every_instance(ramp_dir):
    dataset = _reader(ramp_dir, repeat=True, seed_per_worker=True)
    assert not np.array_equal(_instance_shifts(dataset, 4), _instance_shifts(dataset, 4))


def test_bad_address_fails_before_contacting_anything(ramp_dir):
    with pytest.raises(ValueError, match="expected grpc://host:port"):
        data_service.distribute(_reader(ramp_dir), "localhost:5050", job_name="x")


def test_bound_port_is_the_port_the_dispatcher_serves():
    server = data_service.start_dispatcher(0)
    try:
        assert server.target.endswith(f":{data_service.bound_port(server)}")
    finally:
        server.stop()


def test_a_random_op_seeded_zero_draws_anew_in_each_instance():
    """The per-worker seed relies on a random op with seeds 0, 0 drawing from
    the OS: two instances of one graph (as two workers run it) differ."""
    tf.random.set_seed(0)  # as the trainer does; ops built after get fixed seeds
    dataset = tf.data.Dataset.range(4).map(
        lambda _: tf.raw_ops.RandomUniformInt(
            shape=tf.constant([], tf.int32),
            minval=tf.constant(0, tf.int64),
            maxval=tf.constant(2**31 - 1, tf.int64),
            seed=0,
            seed2=0,
        )
    )
    assert list(dataset.as_numpy_iterator()) != list(dataset.as_numpy_iterator())
