"""Test-wide setup: quiet TensorFlow, two logical CPU devices, the repo on the path.

Two logical CPU devices are configured before anything initialises the
TensorFlow runtime, so that `tf.distribute.MirroredStrategy` tests have two
replicas on a machine with no accelerator. Everything else runs on the first.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import contextlib  # noqa: E402
import importlib  # noqa: E402

# Before TensorFlow, as the binaries do: its start-up notices stay off stderr.
importlib.import_module("pipelines")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
# A runtime already initialised (e.g. under Bazel) keeps its devices.
with contextlib.suppress(RuntimeError):
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
