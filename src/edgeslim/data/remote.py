"""Datasets read from a URL (``s3://``, ``gs://``, ``http(s)://``: any fsspec protocol), cached per machine.

For clusters without a shared file system and data too large to send with every sweep: each node
downloads the dataset once into ``$EDGESLIM_CACHE/urls/<hash of its listing>/<name>`` and every
later read on that node (other trials, other sweeps) uses that copy, until the listing (names,
sizes, ETags) changes. A URL names a dataset folder (an object-store prefix, in the layouts
:func:`~edgeslim.data.load_dataset` reads) or one archive (``.tar``, ``.tar.gz``, ``.tgz``,
``.zip``: unpacked after download, the way a single http(s) file carries a folder).

Credentials and endpoints come from fsspec's usual places: for S3 the ``AWS_*`` variables, and
``FSSPEC_S3_ENDPOINT_URL`` for an S3-compatible server (read when fsspec is imported). ``s3://`` needs
``s3fs`` (``pip install -c constraints.txt s3fs``, in the ``cluster`` extra), ``gs://`` ``gcsfs``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec

from edgeslim.errors import DataError

ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def is_url(path: Any) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) other than ``file://``."""
    match = _SCHEME.match(str(path)) if path is not None else None
    return match is not None and match.group(1).lower() != "file"


def _filesystem(url: str) -> tuple[Any, str]:
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:  # the protocol's package (s3fs, gcsfs) is missing
        raise DataError(
            f"cannot read {url}: {exc} (pip install -c constraints.txt s3fs for s3://)",
            field="DataSource.path",
        ) from None
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read {url}: {exc}", field="DataSource.path") from None


def _archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVES)


def listing(url: str) -> list[tuple[str, int, str]]:
    """(relative name, size, version tag) of every file at ``url``: a folder's files, or the one
    file (its ETag, checksum or modification time, whichever the store gives)."""
    fs, root = _filesystem(url)
    try:
        if fs.isdir(root):
            found = fs.find(root, detail=True)
            base = PurePosixPath(root.rstrip("/"))
            items = [(str(PurePosixPath(name).relative_to(base)), info) for name, info in found.items()]
        else:
            items = [(PurePosixPath(root).name, fs.info(root))]
    except FileNotFoundError:
        raise DataError(f"{url} does not exist", field="DataSource.path") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot list {url}: {exc}", field="DataSource.path") from None
    if not items:
        raise DataError(f"{url} holds no files", field="DataSource.path")
    out = []
    for name, info in sorted(items):
        tag = next(
            (info[k] for k in ("ETag", "etag", "md5", "crc32c", "mtime", "LastModified") if info.get(k)), ""
        )
        out.append((name, int(info.get("size") or 0), str(tag)))
    return out


def url_fingerprint(url: str) -> str:
    """A fingerprint of the files at ``url`` (names, sizes, version tags), not of the URL: the same
    files at another address give the same fingerprint, a re-uploaded file a new one."""
    files = listing(url)
    digest = hashlib.sha256(json.dumps(files).encode("utf-8")).hexdigest()[:16]
    return f"{len(files)} files:{digest}"


def cache_folder() -> Path:
    """Where downloaded datasets are kept on this machine."""
    root = os.environ.get("EDGESLIM_CACHE", "").strip()
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "edgeslim") / "urls"


def _download(url: str, fs: Any, root: str, files: list[tuple[str, int, str]], dest: Path) -> Path:
    name = PurePosixPath(root.rstrip("/")).name or "data"
    if len(files) == 1 and files[0][0] == name:  # one file
        target = dest / name
        fs.get(root, str(target))
        if not _archive(name):
            return target
        folder = dest / re.sub(r"(\.tar\.gz|\.tgz|\.tar|\.zip)$", "", name, flags=re.IGNORECASE)
        if name.lower().endswith(".zip"):
            with zipfile.ZipFile(target) as archive:
                archive.extractall(folder)
        else:
            with tarfile.open(target) as archive:
                archive.extractall(folder, filter="data")
        target.unlink()
        entries = list(folder.iterdir())
        return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder  # one top folder: it
    target = dest / name
    for rel, _size, _tag in files:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        fs.get(f"{root.rstrip('/')}/{rel}", str(target / rel))
    return target


def fetch_url(url: str) -> Path:
    """The dataset at ``url`` on this machine: downloaded into the cache on first use (a second
    process downloading the same listing at once is harmless), then read from there."""
    fs, root = _filesystem(url)
    files = listing(url)
    key = hashlib.sha256(json.dumps([url, files]).encode("utf-8")).hexdigest()[:32]
    final = cache_folder() / key
    marker = final / ".path"
    if marker.is_file():
        return final / marker.read_text(encoding="utf-8")
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".downloading-", dir=final.parent))
    try:
        try:
            found = _download(url, fs, root, files, partial)
        except (OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
            raise DataError(f"cannot download {url}: {exc}", field="DataSource.path") from None
        (partial / ".path").write_text(found.relative_to(partial).as_posix(), encoding="utf-8")
        try:
            partial.rename(final)
        except OSError:  # another process got there first
            if not marker.is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final / marker.read_text(encoding="utf-8")


__all__ = ["ARCHIVES", "cache_folder", "fetch_url", "is_url", "listing", "url_fingerprint"]
