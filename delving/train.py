r"""Trains one of the paper's networks: `python -m delving.train [flags]`.

With no flags: the built-in dataset (generated offline on first use), the
`builtin` preset, a few CPU minutes. With `--data_dir` (TFRecords) or
`--tfds_name`: for ImageNet's 1000 classes the paper's recipe (`imagenet`
preset; inputs divided by the RGB std and a one-epoch warm-up, without which
model A diverges at once: docs/SCALING.md), e.g.

  python -m delving.train --model=model_a --data_dir=/data/imagenet \
      --model_dir=/runs/model_a_prelu

and for a set of few classes (at most `presets.PHOTOS_MAX_CLASSES`, as
Imagenette's 10) a recipe that trains on a CPU (`photos` preset;
`--preset=imagenet` for the paper's):

  python -m delving.train --data_dir=/data/imagenette

Flags shown with "preset" defaults take their value from the preset unless
given. Running the same command again resumes from the last checkpoint in
--model_dir. SIGTERM or Ctrl-C stops at the next step, checkpoints it and exits
with 143 or 130; a second one exits at once. Multi-worker: set TF_CONFIG on every machine and pass
--strategy=multi_worker with a --model_dir all workers can read.
"""

import sys

from absl import app, flags

# No TensorFlow at import: --help and bad flags answer at once; main()
# imports it after the config is resolved and validated.
from common import cli, errors, quiet_start
from delving.training import config as config_lib
from delving.training import presets

# One flag per TrainConfig field, from its declaration (help, choices, check).
_CONFIG = cli.define_flags(config_lib.TrainConfig, presets=presets.PRESETS)
# Not part of the run's config.
_FORCE = flags.DEFINE_bool(
    "force",
    False,
    "take --model_dir over from the run that holds it (its lock.json), e.g. one "
    "on another host that is known to be gone; a dead process's lock on this "
    "host is taken over without it.",
)


def _check_paths(cfg):
    """Every path flag names what it should, and --data_dir holds shards: one
    line naming the flag if not (reads the file system, so after the config)."""
    cli.check_paths(
        files={"labels_file": cfg.labels_file},
        dirs={"data_dir": cfg.data_dir, "tfds_manual_dir": cfg.tfds_manual_dir},
        output_dirs={"model_dir": cfg.model_dir, "tfds_data_dir": cfg.tfds_data_dir},
    )
    if not cfg.data_dir:
        return
    from pipelines import imagenet  # loads TensorFlow: only for --data_dir

    try:
        for split in ("train", "validation"):
            imagenet.list_files(cfg.data_dir, split)
    except errors.DataError as e:
        raise errors.DataError(f"--data_dir: {e}") from None


def main(argv):
    cli.no_arguments("delving.train", argv)
    quiet_start.start()  # before --data_dir's check, which loads TensorFlow
    try:
        cfg = config_lib.resolve_config(**{k: h.value for k, h in _CONFIG.items()})
        _check_paths(cfg)
    except ValueError as e:  # DataError included
        sys.exit(f"delving.train: error: {e}")
    import tensorflow as tf

    from delving.training import loop

    tf.get_logger().setLevel("WARNING")  # no INFO line per checkpoint save
    stop = loop.Stopper.on_signals("delving.train")
    with cli.exit_on_user_error("delving.train", also=(loop.TrainingDiverged, *loop.USER_ERRORS)):
        try:
            loop.train(cfg, force=_FORCE.value, stop=stop)
        except loop.Stopped as e:
            print(f"delving.train: {e}", file=sys.stderr, flush=True)
            sys.exit(128 + e.signum)  # the shell's convention: 143 for SIGTERM, 130 for SIGINT


if __name__ == "__main__":
    app.run(main)
