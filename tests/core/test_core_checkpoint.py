"""Checkpoint reading: every common layout, module. prefixes, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgeslim.checkpoint import load_state_dict_into, read_checkpoint, read_state_dict, save_checkpoint
from edgeslim.errors import CheckpointError


def _net(out: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(out))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    model(torch.zeros(1, 3, 6, 6))
    return model.state_dict()


@pytest.mark.parametrize("layout", ["bare", "state_dict", "model", "module_prefix"])
def test_layouts(tmp_path: Path, layout: str) -> None:
    state = _state(_net())
    payload: object = {
        "bare": state,
        "state_dict": {"state_dict": state, "best_prec1": 90.0},
        "model": {"model": state, "epoch": 3},
        "module_prefix": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
    }[layout]
    torch.save(payload, tmp_path / "w.pt")
    loaded = read_state_dict(tmp_path / "w.pt")
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_mismatch_lists_keys_and_hints_num_classes() -> None:
    model = _net(3)
    _state(model)
    other = _state(_net(5))
    other["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_into(model, other, source="ckpt")
    message = str(info.value)
    assert "unexpected keys (1): extra.weight" in message
    assert "2.weight: checkpoint (5, 64) vs model (3, 64)" in message


def test_classifier_mismatch_mentions_num_classes() -> None:
    model = nn.Sequential()
    model.add_module("linear", nn.Linear(4, 3))
    other = nn.Sequential()
    other.add_module("linear", nn.Linear(4, 5))
    with pytest.raises(CheckpointError, match=r"ModelSource\.num_classes"):
        load_state_dict_into(model, other.state_dict(), source="x")


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        read_state_dict(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pt")


def test_pickled_module_is_refused(tmp_path: Path) -> None:
    torch.save(_net(), tmp_path / "module.pt")
    with pytest.raises(CheckpointError):
        read_state_dict(tmp_path / "module.pt")


def test_save_and_read_checkpoint(tmp_path: Path) -> None:
    model = _net()
    _state(model)
    path = save_checkpoint(
        tmp_path / "c.pt", model, model_name="x", model_kwargs={"num_classes": 3}, meta={"a": 1}
    )
    ckpt = read_checkpoint(path)
    assert ckpt["model"] == {"name": "x", "kwargs": {"num_classes": 3}}
    assert ckpt["meta"] == {"a": 1}
    torch.save({"state_dict": model.state_dict()}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an edgeslim checkpoint"):
        read_checkpoint(tmp_path / "plain.pt")
