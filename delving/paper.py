"""The paper's reported numbers that the code prints beside ours (docs/PAPER.md,
"Reported results"); never results of this project.

The training app prints Table 1 next to the slopes it learned; the
reproduction report prints both tables next to its measurements. The paper's
initial PReLU slope is `delving.models.specs.PRELU_INIT_SLOPE`.
"""

#: Table 1: learned PReLU slopes of the 14-layer model, (channel-shared,
#: channel-wise mean), by layer name.
TABLE1 = {
    "conv1": (0.681, 0.596),
    "conv2_1": (0.103, 0.321),
    "conv2_2": (0.099, 0.204),
    "conv2_3": (0.228, 0.294),
    "conv2_4": (0.561, 0.464),
    "conv3_1": (0.126, 0.196),
    "conv3_2": (0.089, 0.152),
    "conv3_3": (0.124, 0.145),
    "conv3_4": (0.062, 0.124),
    "conv3_5": (0.008, 0.134),
    "conv3_6": (0.210, 0.198),
    "fc1": (0.063, 0.074),
    "fc2": (0.031, 0.075),
}

#: Table 2: the small model with each rectifier, 10-view testing, (top-1,
#: top-5) validation error in percent.
TABLE2 = {
    "relu": (33.82, 13.34),
    "lrelu": (33.80, 13.56),
    "prelu_shared": (32.71, 12.87),
    "prelu": (32.64, 12.75),
}

#: Epochs of the paper's ImageNet training (the default of `--epochs`).
TRAINING_EPOCHS = 80

#: The network Table 1 and Table 2 are about.
TABLES_MODEL = "small_14"
