"""TensorFlow without its start-up chatter on stderr.

Each binary's `main` calls `start()` before it imports TensorFlow (nothing
happens on import: a library user's process is left as it is). `start()`
does three things:

- sets `TF_CPP_MIN_LOG_LEVEL=2`, which keeps the runtime's INFO and WARNING
  lines (`Sharding callback duration`, ...) off stderr;
- installs an import hook that runs `import tensorflow` (and its first
  platform probe) with the native stderr captured, and then replays every
  line except the known start-up notices: the ones the C++ libraries print
  from static initialisers before absl logging is set up
  (`All log messages before absl::InitializeLog()`, oneDNN, `cudart_stub`,
  `cuInit` on a machine without a GPU), which TF_CPP_MIN_LOG_LEVEL cannot
  reach. Anything else (a real error, a Python warning) still appears. On a
  machine that has a GPU (an NVIDIA device node, or CUDA_VISIBLE_DEVICES
  naming one) the `cuInit` failure is kept: there it explains a silent
  fall-back to the CPU;
- sets absl's verbosity to WARNING unless `--verbosity` was given.

An explicit `TF_CPP_MIN_LOG_LEVEL` of 0 or 1 means the user wants the logs:
then nothing is filtered.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

# Lines TensorFlow 2.21 prints on every start whatever TF_CPP_MIN_LOG_LEVEL says.
_CUINIT_FAILED = r"|cuda_platform\.cc:\d+\] failed call to cuInit"
_NOTICES = (
    r"All log messages before absl::InitializeLog\(\)"
    r"|\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\]"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|cpu_feature_guard\.cc:\d+\]"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|^\s*To enable the following instructions: .* in other operations, rebuild"
)
START_UP_NOTICES = re.compile(_NOTICES + _CUINIT_FAILED)
#: Where a GPU is expected, the `cuInit` failure is news, not chatter.
NOTICES_WITH_GPU = re.compile(_NOTICES)


def gpu_expected():
    """True when this machine seems to have a GPU that TensorFlow should find."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return visible.strip() not in ("", "-1")
    return os.path.exists("/dev/nvidia0")


def wants_native_logs():
    """True when the user asked for TensorFlow's INFO or WARNING lines."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2").strip() in ("0", "1")


@contextlib.contextmanager
def filtered_native_stderr(pattern=None):
    """Captures file descriptor 2 (C++ and Python writes alike) for the
    duration and writes back every line that `pattern` does not match
    (default: the start-up notices, the `cuInit` one only without a GPU)."""
    if pattern is None:
        pattern = NOTICES_WITH_GPU if gpu_expected() else START_UP_NOTICES
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                if not pattern.search(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader of `tensorflow` inside `filtered_native_stderr`."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with filtered_native_stderr():
            self._loader.exec_module(module)
            # Probing the platforms prints the `cuInit` line on machines without
            # a GPU; done here, it is filtered. Logical device configuration is
            # still possible afterwards (the runtime is not initialised).
            module.config.list_physical_devices()

    def __getattr__(self, name):  # resource readers and the like: the real loader's
        return getattr(self._loader, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the next lookup is the real one
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install():
    """Sets the log level and installs the hook unless TensorFlow is already
    loaded or the user asked for its logs. Idempotent."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read once, when TensorFlow loads
    if "tensorflow" in sys.modules or wants_native_logs():
        return
    if not any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())


def start():
    """For a binary's `main`, before TensorFlow is imported: `install()`, and
    absl at WARNING unless `--verbosity` was given (absl's default, INFO,
    lets TensorFlow (`Sharding callback duration` at every checkpoint), tfds
    and matplotlib (imported by Keras) chat on stderr)."""
    from absl import flags, logging

    install()

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
