r"""Signal propagation at initialization (Sec. 2.2, Eq. 9 and 13 of the paper).

Measures, layer by layer, the standard deviation of the conv responses `y_l`
(forward) and of the gradients `dE/dx_l` reaching each conv layer's input
(backward), in freshly initialized networks, for He fan-in (Eq. 10), He fan-out
(Eq. 14) and "Xavier" (Var[w] = 1/n, docs/PAPER.md, "Xavier"):

  * the trunk of `small_30` (Fig. 3's 30-layer model: 27 conv layers), at the
    paper's 224 px and at the convergence experiment's 64 px crops, and
  * a plain stack of 30 conv (3x3, circular padding) + ReLU layers of constant width.

The backward pass starts from a standard-normal gradient on the trunk's output
(E = sum(output * g)), so both directions are measured in the same run.

The theoretical line: ReLU, max pooling and bias-free convolution are all
positively homogeneous, so scaling layer `l`'s weights by `s_l` scales `y_l`
by `s_1 ... s_l` and `dE/dx_l` by `s_l ... s_L`. Against He fan-in, Xavier's
`s_l = 1/sqrt(2)` gives the `(1/sqrt(2))^l` decay of Eq. 9 (and of Eq. 13
backward), whatever the pools do; fan-out gives `sqrt(n_l / n^_l)` per layer,
a product that telescopes to `sqrt(c_1 / d_L)` rather than an exponential.

Usage:
  python -m delving.experiments.signal_propagation --output_dir=/tmp/signal [--quick]
"""

import math
import time

from absl import app, flags, logging

