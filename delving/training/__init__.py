"""Training the paper's networks, one module per stage of a run, in run order:

- `config`: the frozen `TrainConfig` and its validation;
- `presets`: the named recipes and which one a run gets;
- `loop`: `train`, the entry, read top to bottom;
- `preemption`: stopping at a step boundary on SIGTERM, Ctrl-C or request;
- `setup`: strategy, data, model, optimizer and counters, nothing written;
- `inputs`: the data source and the training input a config describes;
- `optimizer`: the paper's SGD with Caffe's weight decay, and its schedules;
- `run_dir`: the run directory's files, lock and checkpoints;
- `step`: the compiled training step;
- `estimate`: the projected wall time of the run, printed after its first steps;
- `summaries`: the PReLU slopes and hyperparameters in TensorBoard, and their reader.
"""
