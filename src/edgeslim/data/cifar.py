"""The CIFAR-10 "python version" layout: ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``.

The batch files are pickles (the official format). Pickle can run arbitrary code, so they are read
with an unpickler that only resolves the few numpy names an array needs; anything else is refused.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeslim.errors import DataError

FOLDER_NAME = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_ROW = 3 * 32 * 32

# What numpy arrays (and Python-3-written bytes under protocol 2) need to unpickle, across numpy 1.x
# (numpy.core) and 2.x (numpy._core), protocols 2-5. Checked on the official files.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and plain containers, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _unpickle(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # pickle raises many types on corrupt input; all mean the same here
        raise DataError(f"{path} is not a valid CIFAR-10 pickle (corrupt or truncated?): {exc!r}") from None


def _get(mapping: dict[Any, Any], key: str) -> Any:
    """Batches written by Python 2 have bytes keys; ones written by Python 3 may have str keys."""
    if key.encode() in mapping:
        return mapping[key.encode()]
    return mapping.get(key)


def find_cifar_folder(path: Path) -> Path | None:
    """The batches folder if ``path`` is it or contains it, else None."""
    if path.is_dir() and any((path / name).is_file() for name in (*TRAIN_FILES, TEST_FILE)):
        return path
    inner = path / FOLDER_NAME
    if inner.is_dir():
        return inner
    return None


def read_class_names(folder: Path) -> list[str]:
    """``label_names`` from ``batches.meta`` when present, else the 10 standard names."""
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        return list(CIFAR10_CLASSES)
    meta = _unpickle(meta_path)
    names = _get(meta, "label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not names:
        raise DataError(f"{meta_path} has no 'label_names' list")
    try:
        return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    except UnicodeDecodeError:
        raise DataError(f"{meta_path}: label_names are not UTF-8") from None


def read_batch(path: Path, num_classes: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """One batch file as (images uint8 [N,3,32,32], labels int64 [N]); any N."""
    batch = _unpickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path} is not a CIFAR-10 batch: expected a dict, got {type(batch).__name__}")
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{path} is not a CIFAR-10 batch: it needs 'data' (an array) and 'labels'")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _ROW:
        raise DataError(f"{path}: 'data' must be uint8 [N, {_ROW}], got {data.dtype} {list(data.shape)}")
    try:
        label_array = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' must be a list of integers") from None
    if label_array.shape[0] != data.shape[0]:
        raise DataError(f"{path}: {data.shape[0]} images but {label_array.shape[0]} labels")
    if label_array.size and (label_array.min() < 0 or label_array.max() >= num_classes):
        raise DataError(f"{path}: labels must lie in [0, {num_classes}), found {int(label_array.max())}")
    # Rows are 1024 red, 1024 green, 1024 blue values, each 32x32 row-major: already CHW.
    return data.reshape(-1, 3, 32, 32), label_array


def load_cifar_split(
    folder: Path, split: str
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], list[str]]:
    """All images of ``split`` ("train": the data_batch_* present, "test": test_batch)."""
    classes = read_class_names(folder)
    if split == "train":
        files = [folder / name for name in TRAIN_FILES if (folder / name).is_file()]
        if not files:
            raise DataError(f"{folder} has no training batches ({', '.join(TRAIN_FILES)})")
    else:
        files = [folder / TEST_FILE]
        if not files[0].is_file():
            raise DataError(f"{folder} has no {TEST_FILE} for the test split")
    parts = [read_batch(f, len(classes)) for f in files]
    images = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
    labels = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
    return np.ascontiguousarray(images), labels, classes
