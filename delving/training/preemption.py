"""Stopping a run on request: a scheduler's SIGTERM, a Ctrl-C, another thread.

A `Stopper` asks `delving.training.loop.train` to stop at the next step
boundary: the compiled step reads its flag before every step, the loop then
checkpoints that step, releases the run directory and raises `Stopped`. In a
multi-worker run a local stop would leave the other workers waiting in an
all-reduce, so `ClusterStop` hands the decision to TensorFlow's
`PreemptionCheckpointHandler`, which makes every worker save the same step.
"""

import logging
import os
import signal
import socket
import sys
import threading

import tensorflow as tf


class Stopped(RuntimeError):
    """Training stopped on request after saving its step; the message is one line."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum


class Stopper:
    """Asks a running `train` to stop at the next step boundary, checkpoint
    that step, release the run directory and raise `Stopped`.

    `request()` may be called from any thread. `on_signals()` makes SIGTERM
    (cluster schedulers) and SIGINT (Ctrl-C) request it, and a second signal
    end the process at once. The compiled step reads the request before every
    step, so a stop does not wait for the end of a call of many steps.
    """

    def __init__(self):
        self.signum = None
        self._requested = threading.Event()
        self._flags = []

    @property
    def requested(self):
        return self._requested.is_set()

    def request(self, signum=signal.SIGTERM):
        if self.signum is None:
            self.signum = signum
        self._requested.set()
        for flag in self._flags:
            flag.assign(True)

    def at_boundary(self, cfg, state):
        """Between two calls of the step: whether to stop here (the caller
        checkpoints this step and raises `Stopped`)."""
        del cfg, state
        return self.requested

    def signal_name(self):
        return signal.Signals(self.signum).name if self.signum else "stop requested"

    def flag(self):
        """A bool variable the compiled step reads: set now and on `request`."""
        flag = tf.Variable(self.requested, trainable=False, name="stop_requested")
        self._flags.append(flag)
        return flag

    @classmethod
    def on_signals(cls, program, signals=(signal.SIGTERM, signal.SIGINT)):
        """A Stopper that SIGTERM and SIGINT trigger (call from the main thread).

        Python runs signal handlers in the main thread only between bytecodes,
        which a thread inside a long TensorFlow call does not reach; the
        wake-up fd is written by the C-level handler at once, so a watcher
        thread sees the signal while the step runs.
        """
        stopper = cls()
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        for signum in signals:
            signal.signal(signum, lambda *_: None)  # the watcher acts on it
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

        def watch():
            while data := reader.recv(1):
                signum = data[0]
                if signum not in signals:
                    continue
                if stopper.requested:  # the second one: at once
                    os._exit(128 + signum)
                print(
                    f"{program}: {signal.Signals(signum).name}: stopping at the next step and "
                    "saving it; send it again to stop at once",
                    file=sys.stderr,
                    flush=True,
                )
                stopper.request(signum)

        threading.Thread(target=watch, name="stop-on-signals", daemon=True).start()
        stopper._sockets = (reader, writer)  # alive as long as the Stopper
        return stopper


def where(cfg, state):
    at, epoch, into = (int(v.numpy()) for v in (state.step, state.epoch, state.epoch_step))
    if epoch >= cfg.epochs or not into:
        return f"step {at} ({epoch} of {cfg.epochs} epochs done)"
    return f"step {at} (epoch {epoch + 1}, {into} of {cfg.steps_per_epoch} steps into it)"


def _not_total_run_calls(record):
    return "total_run_calls" not in record.getMessage()


class ClusterStop(Stopper):
    """Multi-worker: TensorFlow's `PreemptionCheckpointHandler` hears a SIGTERM
    sent to any worker, and at the next boundary every worker saves the same
    step and stops (a local stop would leave the others waiting in an
    all-reduce); the compiled step is never cut short."""

    def __init__(self, cfg, state, strategy, directory):
        super().__init__()
        self.cfg, self.state = cfg, state
        # The handler reads its own deprecated `total_run_calls` on every save.
        logging.getLogger("tensorflow").addFilter(_not_total_run_calls)
        config = tf.distribute.experimental.TerminationConfig(exit_fn=self._exit)
        self.handler = tf.distribute.experimental.PreemptionCheckpointHandler(
            strategy.cluster_resolver, directory.manager, termination_config=config
        )

    def _exit(self):
        raise Stopped(
            f"SIGTERM (in the cluster): stopped at {where(self.cfg, self.state)}; every worker "
            "saved it; rerun the same command on every worker to resume",
            signal.SIGTERM,
        )

    def at_boundary(self, cfg, state):
        """Saves and raises `Stopped` (on every worker) once any worker got a SIGTERM."""
        del cfg
        self.handler.save_checkpoint_if_preempted(checkpoint_number=int(state.step.numpy()))
        return False
