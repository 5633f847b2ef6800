"""Registry hints and atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeslim.errors import ModelError
from edgeslim.io import atomic_torch_save, atomic_write
from edgeslim.registry import Registry


def test_registry_suggests_close_names() -> None:
    reg: Registry[int] = Registry("model", ModelError)
    reg.add("resnet20", 1)
    reg.add("resnet56", 2)
    assert reg.get("resnet20") == 1
    assert reg.names("*56") == ["resnet56"]
    with pytest.raises(ModelError, match="did you mean 'resnet20'"):
        reg.get("resnet2O")
    with pytest.raises(ValueError, match="already registered"):
        reg.add("resnet20", 3)


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def broken(fh: object) -> None:
        fh.write(b"partial")  # type: ignore[attr-defined]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_atomic_torch_save_round_trip(tmp_path: Path) -> None:
    path = atomic_torch_save({"w": torch.arange(3)}, tmp_path / "sub" / "x.pt")
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))
