r"""Training input images/s: the local pipeline vs a tf.data service with 1 and 2 workers.

The trainer's stream (`pipelines.imagenet.make_dataset`, the paper's
augmentation, uint8 batches as `delving.train` reads them) made three ways,
side by side in one run:

  0 workers   the local pipeline, in this process
  1 worker    sent to a dispatcher with one worker process
  2 workers   sent to a dispatcher with two worker processes

The workers are real `delving-data-service` processes
(`python -m pipelines.data_service_server`), started once; each variant gets
a fresh job (a fresh iterator) per repeat, timed over `--num_images` after 8
untimed batches, in round robin (`benchmarks/compare.py`): spreads are
min-max over repeats. The workers run on THIS host and share its cores with
the reader, so on a small machine this measures the service's overhead
(serialising batches, gRPC), not its scaling, which needs workers on other
machines.

  python benchmarks/data_service.py [--data_dir=/data/imagenette-records] \
      [--num_images=1024] [--repeats=3]

Without --data_dir it writes synthetic photo-like shards (as
benchmarks/input_pipeline.py does) to a temporary directory.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import compare  # noqa: E402
import input_pipeline  # noqa: E402
import model_step  # noqa: E402

from pipelines import data_service, imagenet, sources  # noqa: E402
from pipelines.config import InputConfig  # noqa: E402

BATCH = 32
WORKER_COUNTS = (1, 2)


def _server(*args):
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.data_service_server", *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES=""),
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if "serving at" not in line:
        raise RuntimeError(f"delving-data-service did not start: {line!r}")
    return proc, line


def start_cluster(num_workers):
    """(dispatcher address grpc://localhost:port, [processes])."""
    dispatcher, line = _server("--role=dispatcher", "--worker_timeout_ms=5000")
    port = int(line.rsplit("(port ", 1)[1].rstrip(")\n"))
    procs = [dispatcher]
    for _ in range(num_workers):
        procs.append(
            _server(
                "--role=worker",
                f"--dispatcher=localhost:{port}",
                "--host=localhost",
                "--heartbeat_interval_ms=500",  # an abandoned job's task ends quickly
            )[0]
        )
    return f"grpc://localhost:{port}", procs


def images_per_second(make_dataset, num_images, skip=8):
    """Images per wall second over `num_images` of a fresh iterator."""
    iterator = iter(make_dataset())
    for _ in range(skip):
        next(iterator)
    count, start = 0, time.perf_counter()
    while count < num_images:
        count += int(next(iterator)[1].shape[0])
    return count / (time.perf_counter() - start)


def _load():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", help="ImageNet-schema TFRecords; default: synthetic ones")
    parser.add_argument("--num_images", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir
        if not data_dir:
            data_dir = tmp
            input_pipeline.write_shards(tmp, 512)
        config = InputConfig(batch_size=BATCH, seed=0, repeat=True, normalize=False)
        source = sources.DataSource(data_dir=data_dir, num_classes=None, input=config)
        num_classes = len(source.class_list())

        def reader(**changes):
            return imagenet.make_dataset(
                data_dir,
                "train",
                config.replace(**changes),
                is_training=True,
                num_classes=num_classes,
            )

        clusters = {n: start_cluster(n) for n in WORKER_COUNTS}
        try:
            jobs = iter(range(10**6))
            variants = {"0 workers (local)": lambda: reader()}
            for n, (address, _) in clusters.items():
                variants[f"{n} worker{'s' * (n > 1)}"] = lambda address=address: (
                    data_service.distribute(
                        reader(seed_per_worker=True), address, job_name=f"bench-{next(jobs)}"
                    )
                )
            gflops = max(model_step.matmul_flops(1024, 5, 3)) / 1e9
            print(
                f"data: {data_dir}; {os.cpu_count()} CPUs, load {_load()}, "
                f"float32 matmul {gflops:.0f} GFLOP/s; batch {BATCH}, "
                f"{args.num_images} images per timing, {args.repeats} repeats"
            )
            for make in variants.values():  # warm-up: tracing, page cache, workers' start
                images_per_second(make, BATCH * 4)
            rates = compare.interleaved(
                {
                    name: (lambda make=make: images_per_second(make, args.num_images))
                    for name, make in variants.items()
                },
                args.repeats,
            )
        finally:
            for _, procs in clusters.values():
                for proc in procs:
                    proc.terminate()
                    proc.communicate()
    local = "0 workers (local)"
    print("\n| input | images/s, median [min-max] | / local, paired per repeat |")
    print("| --- | ---: | ---: |")
    for name, values in rates.items():
        median, low, high = compare.spread(values)
        ratio = compare.format_ratio(compare.paired_ratio(rates, name, local))
        print(f"| {name} | {median:.0f} [{low:.0f}-{high:.0f}] | {ratio} |")
    for line in compare.warnings(rates, [(name, local) for name in rates if name != local]):
        print(line)
    print(
        f"\nload after: {_load()}. The workers share this host's {os.cpu_count()} cores with "
        "the reader: this measures the service's overhead, not its scaling."
    )


if __name__ == "__main__":
    main()
