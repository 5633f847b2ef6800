"""One key scheme for every record: a content hash of the step's config and of its input.

``key(step) = sha256(KEY_VERSION, step.params(), fingerprints of the files it reads, data, key(input))``
where the input of the first step is nothing (the start step hashes its model and weights itself).
The key of a step's input is the key of the step that produced it, so a key identifies the whole
chain of configs and file contents behind an artifact: the same settings give the same key through
``edgeslim run`` and ``edgeslim sweep``, a changed setting or changed weights/data give a new key for
that step and every step after it, and moving the checkout or the data (``$EDGESLIM_DATA``) changes
nothing. When a done record is reused, the sha256 of its artifact (stored with it) is checked, so a
file changed on disk is made again instead of trusted.

Files enter by :func:`path_fingerprint` (size and the hash of the first MiB; a folder by the names
and sizes of its files), not by path.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgeslim.data import is_url, url_fingerprint
from edgeslim.engine.steps import DataSpec, Step

KEY_VERSION = 2

#: Bytes of each file hashed for its fingerprint, and the most files of a folder hashed that way.
FINGERPRINT_BYTES = 1 << 20
FINGERPRINT_MAX_HASHED = 64


def digest(payload: Any, length: int = 16) -> str:
    """``length`` hex digits of SHA-256 over the canonical JSON of ``payload``."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def _head_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read(FINGERPRINT_BYTES)).hexdigest()[:16]


def _stat_key(path: str) -> tuple[str, float, int]:
    st = os.stat(path)
    return (str(Path(path).resolve()), st.st_mtime, st.st_size)


def path_fingerprint(path: str | os.PathLike[str]) -> str:
    """A cheap content fingerprint of a file or folder, independent of where it lives.

    A file: its size and the SHA-256 of its first MiB. A folder: the relative name and size of every
    file under it, plus the first-MiB hash of each when there are at most 64 files (a CIFAR pickle
    folder; a tree of 60,000 images is fingerprinted by names and sizes in well under a second).
    Modification times are left out: a copy of the same files has the same fingerprint.
    """
    return _fingerprint(*_stat_key(str(path)))


@functools.lru_cache(maxsize=256)
def _fingerprint(path: str, _mtime: float, _size: int) -> str:
    root = Path(path)
    if root.is_file():
        return f"{root.stat().st_size}:{_head_digest(str(root))}"
    files: list[tuple[str, int, str]] = []
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.is_file():
                    files.append((os.path.relpath(entry.path, root), entry.stat().st_size, entry.path))
    files.sort()
    hashed = len(files) <= FINGERPRINT_MAX_HASHED
    listing = [(name, size, _head_digest(full) if hashed else "") for name, size, full in files]
    return f"{len(files)} files:{hashlib.sha256(json.dumps(listing).encode('utf-8')).hexdigest()[:16]}"


def data_identity(data: DataSpec) -> dict[str, Any]:
    """The data as keys see it: its content fingerprint and the settings that pick images from it."""
    out = data.to_dict()
    out.pop("source", None)
    path = out.pop("path")
    if is_url(path):  # the files' listing (names, sizes, ETags), not the address
        out["fingerprint"] = url_fingerprint(path)
    else:
        out["fingerprint"] = path_fingerprint(path) if path and Path(path).exists() else None
    return out


def step_key(step: Step, data: DataSpec, input_key: str | None) -> str:
    """The record key of ``step`` run on the output of the step keyed ``input_key``."""
    params = step.params()
    files = step.files()
    for name in files:  # the file's content, not where it lives
        owner, _, field = name.rpartition(".")
        target = params.get(owner, params) if owner else params
        if isinstance(target, dict) and field in target:
            target[field] = None
    return digest(
        {
            "key_version": KEY_VERSION,
            "type": step.type,
            "params": params,
            "files": {name: path_fingerprint(path) for name, path in sorted(files.items())},
            "data": data_identity(data),
            "input": input_key,
        }
    )


def sha256_files(paths: Iterable[Path]) -> str:
    """One digest over the bytes of ``paths`` in order (what an artifact is, byte for byte)."""
    sha = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                sha.update(block)
    return sha.hexdigest()


__all__ = ["KEY_VERSION", "data_identity", "digest", "path_fingerprint", "sha256_files", "step_key"]
