"""Importing the package imports `pipelines`, which keeps TensorFlow's
start-up and INFO lines off stderr (`pipelines.quiet_start`)."""

import pipelines  # noqa: F401
