r"""Runs a binary with its host CPU split into N logical devices.

  python tools/cpu_replicas.py 2 delving.train --strategy=mirrored --data_dir=...

`--strategy=mirrored` on a host without accelerators mirrors over the logical
CPU devices, and TensorFlow makes one unless told otherwise before its runtime
starts, which no flag of the binaries does: this splits it (the way
tests/conftest.py does), then runs the module as `python -m` would. The
replicas share the host's cores and memory: it checks the distributed path
end to end (a dry run, a test), it does not make training faster.
"""

import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    if len(sys.argv) < 3 or not sys.argv[1].isdigit() or int(sys.argv[1]) < 1:
        sys.exit("usage: python tools/cpu_replicas.py N MODULE [FLAGS...] (N >= 1)")
    count, module = int(sys.argv[1]), sys.argv[2]
    from common import quiet_start

    quiet_start.install()  # before TensorFlow loads, as the binaries do
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    devices = [tf.config.LogicalDeviceConfiguration()] * count
    tf.config.set_logical_device_configuration(cpu, devices)
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
