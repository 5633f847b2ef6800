"""The edgeslim checkpoint file: model spec + state_dict + metadata, loadable with weights_only=True.

Nothing edgeslim writes is a pickled module. A checkpoint is a dict of plain data and tensors:

    {"format": "edgeslim.checkpoint", "version": 1,
     "model": {"name": "resnet20", "kwargs": {"num_classes": 10}},
     "state_dict": {...}, "meta": {...}, "train_state": {...} (optional)}

Weight files from elsewhere (a bare state_dict, one under "state_dict" or "model", keys with a
"module." prefix) are read by :func:`read_state_dict`.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeslim.errors import CheckpointError
from edgeslim.io import atomic_torch_save

FORMAT = "edgeslim.checkpoint"
VERSION = 1


def read_file(path: str | os.PathLike[str]) -> Any:
    """``torch.load(weights_only=True)`` with clear errors for missing or corrupt files."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(
            f"checkpoint {str(p)!r} does not exist (check ModelSource.weights / ModelSource.checkpoint)"
        )
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        text = str(exc).strip()
        first = text.splitlines()[0].split(". ")[0] if text else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {str(p)!r} is corrupt or not a PyTorch weights file ({first[:160]})"
        ) from None


def is_edgeslim_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def extract_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the state_dict in a loaded file and strip ``module.`` (DataParallel) prefixes."""
    state = obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict) and obj[key]:
                candidate = obj[key]
                if all(isinstance(v, torch.Tensor) for v in candidate.values()):
                    state = candidate
                    break
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        raise CheckpointError(
            f"{source}: no state_dict found (expected a dict of tensors, or one under 'state_dict' or 'model')"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = str(key)
        while name.startswith("module."):
            name = name[len("module.") :]
        out[name] = value
    return out


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    return extract_state_dict(read_file(path), source=str(path))


def load_state_dict_into(
    model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Strict load with an error that lists missing/unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and own[k].shape != state[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {_preview(mismatched)}")
        if any(_looks_like_classifier(k) for k in mismatched):
            problems.append(
                "the classifier shape differs: was it trained for another ModelSource.num_classes?"
            )
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    model_name: str,
    model_kwargs: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write an edgeslim checkpoint atomically."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"name": model_name, "kwargs": dict(model_kwargs or {})},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    if train_state is not None:
        payload["train_state"] = train_state
    return atomic_torch_save(payload, path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an edgeslim checkpoint (format and version checked)."""
    return as_checkpoint(read_file(path), path)


def as_checkpoint(obj: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check that an already-read file is an edgeslim checkpoint of a version this code reads."""
    if not is_edgeslim_checkpoint(obj):
        raise CheckpointError(
            f"{str(path)!r} is not an edgeslim checkpoint; for plain weights use ModelSource.name with "
            "ModelSource.weights"
        )
    if obj.get("version") != VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint version {obj.get('version')!r}; expected {VERSION}"
        )
    return dict(obj)


def recorded_image_size(path: str | os.PathLike[str]) -> int | None:
    """The square input size a checkpoint, pruned or packed file records (``meta["input"]``: the
    size the model was trained at), else None; unreadable files give None too."""
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:  # any unreadable file simply records nothing
        return None
    if not isinstance(obj, dict):
        return None
    for meta in (obj.get("meta"), obj):
        recorded = meta.get("input") if isinstance(meta, dict) else None
        size = recorded.get("image_size") if isinstance(recorded, dict) else None
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            return size
    return None


def find_unloadable(obj: Any, where: str) -> str | None:
    """Describe the first value ``torch.load(weights_only=True)`` could not read back, else None.

    Checked when saving, so a bad value fails at save time rather than when someone loads the file.
    """
    if obj is None or type(obj) in (bool, int, float, str) or isinstance(obj, torch.Tensor):
        return None
    if type(obj) in (list, tuple):
        return next((p for p in (find_unloadable(item, where) for item in obj) if p), None)
    if type(obj) in (dict, OrderedDict):
        for key, value in obj.items():
            problem = find_unloadable(key, where) or find_unloadable(value, f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    return f"{where}: {type(obj).__name__} is not plain data (use numbers, strings, lists, dicts and tensors)"


def _preview(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def _looks_like_classifier(entry: str) -> bool:
    key = entry.split(":")[0]
    return any(part in key for part in ("fc", "linear", "classifier", "head"))
