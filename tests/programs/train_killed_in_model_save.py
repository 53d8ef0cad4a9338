"""delving.train, killed by SIGKILL inside its final model.keras save: once
Keras has written the temporary zip and before it is renamed into place.

Usage: train_killed_in_model_save.py [delving.train flags...]
Deterministic, where polling for the temporary file from outside can miss a
save of a few tens of milliseconds on a loaded machine. Run by
tests/test_training_run_dir.py.
"""

import os
import runpy
import signal
import sys

import tensorflow as tf

rename = tf.io.gfile.rename


def killing_rename(src, dst, *args, **kwargs):
    if os.path.basename(src).startswith("model.keras.tmp-"):
        os.kill(os.getpid(), signal.SIGKILL)
    return rename(src, dst, *args, **kwargs)


tf.io.gfile.rename = killing_rename
sys.argv = ["delving.train", *sys.argv[1:]]
runpy.run_module("delving.train", run_name="__main__", alter_sys=True)
