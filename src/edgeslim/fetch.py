"""Fetch published weights and datasets: resumable, verified, atomic, with one table of sources.

    >>> from edgeslim.fetch import fetch
    >>> path = fetch("resnet50.tv_in1k")        # torchvision's ImageNet weights, verified

Every source (:data:`SOURCES`) names its URL and the hash its publisher gives: the MD5 of the
CIFAR-10 archive, or the SHA-256 prefix in the file name (torchvision's ``resnet50-0676ba61.pth``,
akamaster's ``resnet20-12fca82f.th``). A file is looked for first where the user may have put it
(``$EDGESLIM_DATA``, ``$EDGESLIM_DATA/pretrained``), then in the cache (``$EDGESLIM_CACHE``,
default ``~/.cache/edgeslim``, under ``downloads/``); only then is it downloaded:

* into ``FILE.part`` beside its final place, resumed with an HTTP ``Range`` request when a
  previous attempt stopped part-way (a server that ignores ranges restarts it);
* with a progress bar on stderr (``progress=False`` silences it);
* verified against the published hash before it is used: a mismatch deletes the partial file;
* renamed into place atomically, so a file under its final name is always complete and verified.

An unreachable host is a one-line :class:`DownloadError` naming the exact file to place by hand:
``cannot reach HOST; put FILE at PATH or set EDGESLIM_DATA``. ``EDGESLIM_OFFLINE=1`` gives that
error without trying the network; ``EDGESLIM_MIRROR=URL`` downloads every source from ``URL/FILE``
instead of its publisher (a local mirror, or the tests' 127.0.0.1 server).

This module sits below ``edgeslim.models`` and ``edgeslim.data`` (it imports only the standard
library and :mod:`edgeslim.errors`), so both can fetch with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from edgeslim.errors import DownloadError

__all__ = [
    "CACHE_ENV",
    "DATASET_STANDINS",
    "DATA_ENV",
    "MIRROR_ENV",
    "OFFLINE_ENV",
    "SOURCES",
    "Source",
    "cache_dir",
    "dataset_root",
    "download_file",
    "fetch",
    "fetch_cifar10",
    "fetch_named_weights",
    "fetch_standin",
    "file_hash",
    "find_local",
    "source",
    "source_for_file",
]

CACHE_ENV = "EDGESLIM_CACHE"
DATA_ENV = "EDGESLIM_DATA"
MIRROR_ENV = "EDGESLIM_MIRROR"
OFFLINE_ENV = "EDGESLIM_OFFLINE"
_CHUNK = 1 << 16
_TIMEOUT_S = 60.0

_AKAMASTER = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models"
_TORCHVISION = "https://download.pytorch.org/models"


@dataclasses.dataclass(frozen=True)
class Source:
    """One downloadable file and how to check it.

    ``sha256`` may be a prefix (the publisher's file-name hash); ``md5`` is used when the publisher
    gives only that. ``kind`` is ``"weights"`` (a state_dict file) or ``"dataset"`` (an archive that
    :func:`fetch_cifar10` extracts).
    """

    name: str
    url: str
    kind: Literal["weights", "dataset"]
    description: str
    sha256: str | None = None
    md5: str | None = None

    @property
    def filename(self) -> str:
        return Path(urllib.parse.urlparse(self.url).path).name

    def __post_init__(self) -> None:
        if not (self.sha256 or self.md5):
            raise ValueError(f"source {self.name!r} needs a sha256 (prefix) or an md5")


def _tv(name: str, file: str, what: str) -> Source:
    return Source(
        f"{name}.tv_in1k",
        f"{_TORCHVISION}/{file}",
        "weights",
        f"torchvision {what}, ImageNet-1k (IMAGENET1K_V1), BSD-3-Clause",
        sha256=file.rsplit("-", 1)[1].split(".")[0],
    )


def _cifar_resnet(depth: int, hash8: str) -> Source:
    return Source(
        f"resnet{depth}",
        f"{_AKAMASTER}/resnet{depth}-{hash8}.th",
        "weights",
        f"CIFAR-10 ResNet-{depth} (akamaster/pytorch_resnet_cifar10, BSD-2-Clause)",
        sha256=hash8,
    )


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "cifar10",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "dataset",
            "CIFAR-10, python version (50,000 train + 10,000 test images, 163 MB)",
            md5="c58f30108f718f92721af3b95e74349a",
        ),
        _cifar_resnet(20, "12fca82f"),
        _cifar_resnet(32, "d509ac18"),
        _cifar_resnet(44, "014dd654"),
        _cifar_resnet(56, "4bfd9763"),
        _tv("resnet18", "resnet18-f37072fd.pth", "ResNet-18"),
        _tv("resnet50", "resnet50-0676ba61.pth", "ResNet-50"),
        _tv("vgg16", "vgg16-397923af.pth", "VGG-16"),
        _tv("mobilenet_v2", "mobilenet_v2-b0353104.pth", "MobileNetV2"),
        _tv("densenet121", "densenet121-a639ec97.pth", "DenseNet-121"),
        _tv("densenet201", "densenet201-c1103571.pth", "DenseNet-201"),
        _tv("googlenet", "googlenet-1378be20.pth", "GoogLeNet"),
        _tv("efficientnet_b0", "efficientnet_b0_rwightman-7f5810bc.pth", "EfficientNet-B0"),
        _tv("alexnet", "alexnet-owt-7be5be79.pth", "AlexNet"),
    )
}


def source(name: str) -> Source:
    """The source called ``name``; an unknown name is a :class:`DownloadError` listing them all."""
    try:
        return SOURCES[name]
    except KeyError:
        raise DownloadError(f"nothing to fetch called {name!r}; known: {', '.join(SOURCES)}") from None


def source_for_file(name: str) -> Source | None:
    """The source a file name or source name stands for (``resnet20-12fca82f.th``,
    ``pretrained/resnet20-12fca82f.th`` or ``resnet20``), else None."""
    base = Path(name).name
    if base in SOURCES:
        return SOURCES[base]
    return next((s for s in SOURCES.values() if s.filename == base), None)


def fetch_named_weights(name: str, *, progress: bool = True) -> Path | None:
    """The verified file of the weights source ``name`` stands for (a file name such as
    ``pretrained/resnet20-12fca82f.th``, or a source name), fetched when not on disk; None when it
    names no weights source. What a missing ``weights:`` file in an experiment or recipe falls back to."""
    src = source_for_file(name)
    if src is None or src.kind != "weights":
        return None
    return fetch(src.name, progress=progress)


def _url(src: Source) -> str:
    """Where ``src`` is downloaded from: ``$EDGESLIM_MIRROR/FILE`` when set, else its publisher."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{src.filename}" if mirror else src.url


def cache_dir() -> Path:
    """``$EDGESLIM_CACHE``, else ``~/.cache/edgeslim``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgeslim"


def _data_dirs() -> list[Path]:
    env = os.environ.get(DATA_ENV, "").strip()
    if not env:
        return []
    root = Path(env).expanduser()
    return [root, root / "pretrained"]


def file_hash(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _matches(path: Path, sha256: str | None, md5: str | None) -> tuple[bool, str]:
    """(hash matches, description of what was found)."""
    if sha256:
        got = file_hash(path, "sha256")
        return got.startswith(sha256.lower()), f"sha256 {got} (expected {sha256.lower()}...)"
    assert md5 is not None
    got = file_hash(path, "md5")
    return got == md5.lower(), f"md5 {got} (expected {md5.lower()})"


def find_local(src: Source, extra_dirs: Iterable[Path] = ()) -> Path | None:
    """A verified copy of ``src`` already on disk: in ``extra_dirs``, ``$EDGESLIM_DATA``(``/pretrained``)
    or the cache; copies whose hash does not match are ignored."""
    for folder in (*extra_dirs, *_data_dirs(), cache_dir() / "downloads"):
        path = folder / src.filename
        if path.is_file() and _matches(path, src.sha256, src.md5)[0]:
            return path
    return None


def fetch(name: str, *, dest_dir: Path | None = None, progress: bool = True) -> Path:
    """Path of the verified file of source ``name``, downloading it (into ``dest_dir``, default
    ``$EDGESLIM_CACHE/downloads``) only when no verified copy is on disk."""
    src = source(name)
    local = find_local(src, (dest_dir,) if dest_dir is not None else ())
    if local is not None:
        return local
    dest = (dest_dir or cache_dir() / "downloads") / src.filename
    return download_file(_url(src), dest, sha256=src.sha256, md5=src.md5, progress=progress)


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = _TIMEOUT_S,
) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` if present; verify; rename into place.

    ``sha256`` (full or a prefix) or ``md5`` is required. An existing verified ``dest`` is returned
    without network access; an existing ``dest`` that fails verification is downloaded again.
    """
    if not (sha256 or md5):
        raise ValueError("download_file needs a sha256 (prefix) or an md5 to verify against")
    dest = Path(dest).expanduser()
    if dest.is_file():
        if _matches(dest, sha256, md5)[0]:
            return dest
        dest.unlink()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {dest.parent}: {exc.strerror or exc}") from None
    part = dest.with_name(dest.name + ".part")
    if os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0"):
        raise DownloadError(_offline_message(url, dest, f"{OFFLINE_ENV} is set"))
    _stream(url, part, dest, progress, timeout)
    ok, found = _matches(part, sha256, md5)
    if not ok:
        part.unlink(missing_ok=True)
        raise DownloadError(f"checksum mismatch for {url}: got {found}; the download was deleted, run again")
    os.replace(part, dest)
    return dest


def _offline_message(url: str, dest: Path, reason: object) -> str:
    host = urllib.parse.urlparse(url).hostname or url
    return f"cannot reach {host} ({reason}); put {dest.name} at {dest} or set {DATA_ENV}"


def _stream(url: str, part: Path, dest: Path, progress: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (a Range request when ``part`` has bytes already)."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "edgeslim", **({"Range": f"bytes={offset}-"} if offset else {})}
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the partial file is already whole: let verification decide
            return
        raise DownloadError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(_offline_message(url, dest, getattr(exc, "reason", None) or exc)) from None
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the range: start again
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        done = offset
        bar = _Progress(dest.name, total, done) if progress else None
        try:
            with open(part, "ab" if offset else "wb") as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if bar is not None:
                        bar.update(done)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # IncompleteRead: connection closed
            reason = "connection closed" if isinstance(exc, http.client.IncompleteRead) else exc
            raise DownloadError(
                f"download of {url} stopped after {done:,} bytes ({reason}); run again to resume"
            ) from None
        finally:
            if bar is not None:
                bar.close()
    if total is not None and done < total:
        raise DownloadError(
            f"download of {url} stopped after {done:,} of {total:,} bytes; run again to resume"
        )


class _Progress:
    """A one-line progress bar on stderr: name, bar, percent, MB, rate."""

    def __init__(self, name: str, total: int | None, done: int) -> None:
        self.name, self.total, self.start_done = name, total, done
        self.start = self.last = time.monotonic()
        self.update(done, force=True)

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < 0.1 and done != self.total:
            return
        self.last = now
        rate = (done - self.start_done) / max(now - self.start, 1e-6) / 1e6
        if self.total:
            frac = min(1.0, done / self.total)
            bar = "#" * int(frac * 24)
            text = f"{self.name} [{bar:<24}] {100 * frac:3.0f}% {done / 1e6:.1f}/{self.total / 1e6:.1f} MB"
        else:
            text = f"{self.name} {done / 1e6:.1f} MB"
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"\r{text} {rate:.1f} MB/s")
            sys.stderr.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write("\n")
            sys.stderr.flush()


# -- CIFAR-10 -------------------------------------------------------------------------------------

CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def fetch_cifar10(
    root: str | os.PathLike[str],
    *,
    progress: bool = True,
    url: str | None = None,
    md5: str | None = None,
) -> Path:
    """Make ``root/cifar-10-batches-py`` exist: fetch the archive (resumable, MD5-checked, cached)
    and extract it atomically. Returns the folder (give ``root`` or it as ``--data``). ``url`` and
    ``md5`` replace the published ones (a mirror)."""
    root = Path(root).expanduser()
    target = root / CIFAR_FOLDER
    if all((target / f).is_file() for f in _CIFAR_FILES):
        return target
    src = SOURCES["cifar10"]
    if url is None and md5 is None:
        archive = fetch("cifar10", progress=progress)
    else:
        url = url or _url(src)
        name = Path(urllib.parse.urlparse(url).path).name or src.filename
        archive = download_file(url, cache_dir() / "downloads" / name, md5=md5 or src.md5, progress=progress)
    try:
        root.mkdir(parents=True, exist_ok=True)
        extract_dir = Path(tempfile.mkdtemp(prefix=".cifar-extract.", dir=root))
    except OSError as exc:
        raise DownloadError(f"cannot create {root}: {exc.strerror or exc}") from None
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(extract_dir, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DownloadError(f"cannot extract {archive}: {exc}") from None
        extracted = extract_dir / CIFAR_FOLDER
        if not extracted.is_dir():
            raise DownloadError(f"{archive} has no {CIFAR_FOLDER}/ folder")
        if target.exists():
            shutil.rmtree(target)
        os.replace(extracted, target)
    finally:
        shutil.rmtree(extract_dir, ignore_errors=True)
    return target


#: Data folder names (as an experiment or ``--data`` gives them) that fetched CIFAR-10 stands in
#: for when they are missing: the full dataset, or the subsets ``../shared/data`` holds.
DATASET_STANDINS: dict[str, str] = {
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    CIFAR_FOLDER: "cifar10",
    "cifar10-exact-subset": "cifar10",
    "cifar10-jpeg": "cifar10",
}


def dataset_root(name: str = "cifar10") -> Path:
    """Where a fetched dataset is extracted: ``$EDGESLIM_DATA/NAME`` when that folder exists, else
    ``$EDGESLIM_CACHE/data/NAME``."""
    env = os.environ.get(DATA_ENV, "").strip()
    if env and Path(env).expanduser().is_dir():
        return Path(env).expanduser() / name
    return cache_dir() / "data" / name


def fetch_standin(path: str | os.PathLike[str], *, progress: bool = True) -> Path | None:
    """For a missing data folder whose name is in :data:`DATASET_STANDINS`: CIFAR-10, fetched (or
    found) at :func:`dataset_root`; the ``cifar-10-batches-py`` folder. None for other names."""
    name = DATASET_STANDINS.get(Path(path).name)
    if name is None:
        return None
    return fetch_cifar10(dataset_root(name), progress=progress)
