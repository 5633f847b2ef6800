"""``download_cifar10``: CIFAR-10 (python version) through the one downloader, :mod:`edgeslim.fetch`.

Kept for its name and signature; the download itself (resumable into ``$EDGESLIM_CACHE``, MD5
checked, extracted atomically, a one-line offline error naming the file to place) is
:func:`edgeslim.fetch.fetch_cifar10`.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeslim.fetch import SOURCES, fetch_cifar10

CIFAR10_URL = SOURCES["cifar10"].url
CIFAR10_MD5 = str(SOURCES["cifar10"].md5)


def download_cifar10(
    root: str | os.PathLike[str],
    *,
    url: str | None = None,
    md5: str | None = None,
    progress: bool = True,
) -> Path:
    """Make ``root/cifar-10-batches-py`` exist (downloading only if it is incomplete); return it.
    ``url``/``md5`` default to the published archive (or ``$EDGESLIM_MIRROR``)."""
    return fetch_cifar10(root, progress=progress, url=url, md5=md5)