from common import cli

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", "runs/experiments/signal_propagation", "Where the table, JSON and figure go."
)
_QUICK = flags.DEFINE_bool("quick", False, "Tiny shapes, for tests: seconds instead of a minute.")
_INITS = flags.DEFINE_list("inits", "he_fan_in,he_fan_out,xavier", "Initializations to compare.")
_IMAGE_SIZES = cli.define_int_list(
    "image_sizes",
    None,
    "small_30 input sizes: the paper's 224 and the convergence "
    "experiment's 64 crops (default 224,64; quick 96).",
    minimum=1,
    example="224,64",
)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", None, "Random images per measurement (default 8; quick 2).", lower_bound=1
)
_STACK_DEPTH = flags.DEFINE_integer(
    "stack_depth", 30, "Conv layers in the plain stack.", lower_bound=2
)
_STACK_WIDTH = flags.DEFINE_integer(
    "stack_width", None, "Channels of the plain stack (default 64; quick 16).", lower_bound=1
)
_DRAWS = flags.DEFINE_integer(
    "draws",
    None,
    "Independent weight draws per network and init, averaged geometrically (default 3; quick 1).",
    lower_bound=1,
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the weights, inputs and upstream gradients.")

NAME = "signal_propagation"
INIT_NAMES = ("he_fan_in", "he_fan_out", "xavier")


flags.register_validator(
    "inits",
    lambda v: bool(v) and set(v) <= set(INIT_NAMES),
    f"must be a non-empty list of {', '.join(INIT_NAMES)}",
)


def _circular_pad_layer(pad, name):
    """Wrap-around padding: a conv on a torus has no borders at all."""
    import keras  # pylint: disable=import-outside-toplevel

    def wrap(x):
        x = keras.ops.concatenate([x[:, -pad:], x, x[:, :pad]], axis=1)
        return keras.ops.concatenate([x[:, :, -pad:], x, x[:, :, :pad]], axis=2)

    return keras.layers.Lambda(wrap, name=name)


def build_plain_stack(*, depth, width, init, seed, kernel_size=3):
    """`depth` x (circular pad, Conv2D(width, k, valid), ReLU) on RGB input, zero biases.

    Circular padding: the derivation of Eq. 9/13 has no borders, while zero
    ("same") padding shrinks the signal at the edges a little more every
    layer (forward and backward), and "valid" convs do the same backward.
    """
    import keras  # pylint: disable=import-outside-toplevel

    from delving.models import networks  # pylint: disable=import-outside-toplevel

    layers = [keras.Input((None, None, 3))]
    for i in range(depth):
        layers.append(_circular_pad_layer(kernel_size // 2, name=f"pad{i + 1}"))
        layers.append(
            keras.layers.Conv2D(
                width,
                kernel_size,
                padding="valid",
                name=f"conv{i + 1}",
                kernel_initializer=networks.initializer(init, None if seed is None else seed + i),
                bias_initializer="zeros",
            )
        )
        layers.append(keras.layers.ReLU(name=f"relu{i + 1}"))
    return keras.Sequential(layers, name=f"plain_{depth}")


def build_small30_trunk(*, init, seed, width_multiplier=1.0):
    from delving.models import networks  # pylint: disable=import-outside-toplevel

    model = networks.build_model(
        "small_30",
        num_classes=10,
        activation="relu",
        init=init,
        width_multiplier=width_multiplier,
        seed=seed,
        data_format="channels_last",
    )
    return networks.get_trunk(model)


def _chain(model):
    """The model's layers in call order (a plain chain: conv, activation, pool, ...)."""
    import keras  # pylint: disable=import-outside-toplevel

    return [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]


def measure(model, images, upstream_seed):
    """Per-conv-layer std of the responses y_l and of dE/dx_l (the layer's input gradient).

    Returns dict(layers=[names], kernels=[(k*k, c, d)], forward=[...], backward=[...]).
    """
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    names, kernels, inputs, outputs = [], [], [], []
    with tf.GradientTape() as tape:
        h = tf.convert_to_tensor(images)
        for layer in _chain(model):
            if isinstance(layer, keras.layers.Conv2D):
                tape.watch(h)
                inputs.append(h)
                h = layer(h)
                outputs.append(h)
                names.append(layer.name)
                kh, kw, c, d = layer.kernel.shape
                kernels.append((int(kh * kw), int(c), int(d)))
            else:
                h = layer(h)
        upstream = tf.random.stateless_normal(tf.shape(h), seed=[upstream_seed, 1], dtype=h.dtype)
        objective = tf.reduce_sum(h * upstream)
    grads = tape.gradient(objective, inputs)
    # Calling the layers one by one is only valid for a plain chain: check it.
    direct = model(images, training=False)
    if direct.shape != h.shape or float(tf.reduce_max(tf.abs(direct - h))) > 1e-4 * (
        1.0 + float(tf.reduce_max(tf.abs(h)))
    ):
        raise ValueError(
            f"{model.name} is not a plain chain of layers; cannot measure it layer by layer"
        )
    return {
        "layers": names,
        "kernels": kernels,
        "forward": [float(tf.math.reduce_std(y)) for y in outputs],
        "backward": [float(tf.math.reduce_std(g)) for g in grads],
    }


def predicted_ratio(kernels, init):
    """Eq. 9 / 13 predictions, as std ratios against He fan-in, per conv layer.

    forward[l] = prod_{k<=l} s_k, backward[l] = prod_{k>=l} s_k, with s_k the
    ratio of this init's weight std to He fan-in's in layer k.
    """

    def scale(k2, c, d):
        if init == "he_fan_in":
            return 1.0
        if init == "he_fan_out":
            return math.sqrt((k2 * c) / (k2 * d))
        if init == "xavier":
            return math.sqrt(0.5)
        raise ValueError(f"unknown init {init!r}")

    s = [scale(*k) for k in kernels]
    forward = [math.prod(s[: i + 1]) for i in range(len(s))]
    backward = [math.prod(s[i:]) for i in range(len(s))]
    return {"forward": forward, "backward": backward}


def predicted_within(kernels, init):
    """Eq. 9 / 13 for a pool-free chain: (std(y_L)/std(y_1), std(dx_1)/std(dx_L)).

    Var[y_l] = 1/2 n_l Var[w_l] Var[y_{l-1}] for l >= 2 and
    Var[dx_l] = 1/2 n^_l Var[w_l] Var[dx_{l+1}], with n = k*k*c, n^ = k*k*d.
    """

    def var_w(k2, c, d):
        return {
            "he_fan_in": 2.0 / (k2 * c),
            "he_fan_out": 2.0 / (k2 * d),
            "xavier": 1.0 / (k2 * c),
        }[init]

    forward = math.prod(0.5 * k2 * c * var_w(k2, c, d) for k2, c, d in kernels[1:])
    backward = math.prod(0.5 * k2 * d * var_w(k2, c, d) for k2, c, d in kernels[:-1])
    return math.sqrt(forward), math.sqrt(backward)


def run(
    *,
    inits=INIT_NAMES,
    image_sizes=(224, 64),
    batch_size=8,
    stack_depth=30,
    stack_width=64,
    stack_image_size=32,
    width_multiplier=1.0,
    draws=3,
    seed=0,
):
    """Measures every network for every init. Returns the results dict written as JSON."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    networks = {}
    specs = {}
    for size in image_sizes:
        specs[f"small_30@{size}"] = dict(
            closed_form=False,  # max pools and zero padding: no product formula
            build=lambda init, s: build_small30_trunk(
                init=init, seed=s, width_multiplier=width_multiplier
            ),
            shape=(batch_size, size, size, 3),
            description=f"small_30 trunk (27 conv), {size}x{size} input"
            + (f", width x{width_multiplier}" if width_multiplier != 1.0 else ""),
        )
    specs.update(
        {
            f"plain_{stack_depth}": dict(
                closed_form=True,
                build=lambda init, s: build_plain_stack(
                    depth=stack_depth, width=stack_width, init=init, seed=s
                ),
                shape=(batch_size, stack_image_size, stack_image_size, 3),
                description=f"{stack_depth} x (3x3 conv, {stack_width}, circular padding + ReLU), "
                f"{stack_image_size}x{stack_image_size} input",
            ),
        }
    )
    for net, spec in specs.items():
        images = tf.random.stateless_normal(spec["shape"], seed=[seed, 0])
        per_init = {}
        for index, init in enumerate(inits):
            start = time.time()
            # Different weights for each init and draw: the agreement with the
            # prediction is then statistical, not an identity of scaled draws.
            runs = [
                measure(
                    spec["build"](init, seed + 7919 * (index + 1) + 104729 * draw),
                    images,
                    upstream_seed=seed,
                )
                for draw in range(draws)
            ]
            m = {"layers": runs[0]["layers"], "kernels": runs[0]["kernels"]}
            for direction in ("forward", "backward"):
                m[f"{direction}_draws"] = [r[direction] for r in runs]
                m[direction] = [
                    math.exp(sum(math.log(v) for v in vs) / len(vs))
                    for vs in zip(*m[f"{direction}_draws"])
                ]
            m["predicted_vs_he_fan_in"] = predicted_ratio(m["kernels"], init)
            if spec["closed_form"]:
                m["forward_ratio_predicted"], m["backward_ratio_predicted"] = predicted_within(
                    m["kernels"], init
                )
            per_init[init] = m
            logging.info(
                "%s / %s: %d draws measured in %.1fs", net, init, draws, time.time() - start
            )
        networks[net] = {"description": spec["description"], "inits": per_init}
    return {"networks": networks, "batch_size": batch_size, "draws": draws, "seed": seed}


def summarize(results):
    """Adds, per network and init, the end-to-end ratios the table and report use."""
    for net in results["networks"].values():
        ref = net["inits"].get("he_fan_in")
        for m in net["inits"].values():
            m["forward_ratio"] = m["forward"][-1] / m["forward"][0]
            m["backward_ratio"] = m["backward"][0] / m["backward"][-1]
            if ref is not None:
                m["forward_vs_he_fan_in"] = m["forward"][-1] / ref["forward"][-1]
                m["backward_vs_he_fan_in"] = m["backward"][0] / ref["backward"][0]
                m["forward_vs_he_fan_in_predicted"] = m["predicted_vs_he_fan_in"]["forward"][-1]
                m["backward_vs_he_fan_in_predicted"] = m["predicted_vs_he_fan_in"]["backward"][0]
    return results


def table(results):
    from delving.experiments import common  # pylint: disable=import-outside-toplevel

    headers = [
        "network",
        "init",
        "conv layers",
        "fwd std(y_L)/std(y_1)",
        "predicted",
        "bwd std(dx_1)/std(dx_L)",
        "predicted",
        "fwd y_L vs He fan-in: measured",
        "predicted (Eq. 9)",
        "bwd dx_1 vs He fan-in: measured",
        "predicted (Eq. 13)",
    ]
    rows = []
    for net_name, net in results["networks"].items():
        for init, m in net["inits"].items():
            rows.append(
                [
                    net_name,
                    common.INIT_LABELS[init],
                    len(m["layers"]),
                    common.fmt(m["forward_ratio"], 3),
                    common.fmt(m.get("forward_ratio_predicted"), 3),
                    common.fmt(m["backward_ratio"], 3),
                    common.fmt(m.get("backward_ratio_predicted"), 3),
                    common.fmt(m.get("forward_vs_he_fan_in"), 3),
                    common.fmt(m.get("forward_vs_he_fan_in_predicted"), 3),
                    common.fmt(m.get("backward_vs_he_fan_in"), 3),
                    common.fmt(m.get("backward_vs_he_fan_in_predicted"), 3),
                ]
            )
    return common.markdown_table(headers, rows)


def plot(results):
    """One figure: rows = networks, columns = forward / backward, log-scale std per layer."""
    from delving.experiments import common  # pylint: disable=import-outside-toplevel

    nets = list(results["networks"].items())
    fig, axes = common.plt.subplots(len(nets), 2, figsize=(11, 4 * len(nets)), squeeze=False)
    for row, (net_name, net) in enumerate(nets):
        ref = net["inits"].get("he_fan_in")
        for col, direction in enumerate(("forward", "backward")):
            ax = axes[row][col]
            for init, m in net["inits"].items():
                layers = range(1, len(m[direction]) + 1)
                ax.semilogy(
                    layers,
                    m[direction],
                    "o-",
                    ms=3,
                    color=common.COLORS[init],
                    label=common.INIT_LABELS[init],
                )
                if len(m[f"{direction}_draws"]) > 1:
                    ax.fill_between(
                        layers,
                        [min(v) for v in zip(*m[f"{direction}_draws"])],
                        [max(v) for v in zip(*m[f"{direction}_draws"])],
                        color=common.COLORS[init],
                        alpha=0.15,
                        lw=0,
                    )
                if ref is not None and init == "xavier":
                    theory = [
                        r * p
                        for r, p in zip(ref[direction], m["predicted_vs_he_fan_in"][direction])
                    ]
                    ax.semilogy(
                        layers,
                        theory,
                        "--",
                        color="black",
                        lw=1,
                        label="Xavier, theory: He fan-in x (1/sqrt 2)^"
                        + ("l" if direction == "forward" else "(L-l+1)"),
                    )
            what = "std of response y_l" if direction == "forward" else "std of gradient dE/dx_l"
            ax.set_title(
                f"{net_name}: {direction} ({'Eq. 9' if direction == 'forward' else 'Eq. 13'})",
                fontsize=10,
            )
            ax.set_xlabel("conv layer l")
            ax.set_ylabel(what)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("Signal propagation at initialization, ReLU", fontsize=11)
    fig.tight_layout()
    return fig


def main(argv):
    from common import quiet_start  # pylint: disable=import-outside-toplevel

    quiet_start.start()
    program = "delving.experiments.signal_propagation"
    cli.no_arguments(program, argv)
    cli.exit_on_bad_paths(program, output_dirs={"output_dir": _OUTPUT_DIR.value})
    quick = _QUICK.value
    image_sizes = [int(v) for v in _IMAGE_SIZES.value or []]
    start = time.time()
    from delving.experiments import common  # pylint: disable=import-outside-toplevel

    results = run(
        inits=tuple(_INITS.value),
        image_sizes=image_sizes or ([96] if quick else [224, 64]),
        batch_size=_BATCH_SIZE.value or (2 if quick else 8),
        stack_depth=_STACK_DEPTH.value,
        stack_width=_STACK_WIDTH.value or (16 if quick else 64),
        stack_image_size=16 if quick else 32,
        draws=_DRAWS.value or (1 if quick else 3),
        width_multiplier=0.25 if quick else 1.0,
        seed=_SEED.value,
    )
    summarize(results)
    results["quick"] = quick
    results["seconds"] = time.time() - start
    markdown = table(results)
    paths = common.write_outputs(
        _OUTPUT_DIR.value, NAME, markdown=markdown, results=results, figures=[("", plot(results))]
    )
    print(markdown)
    print("\nWrote " + ", ".join(paths))


if __name__ == "__main__":
    app.run(main)
