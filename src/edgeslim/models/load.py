"""Loading weights into models, and rebuilding models from edgeslim checkpoints.

Any state_dict file works for :func:`load_weights` (bare, under ``state_dict``/``model``, with
``module.`` prefixes); loading is strict, with two additions. Files from old PyTorch versions lack
the BatchNorm ``num_batches_tracked`` counters (the pretrained CIFAR ResNets do): those are filled
with 0 rather than reported as missing. And a file whose only misfit is the classifier's output
size gets an error that says it was trained for another ``num_classes``.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from edgeslim.checkpoint import (
    as_checkpoint,
    extract_state_dict,
    load_state_dict_into,
    read_file,
    read_state_dict,
)
from edgeslim.errors import CheckpointError, ModelError
from edgeslim.models.channels import apply_channel_spec
from edgeslim.models.sparse_formats import decode_sparse
from edgeslim.models.zoo import create_model

__all__ = ["load_model_from_checkpoint", "load_weights"]

_NBT = "num_batches_tracked"


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a weights file strictly into ``model`` (in place) and return it."""
    state = read_state_dict(path)
    load_state(model, state, source=str(path))
    return model


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strict load of an already-read state_dict, with the fixes and checks described above."""
    state = _fill_num_batches_tracked(model, state)
    _check_num_classes(model, state, source)
    load_state_dict_into(model, state, source=source)


def load_model_from_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model an edgeslim file names and load its weights; return (model in eval mode, meta).

    Reads edgeslim checkpoints and sparse (COO/CSR/CSC) files; a ``channel_spec`` in the meta (a
    filter-pruned model) reshapes the freshly built model before its weights are loaded.
    """
    obj = read_file(path)
    if isinstance(obj, dict) and obj.get("format") == "edgeslim.sparse":
        state, meta = decode_sparse(obj, source=repr(str(path)))
        spec = meta.get("model")
    else:
        ckpt = as_checkpoint(obj, path)
        spec = ckpt.get("model")
        state = extract_state_dict(ckpt, source=str(path))
        saved_meta = ckpt.get("meta")
        meta = dict(saved_meta) if isinstance(saved_meta, dict) else {}
    if (
        not isinstance(spec, dict)
        or not isinstance(spec.get("name"), str)
        or not isinstance(spec.get("kwargs", {}), dict)
    ):
        raise CheckpointError(
            f"{str(path)!r} has no valid model spec (expected {{'name': str, 'kwargs': dict}})"
        )
    kwargs = dict(spec.get("kwargs") or {})
    num_classes = kwargs.pop("num_classes", 10)
    try:
        model = create_model(spec["name"], num_classes=num_classes, **kwargs)
    except ModelError as exc:
        raise CheckpointError(f"{str(path)!r}: cannot rebuild its model {spec['name']!r}: {exc}") from None
    if meta.get("channel_spec"):
        apply_channel_spec(model, meta["channel_spec"])
    load_state(model, state, source=str(path))
    model.eval()
    return model, dict(meta)


def _fill_num_batches_tracked(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add missing BN counters where the BN's running stats are present (files from torch < 0.4.1)."""
    missing = [
        key
        for key in model.state_dict()
        if key.endswith(_NBT) and key not in state and key[: -len(_NBT)] + "running_mean" in state
    ]
    if not missing:
        return state
    filled = dict(state)
    for key in missing:
        filled[key] = torch.tensor(0, dtype=torch.long)
    return filled


def _check_num_classes(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """If the only mismatch is the last Linear's output size, say it is a num_classes mismatch."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return
    name, layer = linears[-1]
    weight = state.get(f"{name}.weight" if name else "weight")
    if weight is None or weight.ndim != 2 or weight.shape[0] == layer.out_features:
        return
    own = model.state_dict()
    classifier_keys = {f"{name}.weight", f"{name}.bias"} if name else {"weight", "bias"}
    if set(own) != set(state) or any(own[k].shape != state[k].shape for k in own if k not in classifier_keys):
        return  # other differences too: let the generic report list them all
    found = int(weight.shape[0])
    raise CheckpointError(
        f"{source} was trained for num_classes={found} but the model has num_classes={layer.out_features} "
        f"(classifier {name!r}: {tuple(weight.shape)} vs {tuple(layer.weight.shape)}); "
        f"build the model with num_classes={found} (ModelSource.num_classes)",
        field="ModelSource.num_classes",
    )
