"""delving.training.inputs: the trainer's input through a real tf.data service
(a dispatcher and two workers on localhost) against the local pipeline, on
real JPEG records whose crops tell their scale and flip."""

import gc
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

from delving.training import config as config_lib
from delving.training import inputs, setup
from pipelines import preprocessing
from tests import data_service_testutil, train_testutil

NUM_SHARDS, PER_SHARD = 4, 32
IMAGE_SIZE, SCALES = 32, (40, 64)
BATCHES, BATCH = 20, 16  # 320 crops per pipeline: 2.5 passes


@pytest.fixture(scope="module")
def ramp_dir(tmp_path_factory):
    return data_service_testutil.ramp_shards(
        str(tmp_path_factory.mktemp("ramps")), num_shards=NUM_SHARDS, per_shard=PER_SHARD
    )


def _cfg(data_dir, model_dir, **changes):
    return config_lib.resolve_config(
        data_dir=data_dir,
        model_dir=str(model_dir),
        image_size=IMAGE_SIZE,
        scale_range=SCALES,
        eval_resize=SCALES[0],
        batch_size=BATCH,
        num_classes=NUM_SHARDS * PER_SHARD,
        **changes,
    )


def _stream(cfg):
    """The trainer's iterator over `make_train_dataset`, as `loop` makes it."""
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    source = inputs.source_from_config(cfg)
    return iter(inputs.make_train_dataset(cfg, source, strategy, seed=0))


def _crops(cfg, batches=BATCHES):
    stream = _stream(cfg)
    pixels, shifts = [], []
    for _ in range(batches):
        features, _ = next(stream)
        pixels.append(features["pixels"].numpy())
        shifts.append(features["lighting"].numpy())
    return np.concatenate(pixels), np.concatenate(shifts)


@pytest.fixture(scope="module")
def local_and_service(ramp_dir, tmp_path_factory):
    """{"local": (pixels, shifts), "service": (pixels, shifts)}."""
    model_dir = tmp_path_factory.mktemp("run")
    out = {"local": _crops(_cfg(ramp_dir, model_dir))}
    with data_service_testutil.servers(2) as (address, _):
        out["service"] = _crops(_cfg(ramp_dir, model_dir, data_service=address))
    return out


def _scales(crops):
    return data_service_testutil.crop_geometry(crops[0], image_size=IMAGE_SIZE)[0]


# U[40, 64]: mean 52, std 24 / sqrt(12) = 6.9. With 320 crops the sample mean's
# standard error is 0.39 and the std's 0.28; the tolerances are ~4 of those
# plus the estimate's own error (JPEG, bilinear), which the local pipeline
# shows. A missing scale jitter gives std ~0, a missing flip 0 flips.
@pytest.mark.parametrize("pipeline", ["local", "service"])
def test_crop_scales_follow_the_scale_range(local_and_service, pipeline):
    scales = _scales(local_and_service[pipeline])
    assert abs(scales.mean() - 52.0) < 2.0, scales.mean()
    assert abs(scales.std() - 24 / np.sqrt(12)) < 1.5, scales.std()


def test_service_crop_scales_match_the_local_pipeline(local_and_service):
    local, service = (_scales(local_and_service[k]) for k in ("local", "service"))
    assert abs(service.mean() - local.mean()) < 1.5
    assert abs(service.std() - local.std()) < 1.5


@pytest.mark.parametrize("pipeline", ["local", "service"])
def test_half_the_crops_are_flipped(local_and_service, pipeline):
    crops = local_and_service[pipeline][0]
    flipped = data_service_testutil.crop_geometry(crops, image_size=IMAGE_SIZE)[1]
    assert abs(flipped.mean() - 0.5) < 0.12, flipped.mean()


def _lighting_std():
    """Per channel: the std of EIGVEC @ (alpha * EIGVAL), alpha ~ N(0, 0.1)."""
    vectors, values = np.array(preprocessing.EIGVEC), np.array(preprocessing.EIGVAL)
    return 0.1 * np.sqrt(((vectors * values) ** 2).sum(axis=1))


@pytest.mark.parametrize("pipeline", ["local", "service"])
def test_lighting_shifts_have_the_pca_noise_std(local_and_service, pipeline):
    shifts = local_and_service[pipeline][1]
    expected = _lighting_std()
    np.testing.assert_allclose(shifts.std(axis=0), expected, rtol=0.2)
    assert np.all(np.abs(shifts.mean(axis=0)) < 0.3 * expected)


def test_service_crops_are_all_augmented_differently(local_and_service):
    """Both workers run one graph; identical seeds would repeat each draw."""
    shifts = local_and_service["service"][1]
    assert len(np.unique(shifts, axis=0)) == len(shifts)


def test_service_batches_split_over_mirrored_replicas(ramp_dir, tmp_path):
    strategy = setup.make_strategy("mirrored")  # the two logical CPUs of conftest
    with data_service_testutil.servers(2) as (address, _):
        cfg = _cfg(ramp_dir, tmp_path, data_service=address, strategy="mirrored")
        source = inputs.source_from_config(cfg)
        _, labels = next(iter(inputs.make_train_dataset(cfg, source, strategy, seed=0)))
        sizes = [int(t.shape[0]) for t in strategy.experimental_local_results(labels)]
    assert sizes == [BATCH // 2, BATCH // 2]


def test_replicas_of_one_run_share_one_job_name(tmp_path):
    cfg = _cfg("/d", tmp_path / "run", data_service="grpc://d:1")
    assert inputs.service_job_name(cfg, 7) == f"delving.train:{tmp_path / 'run'}:seed7"


def _start_server(*args):
    proc = train_testutil.start("pipelines.data_service_server", list(args))
    line = proc.stdout.readline()
    assert "serving at" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, line


def test_a_worker_killed_mid_epoch_does_not_stop_the_input(ramp_dir, tmp_path):
    """Worker processes started through the console script's module; one is
    SIGKILLed after a few batches, the trainer's stream goes on over the other."""
    procs, stream = [], None
    try:
        dispatcher, line = _start_server("--role=dispatcher", "--worker_timeout_ms=3000")
        procs.append(dispatcher)
        port = int(line.rsplit("(port ", 1)[1].rstrip(")\n"))
        for _ in range(2):
            procs.append(
                _start_server(
                    "--role=worker",
                    f"--dispatcher=localhost:{port}",
                    "--host=localhost",
                    "--heartbeat_interval_ms=500",
                )[0]
            )
        stream = _stream(_cfg(ramp_dir, tmp_path, data_service=f"grpc://localhost:{port}"))
        for _ in range(3):  # both workers are serving the first pass
            next(stream)
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait()
        start = time.monotonic()
        labels = np.concatenate([next(stream)[1].numpy() for _ in range(3 * BATCHES)])
        assert len(labels) == 3 * BATCHES * BATCH
        assert len(np.unique(labels)) == NUM_SHARDS * PER_SHARD  # every record still read
        assert procs[2].poll() is None and dispatcher.poll() is None
        print(f"{3 * BATCHES} batches after the kill in {time.monotonic() - start:.1f} s")
    finally:
        # The iterator first, while its servers still answer: destroyed after
        # them, it waits for ever on the requests it has in flight.
        del stream
        gc.collect()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=train_testutil.HANG_GUARD_S)
