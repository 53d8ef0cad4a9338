"""The learned PReLU slopes over training, per layer: a figure for the photo report.

`plot(histories)` takes what the TensorBoard reader
(`delving.training.summaries.slope_history`) returns for each run,
`{layer_name: [(epoch, mean slope, per-channel slopes or None), ...]}`, and
draws one line per layer (the mean) with the channel range as a band where
the per-channel slopes are there. `histories(run_dirs)` reads them.
"""

import numpy as np

from delving.experiments import common
from delving.models.specs import PRELU_INIT_SLOPE
from delving.training import summaries


def histories(run_dirs):
    """{run label: slope history} of the run directories that logged slopes."""
    found = {label: summaries.slope_history(path) for label, path in run_dirs.items()}
    return {label: h for label, h in found.items() if h}


def plot(runs):
    """One panel per run ({label: {layer: [(epoch, mean, channels or None), ...]}})."""
    fig, axes = common.plt.subplots(
        1, len(runs), figsize=(5.5 * len(runs), 4), squeeze=False, sharey=True
    )
    colors = common.plt.get_cmap("viridis")
    for ax, (label, layers) in zip(axes[0], runs.items()):
        for i, (layer, points) in enumerate(layers.items()):
            color = colors(i / max(1, len(layers) - 1))
            points = sorted(points, key=lambda p: p[0])
            epochs = [p[0] for p in points]
            ax.plot(epochs, [p[1] for p in points], "-", color=color, lw=1.2, label=layer)
            spread = [
                (p[0], float(np.min(p[2])), float(np.max(p[2])))
                for p in points
                if p[2] is not None and len(p[2]) > 1
            ]
            if spread:
                xs, lo, hi = zip(*spread)
                ax.fill_between(xs, lo, hi, color=color, alpha=0.12, lw=0)
        ax.axhline(PRELU_INIT_SLOPE, color="gray", lw=0.8, ls=":")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("learned slope a (line: layer mean; band: channel min-max)")
    axes[0][-1].legend(fontsize=6, ncol=2)
    fig.suptitle("Learned PReLU slopes during training", fontsize=11)
    fig.tight_layout()
    return fig
