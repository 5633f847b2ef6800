"""Shared fixtures: deterministic seeds, few threads, and the location of the offline data."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """EDGESLIM_DATA, else ../shared/data beside the checkout; None if neither exists."""
    env = os.environ.get("EDGESLIM_DATA")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if candidate.is_dir():
            return candidate.resolve()
    return None


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip("offline data not found: set EDGESLIM_DATA to the shared data folder")
    return root


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CIFAR-10 folder in the standard pickle layout (320 train, 100 test 32x32 images).

    The class of an image is visible in its mean colour, so a few training steps learn something.
    """
    import pickle

    root = tmp_path_factory.mktemp("tiny_cifar") / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)

    def batch(n: int) -> dict[bytes, object]:
        labels = np.arange(n) % 10
        images = rng.integers(0, 80, size=(n, 3, 32, 32), dtype=np.int64)
        images[:, 0] += (labels * 17)[:, None, None]
        return {b"data": images.clip(0, 255).astype(np.uint8).reshape(n, -1), b"labels": labels.tolist()}

    for name, n in (("data_batch_1", 320), ("test_batch", 100)):
        with open(root / name, "wb") as fh:
            pickle.dump(batch(n), fh)
    return root
