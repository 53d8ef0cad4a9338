"""Version directories under an export base: claimed atomically, published whole.

TensorFlow Serving watches `export_base` and loads its highest
integer-named directory, so a version must appear complete or not at all,
and two exports into one base must never pick the same number.

On a local base:

- A version `N` is claimed by `os.mkdir("<base>/.claim-N")`, which exactly
  one process can do; one that cannot tries `N + 1`, and so does one that
  finds `<base>/N` finished after its listing. A claim exists from before
  the version is written until after it is published, so a process that
  claims `N` and does not find `<base>/N` owns the number.
- The claim records its owner in `owner.json`: host, boot, pid namespace,
  pid, the process's start time and a random nonce.
- The SavedModel is written inside the claim and renamed to `<base>/N`
  when complete (one `rename`: the server never sees half of it).
- Claims left by killed exports are removed by the next export, but only
  when provably dead: same host, boot and pid namespace, and the pid gone
  or now another process (another start time: pids are reused). A claim
  is first renamed aside, then its nonce checked, so two cleaners never
  take a claim made in between.

A remote base (`gs://...`, any `scheme://`) is written through
`tf.io.gfile`. It has no atomic create, so the next version cannot be
claimed against another export: `--version=N` must be given, or the export
is refused. The version is staged locally, then uploaded with
`saved_model.pb` last (object stores have no atomic rename either: a
loader that finds the graph finds the variables it needs).
"""

import json
import os
import re
import secrets
import shutil
import socket
import tempfile

CLAIM_PREFIX = ".claim-"
OWNER_FILE = "owner.json"
_STAGED = "saved_model"
_LAST = "saved_model.pb"


class ExportError(ValueError):
    """A user mistake in what or where to export (missing files, mismatched
    classes, a version taken)."""


def is_local(path):
    """Whether `path` is on the local file system (no `scheme://`)."""
    return "://" not in str(path) or str(path).startswith("file://")


def normalize(export_base):
    """The base as the server's config names it: absolute when local."""
    export_base = str(export_base)
    if is_local(export_base):
        return os.path.abspath(export_base.removeprefix("file://"))
    return export_base.rstrip("/")


def next_version(export_base):
    """1 + the largest integer-named version under `export_base` (1 if none)."""
    if is_local(export_base):
        base = normalize(export_base)
        names = os.listdir(base) if os.path.isdir(base) else []
    else:
        import tensorflow as tf  # gfile; imported late: a local export needs none here

        names = tf.io.gfile.listdir(export_base) if tf.io.gfile.isdir(export_base) else []
    names = [n.rstrip("/") for n in names]
    return max((int(n) for n in names if re.fullmatch(r"\d+", n)), default=0) + 1


def write_version(export_base, write, *, version=None):
    """Writes one version: `write(directory)` fills a new directory that
    becomes `<export_base>/<N>` whole. Returns that path.

    Args:
      export_base: local or remote (`gs://...`; then `version` is required).
      write: a function writing the version's files into the directory given.
      version: N; default the next free number (local bases only).

    Raises:
      ExportError: the version exists or is being written, or a remote
        base without a version.
    """
    export_base = normalize(export_base)
    if is_local(export_base):
        return _write_local(export_base, write, version)
    return _write_remote(export_base, write, version)


def _exists(export_base, version):
    return ExportError(
        f"{os.path.join(export_base, str(version))} already exists; pick another "
        f"--version or leave it out for the next free one"
    )


def _write_local(export_base, write, version):
    if version is not None and os.path.exists(os.path.join(export_base, str(version))):
        raise _exists(export_base, version)
    os.makedirs(export_base, exist_ok=True)
    remove_dead_claims(export_base)
    claim, number = _claim(export_base, version)
    try:
        staged = os.path.join(claim, _STAGED)
        write(staged)
        final = os.path.join(export_base, str(number))
        os.rename(staged, final)  # atomic: the server sees all of it or nothing
    finally:
        shutil.rmtree(claim, ignore_errors=True)
    return final


