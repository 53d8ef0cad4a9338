"""Importing the package, as `python -m <package>.<binary>` does first, keeps
TensorFlow's C++ INFO and WARNING lines (CUDA probing, `Sharding callback
duration`, ...) off stderr; an explicit TF_CPP_MIN_LOG_LEVEL wins."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read once, when TensorFlow loads
