"""The real offline data, read through the ordinary loaders (slow: decodes 10k JPEGs)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeslim.data import CIFAR10_CLASSES, BatchLoader, load_dataset

pytestmark = pytest.mark.slow


def test_exact_subset(shared_data: Path) -> None:
    root = shared_data / "cifar10-exact-subset"
    test = load_dataset(root, "test")
    assert len(test) == 1017 and test.classes == list(CIFAR10_CLASSES)
    assert test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    with open(root / "cifar-10-batches-py" / "test_batch", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    assert test.labels.tolist() == list(raw[b"labels"])
    assert torch.equal(test.images, torch.from_numpy(np.asarray(raw[b"data"]).reshape(-1, 3, 32, 32)))

    train = load_dataset(root, "train", val_fraction=0.1)
    val = load_dataset(root, "val", val_fraction=0.1)
    assert len(train) + len(val) == 5170
    full = load_dataset(root, "train", val_fraction=0.0)
    per_class = full.class_counts()
    assert val.class_counts() == [int(np.floor(n * 0.1 + 0.5)) for n in per_class]
    assert len(load_dataset(root, "test", limit=100).class_counts()) == 10
    assert load_dataset(root, "test", limit=100).class_counts() == [10] * 10


def test_jpeg_test_split(shared_data: Path) -> None:
    test = load_dataset(shared_data / "cifar10-jpeg", "test")
    assert len(test) == 10000 and test.images.shape == (10000, 3, 32, 32)
    assert test.classes == list(CIFAR10_CLASSES)  # sorted folder names = the standard label order
    assert test.class_counts() == [1000] * 10
    x, y = next(iter(BatchLoader(test, 256)))
    assert x.shape == (256, 3, 32, 32) and float(x.min()) > -2.2 and float(x.max()) < 2.7
    assert y.tolist() == [0] * 256
