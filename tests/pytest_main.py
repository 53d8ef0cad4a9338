"""Entry point Bazel's py_test runs: pytest on the test file given as argument."""

import os
import sys

import pytest

if __name__ == "__main__":
    # Bazel runs tests from the runfiles tree: make it the rootdir so that
    # tests/conftest.py and pytest.ini apply exactly as in a plain pytest run.
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(pytest.main(["-p", "no:cacheprovider", "-q", *sys.argv[1:]]))
