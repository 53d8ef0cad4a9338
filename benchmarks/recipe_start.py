"""The first SGD steps of a preset's recipe on real photos, variant by variant.

Measures what decides whether a recipe starts at all: the std of every
layer's output at initialisation (one forward pass, dropout off) next to the
Sec. 2.2 prediction, the initial loss, and the loss of the first steps of
the real training step (the trainer's optimizer, dropout on) on the same
batches for every variant. Run under `nice`, on a shared machine the times
mean little; the losses do not depend on them.

    python benchmarks/recipe_start.py --data_dir=/path/to/records \
        --variants=paper,input_std,he_fan_in --steps=8 --batch_size=8
"""

import dataclasses
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

# Variant name -> the TrainConfig fields it sets over the preset; each names
# both fields, so a variant means the same whatever the preset holds.
VARIANTS = {
    "paper": dict(input_std=False, init="he_fan_out"),
    "input_std": dict(input_std=True, init="he_fan_out"),
    "he_fan_in": dict(input_std=False, init="he_fan_in"),
    "input_std+he_fan_in": dict(input_std=True, init="he_fan_in"),
}

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "TFRecords (train-*, labels.txt) of real photos.")
flags.DEFINE_string("preset", "imagenet", "the recipe whose start is measured")
flags.DEFINE_string("model", "model_a", "network")
flags.DEFINE_list("variants", ["paper", "input_std"], ", ".join(VARIANTS))
flags.DEFINE_integer("steps", 8, "SGD steps per variant (0: the forward measurement only)")
flags.DEFINE_integer("batch_size", 8, "images a step")
flags.DEFINE_integer("num_classes", 1000, "fc3 units (the recipe's; labels of the data fit below)")
flags.DEFINE_integer("data_classes", 10, "classes in the records' labels")
flags.DEFINE_bool("layers", True, "also the layer-by-layer std at init")
flags.DEFINE_float("learning_rate", None, "overrides the recipe's rate")
flags.DEFINE_integer("warmup_steps", 0, "linear warm-up over this many steps (the trainer's ramp)")
flags.mark_flag_as_required("data_dir")


def _batches(cfg, count):
    """`count` training batches (augmented as the trainer's, uint8-range
    floats with the mean subtracted, not divided by the std) and labels."""
    import tensorflow as tf

    from delving.training import inputs
    from pipelines import imagenet

    config = dataclasses.replace(inputs.input_config(cfg), std=None, seed=0, shuffle_buffer=256)
    ds = imagenet.make_dataset(
        FLAGS.data_dir,
        "train",
        config,
        is_training=True,
        num_classes=FLAGS.data_classes,
        label_offset=cfg.label_offset,
    )
    out = [(tf.identity(x), tf.identity(y)) for x, y in ds.take(count)]
    return out


def _layer_stds(model, images):
    """[(name, std of output)] through trunk and head (both chains)."""
    import keras
    import numpy as np

    rows, x = [], images
    for part in ("trunk", "head"):
        for layer in model.get_layer(part).layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            x = layer(x, training=False)
            rows.append((layer.name, float(np.std(x))))
    return rows


def _predicted(model, input_ms, slope):
    """Sec. 2.2's forward prediction per weight layer: Var[y_l] = n_l Var[w_l]
    E[x_l^2], E[x_l^2] = (1 + a^2)/2 Var[y_{l-1}], E[x_1^2] the input's; max
    pooling (which raises E[x^2]) is outside the analysis."""
    import keras
    import numpy as np

    rows, ms = {}, input_ms
    first = True
    for part in ("trunk", "head"):
        for layer in model.get_layer(part).layers:
            if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
                continue
            kernel = layer.kernel.numpy()
            n = int(np.prod(kernel.shape[:-1]))
            var = (n * float(np.var(kernel))) * (ms if first else (1 + slope**2) / 2 * ms)
            rows[layer.name] = math.sqrt(var)
            ms, first = var, False
    return rows


def _train_step(model, optimizer):
    """The trainer's objective without weight decay's reported term: the
    mean cross-entropy, one SGD update (decay is inside the optimizer)."""
    import tensorflow as tf

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=out)
            )
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    from delving.models import from_config
    from delving.training import config as config_lib
    from delving.training import optimizer as optimizer_lib

    base = config_lib.resolve_config(
        FLAGS.preset,
        model=FLAGS.model,
        num_classes=FLAGS.num_classes,
        batch_size=FLAGS.batch_size,
        data_dir=FLAGS.data_dir,
        learning_rate=FLAGS.learning_rate,
    )
    batches = _batches(base, max(1, FLAGS.steps))
    results = {}
    for name in FLAGS.variants:
        cfg = dataclasses.replace(base, **VARIANTS[name])
        keras.backend.clear_session()
        keras.utils.set_random_seed(cfg.seed)
        model = from_config.build(cfg, seed=cfg.seed)
        std = np.array(from_config.input_std(cfg) or (1.0, 1.0, 1.0), np.float32)
        inputs = [(x / std, y) for x, y in batches]
        x0, y0 = inputs[0]
        row = {"config": VARIANTS[name], "input_std": float(np.std(x0))}
        logits = model(x0, training=False)
        row["logit_std"] = float(np.std(logits))
        row["initial_loss"] = float(
            np.mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y0, logits=logits))
        )
        if FLAGS.layers:
            measured = _layer_stds(model, x0)
            predicted = _predicted(model, float(np.mean(np.square(x0))), 0.25)
            row["layers"] = [(n, s, predicted.get(n)) for n, s in measured]
        print(name, json.dumps({k: v for k, v in row.items() if k != "layers"}), flush=True)
        for n, s, p in row.get("layers", []):
            print(f"  {n:14s} {s:12.4g} {'' if p is None else f'{p:12.4g}'}", flush=True)
        if FLAGS.steps:
            # The ramp in steps: at ImageNet's 10,009 steps an epoch any warm-up
            # given in epochs is still near 0 over the few steps measured here.
            cfg = dataclasses.replace(cfg, warmup_epochs=1.0)
            opt, _, _ = optimizer_lib.for_config(cfg, model, steps_per_epoch=FLAGS.warmup_steps)

            step = _train_step(model, opt)
            losses = []
            for i, (x, y) in enumerate(inputs[: FLAGS.steps]):
                start = time.time()
                losses.append(float(step(x, y)))
                slope = max(
                    float(np.max(np.abs(v.numpy())))
                    for v in model.trainable_variables
                    if "prelu" in v.path
                )
                print(
                    f"  step {i + 1}: loss {losses[-1]:.4g}, then max |PReLU slope| {slope:.3g}"
                    f" ({time.time() - start:.0f} s)",
                    flush=True,
                )
            slopes = [
                float(np.max(np.abs(v.numpy())))
                for v in model.trainable_variables
                if "prelu" in v.path
            ]
            row["losses"] = losses
            row["max_abs_prelu_slope"] = max(slopes) if slopes else None
            print(name, "losses", losses, "max |slope|", row["max_abs_prelu_slope"], flush=True)
        results[name] = row
        del model
    json.dump(results, sys.stdout, indent=1)


if __name__ == "__main__":
    app.run(main)
