r"""Prints a network's layers with output shapes, parameters and multiply-adds.

The figures are computed from the built model (`delving.models.stats`), at
one square image size, per image. With --device_tflops it also projects the
paper's training schedule (80 epochs of ImageNet's 1.28 M images) on such a
device at an assumed --utilisation of its peak: arithmetic, not a measurement
(`delving.train` prints one measured on the real hardware).

Example:
  python -m delving.summary --model=model_a
  python -m delving.summary --model=small_14 --activation=prelu_shared \
      --image_size=256
  python -m delving.summary --model=model_a --device_tflops=312 --utilisation=0.4
"""

from absl import app, flags

# Only the specs (no TensorFlow) at import: flag errors and --help are
# instant; TensorFlow loads in main().
from delving.models import specs

_MODEL = flags.DEFINE_enum(
    "model", "model_a", specs.MODEL_NAMES, "Network of the paper to summarise."
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 224, "Side of the square input image.", lower_bound=1
)
_ACTIVATION = flags.DEFINE_enum(
    "activation", "prelu", specs.ACTIVATIONS, "Rectifier after every weight layer."
)
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 1000, "Units of fc3.", lower_bound=1)
_WIDTH_MULTIPLIER = flags.DEFINE_float(
    "width_multiplier", 1.0, "Scales every conv's filter count (> 0)."
)
flags.register_validator(
    "width_multiplier", lambda value: value > 0, message="--width_multiplier must be > 0"
)
_FC_UNITS = flags.DEFINE_integer("fc_units", specs.FC_UNITS, "Width of fc1 and fc2.", lower_bound=1)
_DATA_FORMAT = flags.DEFINE_enum(
    "data_format",
    "channels_last",
    ["channels_last", "channels_first"],
    "Layout of the image tensor.",
)
_DEVICE_TFLOPS = flags.DEFINE_float(
    "device_tflops",
    None,
    "Peak TFLOP/s of one training device (e.g. 312 for an A100 in bfloat16); given, the "
    "paper's schedule is projected on it.",
)
flags.register_validator(
    "device_tflops",
    lambda value: value is None or value > 0,
    message="--device_tflops must be > 0",
)
_UTILISATION = flags.DEFINE_float(
    "utilisation", 0.4, "Assumed fraction of --device_tflops that training reaches, in (0, 1]."
)
flags.register_validator(
    "utilisation", lambda value: 0 < value <= 1, message="--utilisation must be in (0, 1]"
)


def main(argv):
    from common import cli, quiet_start

    cli.no_arguments("delving.summary", argv)
    quiet_start.start()
    from delving import paper
    from delving.models import networks, stats  # TensorFlow: only now
    from delving.training import estimate
    from pipelines import sources

    model = networks.build_model(
        _MODEL.value,
        num_classes=_NUM_CLASSES.value,
        activation=_ACTIVATION.value,
        width_multiplier=_WIDTH_MULTIPLIER.value,
        fc_units=_FC_UNITS.value,
        data_format=_DATA_FORMAT.value,
        seed=0,
    )
    layers = stats.layer_stats(model, _IMAGE_SIZE.value)
    params, macs = stats.totals(layers)
    size = _IMAGE_SIZE.value
    side = networks.feature_map_size(_MODEL.value, size)
    print(
        f"{_MODEL.value} ({_ACTIVATION.value}), input {size}x{size}x3, "
        f"trunk output {side}x{side} "
        f"(total stride {networks.total_stride(_MODEL.value)})"
    )
    print(stats.format_table(layers))
    print(f"total params: {params:,} ({params / 1e6:.2f} M)")
    print(f"total multiply-adds per image: {macs:,} ({macs / 1e9:.2f} G)")
    flops = estimate.training_flops_per_image(macs)
    print(
        f"training FLOPs per image: {flops:,} ({flops / 1e9:.2f} G; "
        "forward and backward, 3 x the forward's 2 FLOPs per multiply-add)"
    )
    if _DEVICE_TFLOPS.value:
        images = sources.IMAGENET_TRAIN_EXAMPLES
        seconds = estimate.paper_schedule_s(
            flops,
            device_tflops=_DEVICE_TFLOPS.value,
            utilisation=_UTILISATION.value,
            images=images,
        )
        print(
            f"projection, not a measurement: the paper's {paper.TRAINING_EPOCHS} epochs of "
            f"{images:,} images take {estimate.duration(seconds)} on one device of "
            f"{_DEVICE_TFLOPS.value:g} TFLOP/s at an assumed {_UTILISATION.value:.0%} of it"
        )


if __name__ == "__main__":
    app.run(main)
