"""Download CIFAR-10 (python version), verify its MD5, and extract it atomically.

A half-finished download or extraction must never look like a dataset: the archive is streamed to
a temporary file, checked, extracted into a temporary folder, and only then renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from edgeslim.data.cifar import FOLDER_NAME, TEST_FILE, TRAIN_FILES
from edgeslim.errors import DownloadError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
_CHUNK = 1 << 20
_TIMEOUT_S = 60.0


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (*TRAIN_FILES, TEST_FILE))


def download_cifar10(
    root: str | os.PathLike[str],
    *,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
    progress: bool = True,
) -> Path:
    """Make ``root/cifar-10-batches-py`` exist (downloading only if it is incomplete); return it."""
    root = Path(root).expanduser()
    target = root / FOLDER_NAME
    if _complete(target):
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {root}: {exc.strerror or exc}") from None
    fd, archive_name = tempfile.mkstemp(prefix=".cifar-10-python.", suffix=".tar.gz.tmp", dir=root)
    os.close(fd)
    archive = Path(archive_name)
    extract_dir: Path | None = None
    try:
        actual = _fetch(url, archive, progress)
        if actual != md5.lower():
            raise DownloadError(f"checksum mismatch for {url}: expected md5 {md5}, got {actual}")
        extract_dir = Path(tempfile.mkdtemp(prefix=".cifar-extract.", dir=root))
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(extract_dir, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DownloadError(f"cannot extract the archive from {url}: {exc}") from None
        extracted = extract_dir / FOLDER_NAME
        if not extracted.is_dir():
            raise DownloadError(f"the archive from {url} has no {FOLDER_NAME}/ folder")
        if target.exists():  # an incomplete earlier copy; replace it whole
            shutil.rmtree(target)
        os.replace(extracted, target)
    finally:
        archive.unlink(missing_ok=True)
        if extract_dir is not None:
            shutil.rmtree(extract_dir, ignore_errors=True)
    return target


def _fetch(url: str, dest: Path, progress: bool) -> str:
    """Stream ``url`` into ``dest``; return the MD5 hex digest of what was written."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    _report(url, done, total)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"could not download {url}: {reason}") from None
    finally:
        if progress:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write("\n")
    return digest.hexdigest()


def _report(url: str, done: int, total: int) -> None:
    size = f"{done / 1e6:.1f} MB" + (f" / {total / 1e6:.1f} MB ({100 * done / total:.0f}%)" if total else "")
    sys.stderr.write(f"\rdownloading {url}: {size}")
    sys.stderr.flush()