def _claim(export_base, version):
    """`(claim directory, N)`: the first free version from `version` (or
    the next after the largest), claimed by this process."""
    number = version or next_version(export_base)
    while True:
        claim = os.path.join(export_base, f"{CLAIM_PREFIX}{number}")
        try:
            os.mkdir(claim)
        except FileExistsError:
            if version:
                raise ExportError(
                    f"version {number} of {export_base} is being exported by another "
                    f"process ({describe_owner(read_owner(claim))}); pick another --version"
                ) from None
            number += 1
            continue
        if os.path.exists(os.path.join(export_base, str(number))):  # published meanwhile
            os.rmdir(claim)
            if version:
                raise _exists(export_base, version)
            number += 1
            continue
        # Local, so plain files (common.files.atomic_write would load TensorFlow).
        path = os.path.join(claim, OWNER_FILE)
        with open(f"{path}.tmp", "w") as f:
            json.dump(owner(), f)
        os.replace(f"{path}.tmp", path)
        return claim, number


def check_base(export_base, version):
    """Refuses, before anything is read or written, a remote base without a
    version: there the next free number cannot be claimed atomically."""
    if version is None and not is_local(export_base):
        raise ExportError(
            f"--export_base={export_base}: give --version=N for a remote file system: it "
            f"has no atomic create, so the next free version cannot be claimed safely "
            f"against another export"
        )


def _write_remote(export_base, write, version):
    import tensorflow as tf

    check_base(export_base, version)
    final = f"{export_base}/{version}"
    if tf.io.gfile.exists(final):
        raise _exists(export_base, version)
    with tempfile.TemporaryDirectory(prefix="delving-export-") as staging:
        staged = os.path.join(staging, _STAGED)
        write(staged)
        paths = [
            os.path.relpath(os.path.join(d, name), staged)
            for d, _, names in os.walk(staged)
            for name in names
        ]
        for path in sorted(paths, key=lambda p: (p == _LAST, p)):
            target = f"{final}/{path}"
            tf.io.gfile.makedirs(os.path.dirname(target))
            tf.io.gfile.copy(os.path.join(staged, path), target)
    return final


# Owners of claims.


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def start_time(pid):
    """Process `pid`'s start, in clock ticks after boot; None if none runs."""
    stat = _read(f"/proc/{pid}/stat")
    # The fields after the command (which may hold spaces): starttime is 22nd.
    return int(stat.rsplit(")", 1)[1].split()[19]) if stat else None


def _host():
    """What makes pids comparable: host, boot and pid namespace (None where
    /proc does not tell, and then no claim is provably dead)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = None
    return {
        "host": socket.gethostname(),
        "boot": _read("/proc/sys/kernel/random/boot_id"),
        "pid_namespace": namespace,
    }


def owner():
    """This process, as a claim records it."""
    pid = os.getpid()
    return {**_host(), "pid": pid, "start": start_time(pid), "nonce": secrets.token_hex(8)}


def read_owner(claim):
    """The owner recorded in a claim directory, or None (not written yet)."""
    text = _read(os.path.join(claim, OWNER_FILE))
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def describe_owner(record):
    if not record:
        return "owner not recorded yet"
    return f"pid {record.get('pid')} on {record.get('host')}"


def provably_dead(record):
    """Whether the process that wrote `record` has ended: it ran on this
    host, boot and pid namespace, and its pid is gone or reused."""
    here = _host()
    if not record or None in here.values():
        return False
    if any(record.get(key) != value for key, value in here.items()):
        return False  # elsewhere: nothing here can tell
    start = start_time(record.get("pid"))
    return start is None or start != record.get("start")


def remove_dead_claims(export_base):
    """Removes the claims of exports that were killed; returns their names."""
    removed = []
    for name in os.listdir(export_base):
        if not name.startswith(CLAIM_PREFIX):
            continue
        claim = os.path.join(export_base, name)
        record = read_owner(claim)
        if not provably_dead(record):
            continue
        aside = os.path.join(export_base, f".dead{name}-{secrets.token_hex(4)}")
        try:
            os.rename(claim, aside)
        except OSError:  # another cleaner took it first
            continue
        if read_owner(aside) != record:  # a new claim took its place meanwhile: give it back
            os.rename(aside, claim)
            continue
        shutil.rmtree(aside, ignore_errors=True)
        removed.append(name)
    return removed
