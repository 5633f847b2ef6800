"""load_dataset on both layouts: shapes, labels, class order, pixels, and error messages."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from edgeslim.data import CIFAR10_CLASSES, ImageTensors, load_dataset, resolve_data_path
from edgeslim.errors import ConfigError, DataError

MakeCifar = Callable[..., dict[str, dict[bytes, Any]]]
MakeTree = Callable[..., Path]


# -- CIFAR-10 pickles ------------------------------------------------------------------------------
def test_cifar_any_batch_sizes_shapes_and_pixels(tmp_path: Path, make_cifar: MakeCifar) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    batches = make_cifar(folder, train_sizes=(7, 3, 5, 1, 4), test_size=6, meta=["a", "b", "c"])
    test = load_dataset(folder, "test")
    assert test.images.shape == (6, 3, 32, 32) and test.images.dtype == torch.uint8
    assert test.images.is_contiguous()
    assert test.labels.dtype == torch.int64
    assert test.labels.tolist() == batches["test_batch"][b"labels"]
    assert test.classes == ["a", "b", "c"] and test.num_classes == 3
    data = batches["test_batch"][b"data"]
    # Row layout: 1024 R, 1024 G, 1024 B values, each a row-major 32x32 plane.
    assert test.images[2, 1, 3, 5].item() == data[2, 1024 + 3 * 32 + 5]
    assert torch.equal(test.images, torch.from_numpy(data.reshape(6, 3, 32, 32)))

    train = load_dataset(folder, "train", val_fraction=0.0)
    assert len(train) == 7 + 3 + 5 + 1 + 4
    expected = [y for i in range(1, 6) for y in batches[f"data_batch_{i}"][b"labels"]]
    assert train.labels.tolist() == expected
    assert torch.equal(
        train.images[7:10], torch.from_numpy(batches["data_batch_2"][b"data"].reshape(3, 3, 32, 32))
    )


def test_cifar_parent_folder_default_names_and_missing_batches(tmp_path: Path, make_cifar: MakeCifar) -> None:
    make_cifar(tmp_path / "cifar-10-batches-py", train_sizes=(4, 2), test_size=3)
    data = load_dataset(tmp_path, "train", val_fraction=0.0)  # the folder's parent works too
    assert len(data) == 6
    assert data.classes == list(CIFAR10_CLASSES)
    assert "cifar10-pickle" in data.source


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_pickle_protocols(tmp_path: Path, make_cifar: MakeCifar, protocol: int) -> None:
    batches = make_cifar(tmp_path, train_sizes=(3,), test_size=2, protocol=protocol)
    test = load_dataset(tmp_path, "test")
    assert torch.equal(test.images.flatten(1), torch.from_numpy(batches["test_batch"][b"data"]))


def test_cifar_str_keys_are_accepted(tmp_path: Path) -> None:
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": [1, 9]}))
    test = load_dataset(tmp_path, "test")
    assert test.labels.tolist() == [1, 9]


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned > pwned.txt",))


def test_cifar_unpickling_refuses_arbitrary_globals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(DataError, match="test_batch") as err:
        load_dataset(tmp_path, "test")
    assert "posix.system" in str(err.value) or "os.system" in str(err.value)
    assert not (tmp_path / "pwned.txt").exists()


def test_cifar_corrupt_and_truncated_batches(tmp_path: Path, make_cifar: MakeCifar) -> None:
    make_cifar(tmp_path, train_sizes=(5, 5), test_size=4)
    full = (tmp_path / "data_batch_2").read_bytes()
    (tmp_path / "data_batch_2").write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match="data_batch_2"):
        load_dataset(tmp_path, "train")
    (tmp_path / "test_batch").write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match="test_batch"):
        load_dataset(tmp_path, "test")


def test_cifar_wrong_contents(tmp_path: Path) -> None:
    (tmp_path / "test_batch").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(DataError, match=r"test_batch.*uint8 \[N, 3072\]"):
        load_dataset(tmp_path, "test")
    (tmp_path / "test_batch").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    )
    with pytest.raises(DataError, match=r"labels must lie in \[0, 10\)"):
        load_dataset(tmp_path, "test")
    (tmp_path / "test_batch").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="expected a dict"):
        load_dataset(tmp_path, "test")


# -- image folders ---------------------------------------------------------------------------------
def test_tree_shapes_sorted_classes_and_pixels(
    tmp_path: Path, make_tree: MakeTree, pixel: Callable[[str, int, int], tuple[int, int, int]]
) -> None:
    counts = {"zebra": 2, "ant": 3, "mole": 1}
    make_tree(tmp_path, {"train": counts, "test": {"ant": 1, "mole": 2}}, size=(6, 5))
    train = load_dataset(tmp_path, "train", val_fraction=0.0)
    assert train.classes == ["ant", "mole", "zebra"]
    assert train.images.shape == (6, 3, 5, 6) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [0, 0, 0, 1, 2, 2]
    assert train.image_size == (5, 6)
    for i, (label, index) in enumerate([(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (2, 1)]):
        assert train.images[i, :, 2, 3].tolist() == list(pixel("train", label, index))
    test = load_dataset(tmp_path, "test")
    assert test.classes == train.classes  # class list from train even though test lacks "zebra"
    assert test.labels.tolist() == [0, 1, 1]
    assert test.images[2, :, 0, 0].tolist() == list(pixel("test", 1, 1))
    assert test.class_counts() == [1, 2, 0]


def test_tree_mixed_formats_modes_and_ignored_files(tmp_path: Path) -> None:
    cls = tmp_path / "train" / "only"
    cls.mkdir(parents=True)
    Image.new("L", (4, 4), 77).save(cls / "a.PNG")
    Image.new("RGBA", (4, 4), (1, 2, 3, 4)).save(cls / "b.png")
    Image.new("RGB", (4, 4), (9, 8, 7)).save(cls / "c.bmp")
    Image.new("RGB", (4, 4), (200, 100, 50)).save(cls / "d.jpg", quality=100)
    Image.new("RGB", (4, 4), (20, 10, 5)).save(cls / "e.webp", lossless=True)
    (cls / "notes.txt").write_text("not an image")
    (cls / ".hidden.png").write_bytes(b"not an image either")
    (tmp_path / "train" / ".cache").mkdir()  # hidden folders are not classes
    (tmp_path / "test").mkdir()
    data = load_dataset(tmp_path, "train", val_fraction=0.0)
    assert data.classes == ["only"]
    assert len(data) == 5
    assert data.images[:, :, 0, 0].tolist()[:3] == [[77, 77, 77], [1, 2, 3], [9, 8, 7]]
    assert abs(data.images[3, :, 0, 0].int() - torch.tensor([200, 100, 50])).max() <= 3
    assert data.images[4, :, 0, 0].tolist() == [20, 10, 5]


def test_tree_test_split_falls_back_to_val_folder(tmp_path: Path, make_tree: MakeTree) -> None:
    make_tree(tmp_path, {"train": {"a": 4, "b": 4}, "val": {"a": 2, "b": 1}})
    assert len(load_dataset(tmp_path, "test")) == 3
    # Without test/, val/ is the test set and "val" is held out of train instead.
    val = load_dataset(tmp_path, "val", val_fraction=0.25)
    assert val.class_counts() == [1, 1]


def test_tree_val_folder_when_both_val_and_test(tmp_path: Path, make_tree: MakeTree) -> None:
    make_tree(tmp_path, {"train": {"a": 4, "b": 4}, "val": {"a": 2, "b": 1}, "test": {"a": 1, "b": 1}})
    assert len(load_dataset(tmp_path, "val")) == 3
    assert len(load_dataset(tmp_path, "test")) == 2
    assert len(load_dataset(tmp_path, "train", val_fraction=0.5)) == 8  # nothing held out


# -- errors ----------------------------------------------------------------------------------------
def test_missing_path_names_it_and_suggests_data(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere") as err:
        load_dataset(missing)
    assert "DataSource.path" in str(err.value) and "EDGESLIM_DATA" in str(err.value)
    assert err.value.field == "DataSource.path"


def test_unknown_layout_lists_accepted_layouts(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DataError, match="cifar-10-batches-py") as err:
        load_dataset(tmp_path / "stuff")
    assert "train/<class>" in str(err.value)


def test_split_folder_given_instead_of_root(tmp_path: Path, make_tree: MakeTree) -> None:
    make_tree(tmp_path, {"train": {"a": 1}})
    with pytest.raises(DataError, match="parent"):
        load_dataset(tmp_path / "train")


def test_empty_class_folder_is_named(tmp_path: Path, make_tree: MakeTree) -> None:
    make_tree(tmp_path, {"train": {"a": 2}, "test": {"a": 1}})
    (tmp_path / "train" / "empty_cls").mkdir()
    with pytest.raises(DataError, match="empty_cls"):
        load_dataset(tmp_path, "train")


def test_unreadable_image_is_named(tmp_path: Path, make_tree: MakeTree) -> None:
    make_tree(tmp_path, {"train": {"a": 2, "b": 2}})
    (tmp_path / "train" / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg"):
        load_dataset(tmp_path, "train")


def test_truncated_image_is_named(tmp_path: Path, make_tree: MakeTree) -> None:
    make_tree(tmp_path, {"train": {"a": 2}})
    good = tmp_path / "train" / "a" / "0001.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)).save(good)
    good.write_bytes(good.read_bytes()[:-30])
    with pytest.raises(DataError, match=r"0001\.png"):
        load_dataset(tmp_path, "train")


def test_mixed_sizes_are_refused(tmp_path: Path, make_tree: MakeTree) -> None:
    make_tree(tmp_path, {"train": {"a": 2}})
    Image.new("RGB", (7, 7)).save(tmp_path / "train" / "a" / "odd.png")
    with pytest.raises(DataError, match=r"odd.png is 7x7 .* 6x5"):
        load_dataset(tmp_path, "train")


def test_test_class_unknown_to_train(tmp_path: Path, make_tree: MakeTree) -> None:
    make_tree(tmp_path, {"train": {"a": 1}, "test": {"a": 1, "q": 1}})
    with pytest.raises(DataError, match="q"):
        load_dataset(tmp_path, "test")


def test_bad_arguments(tmp_path: Path, make_tree: MakeTree) -> None:
    make_tree(tmp_path, {"train": {"a": 2}})
    with pytest.raises(ConfigError, match="split"):
        load_dataset(tmp_path, "dev")
    with pytest.raises(ConfigError, match="val_fraction"):
        load_dataset(tmp_path, val_fraction=1.0)
    with pytest.raises(ConfigError, match="limit"):
        load_dataset(tmp_path, limit=0)
    with pytest.raises(DataError, match="no test/ or val/"):
        load_dataset(tmp_path, "test")


# -- resolve_data_path -----------------------------------------------------------------------------
def test_resolve_data_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGESLIM_DATA", raising=False)
    with pytest.raises(DataError, match=r"set DataSource\.path or EDGESLIM_DATA"):
        resolve_data_path(None)
    assert resolve_data_path("some/rel") == Path("some/rel")

    root = tmp_path / "root"
    (root / "cifar10-jpeg").mkdir(parents=True)
    monkeypatch.setenv("EDGESLIM_DATA", str(root))
    assert resolve_data_path(None) == root
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert resolve_data_path("cifar10-jpeg") == root / "cifar10-jpeg"  # looked up under EDGESLIM_DATA
    assert resolve_data_path("absent") == Path("absent")  # not under either: left for a clear error
    (cwd / "cifar10-jpeg").mkdir()
    assert resolve_data_path("cifar10-jpeg") == Path("cifar10-jpeg")  # the working directory wins


# -- ImageTensors ----------------------------------------------------------------------------------
def test_image_tensors_subset_and_validation() -> None:
    images = torch.arange(4 * 3 * 2 * 2, dtype=torch.uint8).view(4, 3, 2, 2)
    data = ImageTensors(images, torch.tensor([0, 1, 1, 0]), ["x", "y"], "mem")
    sub = data.subset([3, 1])
    assert len(sub) == 2 and sub.labels.tolist() == [0, 1]
    assert torch.equal(sub.images, images[[3, 1]]) and sub.images.is_contiguous()
    assert len(data.subset(torch.tensor([], dtype=torch.int64))) == 0
    assert len(data.subset(np.array([0, 2]))) == 2
    with pytest.raises(ValueError, match="uint8"):
        ImageTensors(images.float(), data.labels, data.classes, "mem")
    with pytest.raises(ValueError, match="labels"):
        ImageTensors(images, torch.tensor([0, 1, 2, 0]), data.classes, "mem")
    strided = ImageTensors(images.permute(0, 1, 3, 2), data.labels, data.classes, "mem")
    assert strided.images.is_contiguous()
