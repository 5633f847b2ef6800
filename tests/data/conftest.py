"""Builders for tiny datasets in tmp_path: image-folder trees and CIFAR-10 pickle batches."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def pixel_value(split: str, label: int, index: int) -> tuple[int, int, int]:
    """The constant RGB colour of image ``index`` of class ``label`` in ``split`` (PNG keeps it exact)."""
    return (10 * label + 1, index, {"train": 50, "val": 100, "test": 150}[split])


def write_tree(
    root: Path,
    counts: dict[str, dict[str, int]],
    *,
    size: tuple[int, int] = (6, 5),
    ext: str = ".png",
) -> Path:
    """``counts[split][class]`` images of ``size`` (W, H); class labels follow sorted class names."""
    for split, per_class in counts.items():
        for label, cls in enumerate(sorted(per_class)):
            class_dir = root / split / cls
            class_dir.mkdir(parents=True, exist_ok=True)
            for i in range(per_class[cls]):
                img = Image.new("RGB", size, pixel_value(split, label, i))
                img.save(class_dir / f"{i:04d}{ext}")
    return root


def cifar_batch(num: int, seed: int, num_classes: int = 10) -> dict[bytes, Any]:
    """A batch dict in the official layout (bytes keys, data uint8 [N, 3072], labels a list)."""
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": f"batch {seed}".encode(),
        b"labels": [int(x) for x in rng.integers(0, num_classes, num)],
        b"data": rng.integers(0, 256, (num, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(num)],
    }


def write_cifar(
    folder: Path,
    train_sizes: tuple[int, ...] = (7, 3, 5, 1, 4),
    test_size: int = 6,
    *,
    meta: list[str] | None = None,
    protocol: int = 2,
) -> dict[str, dict[bytes, Any]]:
    """Write ``data_batch_1..k`` and ``test_batch`` (and ``batches.meta`` if ``meta``); return the batches."""
    folder.mkdir(parents=True, exist_ok=True)
    num_classes = len(meta) if meta else 10
    batches = {f"data_batch_{i + 1}": cifar_batch(n, i + 1, num_classes) for i, n in enumerate(train_sizes)}
    batches["test_batch"] = cifar_batch(test_size, 99, num_classes)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    if meta is not None:
        info = {b"num_cases_per_batch": 10000, b"label_names": [m.encode() for m in meta], b"num_vis": 3072}
        (folder / "batches.meta").write_bytes(pickle.dumps(info, protocol=protocol))
    return batches


@pytest.fixture
def make_tree() -> Callable[..., Path]:
    return write_tree


@pytest.fixture
def make_cifar() -> Callable[..., dict[str, dict[bytes, Any]]]:
    return write_cifar


@pytest.fixture
def pixel() -> Callable[[str, int, int], tuple[int, int, int]]:
    return pixel_value


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private decoded-image cache for every test here, so none writes to ~/.cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("EDGESLIM_CACHE", str(path))
    return path
