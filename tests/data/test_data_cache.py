"""The decoded-image cache: hits skip decoding, any change to the files rebuilds it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from PIL import Image

from edgeslim.data import folder, load_dataset
from edgeslim.errors import DataError

MakeTree = Callable[..., Path]


class DecodeCounter:
    """Wraps the real decoder and counts calls (or refuses them, to prove a cache hit)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.forbid = False
        self._real = folder._decode_images
        monkeypatch.setattr(folder, "_decode_images", self)

    def __call__(self, paths: list[str], workers: int | None = None) -> npt.NDArray[np.uint8]:
        if self.forbid:
            raise AssertionError("decoded although the cache should have been used")
        self.calls += 1
        return self._real(paths, workers)


@pytest.fixture
def decoder(monkeypatch: pytest.MonkeyPatch) -> DecodeCounter:
    return DecodeCounter(monkeypatch)


@pytest.fixture
def tree(tmp_path: Path, make_tree: MakeTree) -> Path:
    return make_tree(tmp_path / "ds", {"train": {"a": 3, "b": 2}, "test": {"a": 1, "b": 1}})


def test_second_load_uses_cache(tree: Path, cache_dir: Path, decoder: DecodeCounter) -> None:
    first = load_dataset(tree, "train", val_fraction=0.0)
    assert decoder.calls == 1
    files = sorted(p.name for p in cache_dir.iterdir())
    assert len(files) == 1 and files[0].startswith("ds-train-") and files[0].endswith(".npy")
    decoder.forbid = True
    second = load_dataset(tree, "train", val_fraction=0.0)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    load_dataset(tree, "val", val_fraction=0.4)  # other splits of train reuse the same cache
    decoder.forbid = False
    load_dataset(tree, "test")
    assert decoder.calls == 2 and len(list(cache_dir.iterdir())) == 2


def test_touching_a_file_rebuilds(tree: Path, cache_dir: Path, decoder: DecodeCounter) -> None:
    load_dataset(tree, "train", val_fraction=0.0)
    target = tree / "train" / "b" / "0001.png"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    load_dataset(tree, "train", val_fraction=0.0)
    assert decoder.calls == 2
    assert len(list(cache_dir.iterdir())) == 1  # the stale version was removed


def test_changed_and_added_files_rebuild(tree: Path, cache_dir: Path, decoder: DecodeCounter) -> None:
    load_dataset(tree, "train", val_fraction=0.0)
    Image.new("RGB", (6, 5), (1, 2, 3)).save(tree / "train" / "b" / "0009.png")
    data = load_dataset(tree, "train", val_fraction=0.0)
    assert decoder.calls == 2
    assert len(data) == 6 and data.images[5, :, 0, 0].tolist() == [1, 2, 3]
    (tree / "train" / "a" / "0000.png").unlink()
    assert len(load_dataset(tree, "train", val_fraction=0.0)) == 5
    assert decoder.calls == 3


def test_corrupt_cache_file_is_rebuilt(tree: Path, cache_dir: Path, decoder: DecodeCounter) -> None:
    first = load_dataset(tree, "train", val_fraction=0.0)
    (cache_file,) = cache_dir.iterdir()
    cache_file.write_bytes(b"not numpy")
    second = load_dataset(tree, "train", val_fraction=0.0)
    assert decoder.calls == 2 and torch.equal(first.images, second.images)
    assert np.load(cache_file).shape == (5, 3, 5, 6)


def test_explicit_cache_dir_and_unwritable_cache(tree: Path, tmp_path: Path, decoder: DecodeCounter) -> None:
    explicit = tmp_path / "explicit"
    load_dataset(tree, "train", cache_dir=explicit)
    assert len(list(explicit.glob("*.npy"))) == 1
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    data = load_dataset(tree, "train", val_fraction=0.0, cache_dir=blocker / "sub")  # warns, still loads
    assert len(data) == 5


def test_process_pool_matches_in_process(
    tmp_path: Path, make_tree: MakeTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path, {"train": {"a": 40, "b": 30}})
    paths = folder.scan_split((tmp_path / "train").resolve(), ["a", "b"]).paths()
    serial = folder._decode_images(paths, workers=1)
    monkeypatch.setattr(folder, "_POOL_MIN_IMAGES", 0)
    pooled = folder._decode_images(paths, workers=2)
    assert np.array_equal(serial, pooled)
    Image.new("RGB", (3, 3)).save(tmp_path / "train" / "b" / "0029.png")
    with pytest.raises(DataError, match=r"0029\.png"):
        folder._decode_images(paths, workers=2)
