"""The console scripts of pyproject.toml (`delving-train`, ...).

Each runs its binary's module as `__main__`, exactly as `python -m <module>`
does, so `--help` shows the module's docstring and flags and nothing is
imported (TensorFlow included) before the binary itself decides to.
"""

import runpy


def _run(module):
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def train():
    _run("delving.train")


def evaluate():
    _run("delving.evaluate")


def summary():
    _run("delving.summary")


def export():
    _run("export.export_saved_model")


def client():
    _run("export.client")


def build_tfrecords():
    _run("pipelines.build_tfrecords")


def data_service():
    _run("pipelines.data_service_server")


def generate_imagenet_shaped():
    _run("pipelines.generate_imagenet_shaped")
