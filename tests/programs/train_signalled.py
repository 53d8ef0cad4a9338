"""`python -m delving.train` that sends itself a signal at one point of the run.

Usage: python tests/programs/train_signalled.py POINT SIGNAL [delving.train flags]

POINT is where the signal is sent, from inside the real binary:
  start-up     while the run is being prepared (nothing written yet)
  mid-epoch    from a timer while the second call of the compiled step runs
  checkpoint   inside the first checkpoint save
  evaluation   as the first validation starts
  final-save   inside the save of model.keras
SIGNAL is TERM or INT. Everything else is the real binary's code path.
"""

import os
import runpy
import signal
import sys
import threading

point, signum = sys.argv[1], getattr(signal, "SIG" + sys.argv[2])


def _send():
    os.kill(os.getpid(), signum)


def _around(owner, name, *, before=_send, once=True):
    original = getattr(owner, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if not once or len(calls) == 1:
            before()
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


if point == "start-up":
    from delving.training import setup

    _around(setup, "prepare")
elif point == "mid-epoch":
    from delving.training import step

    make = step.make_train_step

    def make_train_step(*args, **kwargs):
        train_steps = make(*args, **kwargs)
        calls = []

        def signalled(*a):
            calls.append(1)
            if len(calls) == 2:  # the first call traced the step; this one runs many
                timer = threading.Timer(0.5, _send)
                timer.daemon = True
                timer.start()
            return train_steps(*a)

        return signalled

    step.make_train_step = make_train_step
elif point == "checkpoint":
    from delving.training import run_dir

    _around(run_dir.RunDir, "save")
elif point == "evaluation":
    from delving.evaluation import validation

    _around(validation.Evaluator, "run")
elif point == "final-save":
    from delving.training import run_dir

    _around(run_dir.RunDir, "save_model")
else:
    sys.exit(f"unknown point {point}")

sys.argv = ["delving.train", *sys.argv[3:]]
runpy.run_module("delving.train", run_name="__main__", alter_sys=True)
