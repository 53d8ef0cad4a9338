"""Importing the package, as every binary of the project does first (directly
or through `delving` and `export`), keeps TensorFlow's start-up and INFO lines
off stderr (`pipelines.quiet_start`); an explicit TF_CPP_MIN_LOG_LEVEL of 0 or
1 keeps them all."""

from pipelines import quiet_start

quiet_start.install()
