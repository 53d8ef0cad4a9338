"""tfds' own Imagenette builder prepared from a tiny local archive, offline.

  prepare_imagenette(data_dir, config="160px-v2", per_class=(2, 1))
      -> the prepared builder: `per_class` train and validation JPEGs for
         each of Imagenette's 10 classes, in tfds' format under `data_dir`
  no_network()   context manager: any socket connection or name lookup
                 raises (and is recorded in the list it yields)

tfds prepares Imagenette from `fast-ai-imageclas/<dirname>.tgz`, checked
against the size and sha256 its checksums.tsv registers, which no tiny archive
can match. Its download manager takes a file at the path where it keeps a
verified download (`<download_dir>/<dataset>/<name of url and checksum>`,
with an `.INFO` beside it) as that download without reading it again; the
tiny archive is put there, and tfds extracts and converts it with its real
code. Nothing of delving is involved.
"""

import contextlib
import io
import json
import os
import socket
import tarfile

import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import resource as tfds_resource

from tests import imaging_testutil


def _archive(dirname, synsets, per_class):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for split, count in zip(("train", "val"), per_class):
            for c, synset in enumerate(synsets):
                for i in range(count):
                    data = imaging_testutil.image_bytes(height=40, width=56, seed=100 * c + i)
                    member = tarfile.TarInfo(f"{dirname}/{split}/{synset}/{synset}_{i}.JPEG")
                    member.size = len(data)
                    tar.addfile(member, io.BytesIO(data))
    return out.getvalue()


def prepare_imagenette(data_dir, config="160px-v2", per_class=(2, 1)):
    builder = tfds.builder(f"imagenette/{config}", data_dir=str(data_dir))
    dirname = builder.builder_config.dirname
    (url,) = [u for u in builder.url_infos if u.endswith(f"/{dirname}.tgz")]
    name = tfds_resource.get_dl_fname(url, builder.url_infos[url].checksum)
    downloads = os.path.join(str(data_dir), "downloads")
    cached = os.path.join(downloads, builder.name, name)
    os.makedirs(os.path.dirname(cached), exist_ok=True)
    with open(cached, "wb") as f:
        f.write(_archive(dirname, builder.info.features["label"].names, per_class))
    with open(cached + ".INFO", "w") as f:
        json.dump({"urls": [url], "original_fname": f"{dirname}.tgz"}, f)
    builder.download_and_prepare(
        download_dir=downloads,
        download_config=tfds.download.DownloadConfig(try_download_gcs=False),
    )
    return builder


@contextlib.contextmanager
def no_network():
    """Every socket connection and name lookup of this process raises
    (OSError, as an unreachable network would) and is recorded."""
    attempts = []

    def refuse(what):
        def refused(*args, **kwargs):
            attempts.append((what, args[1:] if what == "connect" else args))
            raise OSError(f"network access in an offline test: {what}{args}")

        return refused

    saved = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
    socket.socket.connect = refuse("connect")
    socket.socket.connect_ex = refuse("connect")
    socket.getaddrinfo = refuse("getaddrinfo")
    try:
        yield attempts
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = saved
