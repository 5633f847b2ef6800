"""``load_dataset``: one entry point for every supported layout, with splits and stratified limits."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

from edgeslim.data import cifar, folder, splits
from edgeslim.data.download import download_cifar10
from edgeslim.data.remote import fetch_url, is_url
from edgeslim.data.tensors import ImageTensors
from edgeslim.errors import ConfigError, DataError
from edgeslim.fetch import DATASET_STANDINS, fetch_standin

Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = ("train", "val", "test")
DATA_ENV = "EDGESLIM_DATA"

ACCEPTED_LAYOUTS = (
    "a CIFAR-10 python folder (cifar-10-batches-py/ with data_batch_1..5 and test_batch, or its parent), "
    "or an image-folder tree (train/<class>/*.jpg|png|... plus test/ or val/)"
)


def resolve_data_path(path: str | os.PathLike[str] | None) -> Path:
    """Where the data is: ``path``, else ``$EDGESLIM_DATA``; a relative ``path`` missing from the
    working directory is also looked up under ``$EDGESLIM_DATA`` (so ``cifar10-jpeg`` works)."""
    env = os.environ.get(DATA_ENV, "").strip()
    if path is None or str(path) == "":
        if not env:
            raise DataError(f"no dataset given: set DataSource.path or {DATA_ENV}", field="DataSource.path")
        return Path(env).expanduser()
    candidate = Path(path).expanduser()
    if candidate.exists() or candidate.is_absolute() or not env:
        return candidate
    under_env = Path(env).expanduser() / candidate
    return under_env if under_env.exists() else candidate


def find_or_fetch_data(path: str | os.PathLike[str] | None, *, progress: bool = True) -> Path:
    """:func:`resolve_data_path`, and when nothing is there and the folder's name is a dataset
    edgeslim can fetch (``cifar10``, or the ``cifar10-exact-subset``/``cifar10-jpeg`` copies that
    full CIFAR-10 stands in for), CIFAR-10 downloaded (verified, cached) in its place. Offline,
    that is a one-line :class:`~edgeslim.errors.DownloadError` naming the file to place by hand.
    A URL (``s3://``, ``http(s)://``, ...) is downloaded once per machine (:mod:`edgeslim.data.remote`)."""
    if is_url(path):
        return fetch_url(str(path))
    root = resolve_data_path(path)
    if root.exists() or path is None or Path(path).name not in DATASET_STANDINS:
        return root
    folder = fetch_standin(path, progress=progress)
    assert folder is not None
    if Path(path).name not in ("cifar10", "cifar-10", folder.name):
        sys.stderr.write(f"note: no {str(path)!r} here; using CIFAR-10 from {folder.parent} in its place\n")
    return folder


def load_dataset(
    path: str | os.PathLike[str],
    split: Split | str = "train",
    *,
    limit: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> ImageTensors:
    """Load one split of a dataset in memory, detecting its layout.

    "test" is the test set; "val" is the tree's ``val/`` folder when it has both ``val/`` and
    ``test/``, else a seeded, stratified ``val_fraction`` of train, which "train" then excludes.
    ``limit`` keeps at most that many images, spread evenly over classes (after the split).
    Image-folder trees are decoded once into ``cache_dir`` (default ``$EDGESLIM_CACHE`` or
    ``~/.cache/edgeslim``); ``download=True`` fetches CIFAR-10 into ``path`` if no dataset is there.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if isinstance(val_fraction, bool) or not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer or None, got {limit!r}")
    root = Path(path).expanduser()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None

    cifar_dir = cifar.find_cifar_folder(root) if root.is_dir() else None
    is_tree = root.is_dir() and folder.is_image_tree(root)
    if cifar_dir is None and not is_tree and download:
        download_root = root.parent if root.name == cifar.FOLDER_NAME else root
        cifar_dir = download_cifar10(download_root)
    if cifar_dir is None and not is_tree:
        if not root.exists():
            raise DataError(
                f"dataset path {root} does not exist; set DataSource.path to a dataset or set {DATA_ENV} "
                "(relative paths are also looked up there); to download CIFAR-10 run "
                "`edgeslim fetch cifar10` (it prints the path to use)",
                field="DataSource.path",
            )
        hint = f" (pass its parent {root.parent}, not the split folder)" if root.name in SPLITS else ""
        raise DataError(f"{root} is not a dataset I can read{hint}; expected {ACCEPTED_LAYOUTS}")

    if cifar_dir is not None:
        data = _load_cifar(cifar_dir.resolve(), split, val_fraction, seed)
    else:
        data = _load_tree(root.resolve(), split, val_fraction, seed, cache)
    if limit is not None and limit < len(data):
        keep = splits.stratified_limit(data.labels.numpy(), data.num_classes, limit, seed)
        data = data.subset(keep)
        data = ImageTensors(data.images, data.labels, data.classes, f"{data.source} limit={limit}")
    return data


def _tensors(
    images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64], classes: list[str], source: str
) -> ImageTensors:
    return ImageTensors(
        images=torch.from_numpy(np.ascontiguousarray(images)),
        labels=torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
        classes=classes,
        source=source,
    )


def _holdout(
    data: ImageTensors, split: str, val_fraction: float, seed: int, where: Path, source: str
) -> ImageTensors:
    """Carve the stratified validation split out of the full train data ("train" or "val")."""
    if val_fraction == 0.0:
        if split == "val":
            raise ConfigError(
                f"{where} has no val/ folder, and val_fraction=0 holds out no training images; "
                "set DataSource.val_fraction > 0 (e.g. 0.1) to get a 'val' split",
                field="DataSource.val_fraction",
            )
        return data
    train_idx, val_idx = splits.val_holdout(data.labels.numpy(), data.num_classes, val_fraction, seed)
    keep = val_idx if split == "val" else train_idx
    if split == "val" and keep.size == 0:
        raise DataError(
            f"val_fraction={val_fraction} of the {len(data)} training images in {where} rounds to no "
            "images per class; raise val_fraction"
        )
    out = data.subset(keep)
    tag = f"{split} (held out val_fraction={val_fraction}, seed={seed})"
    return ImageTensors(out.images, out.labels, out.classes, f"{source} [{tag}]")


def _load_cifar(cifar_dir: Path, split: str, val_fraction: float, seed: int) -> ImageTensors:
    source = f"cifar10-pickle {cifar_dir}"
    if split == "test":
        images, labels, classes = cifar.load_cifar_split(cifar_dir, "test")
        return _tensors(images, labels, classes, f"{source} [test]")
    images, labels, classes = cifar.load_cifar_split(cifar_dir, "train")
    full = _tensors(images, labels, classes, f"{source} [train]")
    return _holdout(full, split, val_fraction, seed, cifar_dir, source)


def _load_tree(root: Path, split: str, val_fraction: float, seed: int, cache: Path | None) -> ImageTensors:
    train_dir, val_dir, test_dir = root / "train", root / "val", root / "test"
    has_val, has_test = val_dir.is_dir(), test_dir.is_dir()
    # The class list (label order) always comes from train, so labels agree across splits.
    class_source = train_dir if train_dir.is_dir() else (test_dir if has_test else val_dir)
    classes = folder.list_classes(class_source)
    source = f"image-folder {root}"

    def read(split_dir: Path, name: str) -> ImageTensors:
        images, labels = folder.load_split_images(split_dir, classes, cache)
        return _tensors(images, labels, classes, f"{source} [{name}]")

    if split == "test":
        if not (has_test or has_val):
            raise DataError(f"{root} has no test/ or val/ folder for the test split")
        return read(test_dir if has_test else val_dir, "test")
    if split == "val" and has_val and has_test:
        return read(val_dir, "val")
    if not train_dir.is_dir():
        raise DataError(f"{root} has no train/ folder for the {split} split")
    full = read(train_dir, "train")
    if has_val and has_test:  # val comes from its own folder; train keeps every image
        return full
    return _holdout(full, split, val_fraction, seed, root, source)
