"""Held-out validation split and stratified ``limit``: exact counts, determinism, disjointness."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeslim.data import ImageTensors, load_dataset
from edgeslim.data.splits import per_class_quotas, stratified_limit, val_holdout
from edgeslim.errors import ConfigError, DataError

MakeTree = Callable[..., Path]


def _keys(data: ImageTensors) -> set[tuple[int, int]]:
    """Identify tree images by (label, index) through their pixel colour (see conftest.pixel_value)."""
    return {(int(y), int(i)) for y, i in zip(data.labels, data.images[:, 1, 0, 0], strict=True)}


@pytest.fixture
def tree(tmp_path: Path, make_tree: MakeTree) -> Path:
    return make_tree(tmp_path, {"train": {"a": 20, "b": 10, "c": 5}, "test": {"a": 3, "b": 3, "c": 3}})


def test_val_holdout_is_stratified_disjoint_and_complete(tree: Path) -> None:
    full = load_dataset(tree, "train", val_fraction=0.0)
    train = load_dataset(tree, "train", val_fraction=0.2, seed=3)
    val = load_dataset(tree, "val", val_fraction=0.2, seed=3)
    assert val.class_counts() == [4, 2, 1]  # round(0.2 * [20, 10, 5])
    assert train.class_counts() == [16, 8, 4]
    assert _keys(train).isdisjoint(_keys(val))
    assert _keys(train) | _keys(val) == _keys(full)
    assert val.classes == full.classes


def test_val_holdout_is_deterministic_and_seeded(tree: Path) -> None:
    a = load_dataset(tree, "val", val_fraction=0.3, seed=1)
    b = load_dataset(tree, "val", val_fraction=0.3, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    others = [_keys(load_dataset(tree, "val", val_fraction=0.3, seed=s)) for s in range(2, 6)]
    assert any(k != _keys(a) for k in others)


def test_val_fraction_zero(tree: Path) -> None:
    assert len(load_dataset(tree, "train", val_fraction=0.0)) == 35
    with pytest.raises(ConfigError, match="val_fraction") as err:
        load_dataset(tree, "val", val_fraction=0.0)
    assert "no val/ folder" in str(err.value)


def test_val_too_small_to_hold_anything(tmp_path: Path, make_tree: MakeTree) -> None:
    make_tree(tmp_path, {"train": {"a": 2, "b": 2}})
    with pytest.raises(DataError, match="raise val_fraction"):
        load_dataset(tmp_path, "val", val_fraction=0.1)


def test_limit_counts_per_class_are_exact(tree: Path) -> None:
    assert load_dataset(tree, "train", val_fraction=0.0, limit=9).class_counts() == [3, 3, 3]
    assert load_dataset(tree, "train", val_fraction=0.0, limit=10).class_counts() == [4, 3, 3]
    # "c" has only 5 images: its unused share goes to the others.
    assert load_dataset(tree, "train", val_fraction=0.0, limit=24).class_counts() == [10, 9, 5]
    assert load_dataset(tree, "train", val_fraction=0.0, limit=1000).class_counts() == [20, 10, 5]
    assert load_dataset(tree, "test", limit=2).class_counts() == [1, 1, 0]


def test_limit_applies_after_split_and_is_deterministic(tree: Path) -> None:
    train = load_dataset(tree, "train", val_fraction=0.2, seed=3)
    limited = load_dataset(tree, "train", val_fraction=0.2, seed=3, limit=12)
    assert limited.class_counts() == [4, 4, 4]
    assert _keys(limited) <= _keys(train)
    again = load_dataset(tree, "train", val_fraction=0.2, seed=3, limit=12)
    assert torch.equal(limited.images, again.images)
    smaller = load_dataset(tree, "train", val_fraction=0.2, seed=3, limit=6)
    assert _keys(smaller) <= _keys(limited)  # nested for one seed
    assert "limit=12" in limited.source


@pytest.mark.parametrize(
    ("counts", "limit", "expected"),
    [
        ([5, 3, 1], 7, [3, 3, 1]),
        ([5, 5, 5], 7, [3, 2, 2]),
        ([0, 4, 4], 5, [0, 3, 2]),
        ([2, 2], 10, [2, 2]),
        ([100, 1, 1, 1], 10, [7, 1, 1, 1]),
    ],
)
def test_per_class_quotas(counts: list[int], limit: int, expected: list[int]) -> None:
    assert per_class_quotas(counts, limit) == expected


def test_index_helpers_properties() -> None:
    labels = np.repeat(np.arange(4), [9, 1, 30, 0]).astype(np.int64)
    rng = np.random.default_rng(5)
    labels = labels[rng.permutation(labels.shape[0])]
    train, val = val_holdout(labels, 4, 0.25, seed=7)
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert np.bincount(labels[val], minlength=4).tolist() == [2, 0, 8, 0]  # round(0.25*9)=2, round(7.5)=8
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(40))
    keep = stratified_limit(labels, 4, 6, seed=0)
    assert np.bincount(labels[keep], minlength=4).tolist() == [3, 1, 2, 0]
