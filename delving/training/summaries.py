"""What TensorBoard shows of a run beyond its losses: how the PReLU slopes
unfold over training (the paper's Table 1, epoch by epoch) and the run's
hyperparameters (the HPARAMS tab, to compare runs side by side).

```
logs/train                          (beside the losses the loop writes)
  epoch                      epochs done, at step 0 and at each epoch's last global step:
                             the epoch ends among the global steps
  prelu_slope/<layer>        mean slope of each PReLU layer (Table 1's number)
  prelu_slope_hist/<layer>   histogram of a channel-wise layer's slopes
  prelu_slopes/<layer>       a channel-wise layer's slopes themselves (a plain tensor,
                             which no dashboard shows: what `slope_history` reads back)
logs/                               (the run's session in the HPARAMS tab)
  hparams config and values  every TrainConfig field; metrics: validation/top1_err,
                             validation/top5_err, train/loss
```

The slopes are read to the host once per epoch end, where the loop waits for
the step anyway: no host sync per step. Only the chief reads and writes them.

`TrainSummaries` is an object the loop carries, as it carries the run
directory; `slope_history` reads a finished (or running) run back.
"""

import dataclasses
import os

import keras
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import api as hp
from tensorboard.summary import v2 as tb_summary
from tensorboard.util import tensor_util

from common import fields
from delving.models import networks
from delving.training import config as config_lib
from delving.training import run_dir

EPOCH_TAG = "epoch"
SLOPE_TAG = "prelu_slope/"
HISTOGRAM_TAG = "prelu_slope_hist/"
CHANNELS_TAG = "prelu_slopes/"

#: The HPARAMS tab's metrics: (run under logs/, tag the loop writes there).
METRICS = (
    ("validation", "top1_err", hp.Metric.VALIDATION),
    ("validation", "top5_err", hp.Metric.VALIDATION),
    ("train", "loss", hp.Metric.TRAINING),
)


def _hparam(f):
    kind, _ = fields.value_type(config_lib.TrainConfig, f.name)
    choices = f.metadata.get("choices")
    if choices:
        domain = hp.Discrete(list(choices))
    elif kind is bool:
        domain = hp.Discrete([False, True])
    else:  # an interval from one run's value would hide the other runs' in the tab
        domain = None
    return hp.HParam(f.name, domain, description=f.metadata.get("help"))


#: One per TrainConfig field, the same for every run: whichever run's copy of
#: the config TensorBoard picks describes them all.
HPARAMS = tuple(_hparam(f) for f in dataclasses.fields(config_lib.TrainConfig))


def hparam_values(cfg):
    """{field: value} as the hparams plugin takes them: lists as `a,b`,
    fields left unset (None) out."""
    values = {}
    for name, value in dataclasses.asdict(cfg).items():
        if value is None:
            continue
        values[name] = fields.shown(value) if isinstance(value, list | tuple) else value
    return values


class TrainSummaries:
    """Writes a run's slopes and hyperparameters with its `RunDir`'s writers.

    Args:
      directory: the open `run_dir.RunDir`.
      model: the model being trained (its PReLU layers are found once).
    """

    def __init__(self, directory, model):
        self._directory = directory
        # Off the chief nothing is written: no slopes read, no summary ops run.
        self._layers = networks.prelu_layers(model) if directory.chief else None

    def write_hparams(self, cfg):
        """The hparams config and this run's values under logs/. A resumed run
        writes them again; TensorBoard keeps the first of a run."""
        if self._layers is None:
            return
        writer = self._directory.writer("")
        metrics = [hp.Metric(tag, group=group, dataset_type=kind) for group, tag, kind in METRICS]
        with writer.as_default():
            hp.hparams_config(hparams=list(HPARAMS), metrics=metrics)
            hp.hparams(hparam_values(cfg))
        writer.flush()

    def write_slopes(self, epoch, step):
        """Each PReLU layer's slopes after `epoch` epochs, at global `step`
        (nothing but the epoch for a network without PReLU)."""
        if self._layers is None:
            return
        writer = self._directory.writer("train")
        with writer.as_default(step=step):
            tb_summary.scalar(EPOCH_TAG, epoch)
            for layer in self._layers:
                slopes = keras.ops.convert_to_numpy(layer.alpha).reshape(-1)
                tb_summary.scalar(SLOPE_TAG + layer.name, float(slopes.mean()))
                if not layer.channel_shared:
                    tb_summary.histogram(HISTOGRAM_TAG + layer.name, slopes)
                    tf.summary.write(CHANNELS_TAG + layer.name, tf.constant(slopes))
        writer.flush()


def slope_history(model_dir):
    """The PReLU slopes a run logged, read from its TensorBoard event files.

    Returns:
      {layer_name: [(epoch, mean slope, channel slopes or None), ...]} in
      network order, by epoch (0: the initial slopes); the channel slopes are
      a float32 array for a channel-wise layer, None for a channel-shared one.
      An epoch logged twice (redone after a resume) gives its last values.
      Empty for a run without PReLU or without logs.
    """
    path = os.path.join(run_dir.paths(model_dir)["tensorboard"], "train")
    if not tf.io.gfile.isdir(path):
        return {}
    # 0: keep every event (the default keeps a sample of 10 per tag).
    logs = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.TENSORS: 0})
    logs.Reload()
    tags = logs.Tags()["tensors"]
    if EPOCH_TAG not in tags:
        return {}

    def by_step(tag):
        return {e.step: tensor_util.make_ndarray(e.tensor_proto) for e in logs.Tensors(tag)}

    epochs = {step: int(value) for step, value in by_step(EPOCH_TAG).items()}
    history = {}
    for tag in tags:
        if not tag.startswith(SLOPE_TAG):
            continue
        layer = tag[len(SLOPE_TAG) :]
        channels = by_step(CHANNELS_TAG + layer) if CHANNELS_TAG + layer in tags else {}
        rows = {}
        for step, mean in sorted(by_step(tag).items()):
            rows[epochs[step]] = (epochs[step], float(mean), channels.get(step))
        history[layer] = [rows[epoch] for epoch in sorted(rows)]
    return history
