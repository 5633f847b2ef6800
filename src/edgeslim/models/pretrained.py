"""``pretrained=True``: fetch a model's published weights and load them, replacing the head if needed.

Which models have weights is the table :data:`edgeslim.fetch.SOURCES` (a source named like the
model): the CIFAR ResNet-20..56 (akamaster) and the ``*.tv_in1k`` torchvision architectures.
With a ``num_classes`` other than the weights' (e.g. 10 for ImageNet weights), every backbone
weight is loaded strictly and the final classifier keeps its fresh initialization.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgeslim.checkpoint import read_state_dict
from edgeslim.errors import ModelError
from edgeslim.fetch import SOURCES, fetch

__all__ = ["has_pretrained", "load_pretrained", "load_pretrained_state", "pretrained_kwargs"]


def has_pretrained(name: str) -> bool:
    return name in SOURCES and SOURCES[name].kind == "weights"


def pretrained_kwargs(name: str) -> dict[str, Any]:
    """Factory arguments the published weights need (GoogLeNet: ``transform_input=True``)."""
    if not has_pretrained(name):
        known = ", ".join(n for n, s in SOURCES.items() if s.kind == "weights")
        raise ModelError(f"model {name!r} has no published weights to fetch; models with them: {known}")
    from edgeslim.models.torchvision_nets import PRETRAINED_KWARGS

    return dict(PRETRAINED_KWARGS.get(name, {}))


def load_pretrained(model: nn.Module, name: str, *, progress: bool = True) -> nn.Module:
    """Fetch (or find on disk) the weights of ``name`` and load them into ``model``; return it."""
    pretrained_kwargs(name)  # a clear error for models without weights
    path = fetch(name, progress=progress)
    load_pretrained_state(model, name, read_state_dict(path), source=str(path))
    return model


def _head_keys(name: str, model: nn.Module) -> set[str]:
    from edgeslim.models.torchvision_nets import CLASSIFIERS

    if name in CLASSIFIERS:
        path = CLASSIFIERS[name]
    else:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            return set()
        path = linears[-1]
    return {f"{path}.weight", f"{path}.bias"}


def load_pretrained_state(
    model: nn.Module, name: str, state: dict[str, torch.Tensor], source: str = "pretrained weights"
) -> None:
    """Load a published state_dict of ``name``: keys converted, head dropped if its size differs."""
    from edgeslim.models.load import load_state
    from edgeslim.models.torchvision_nets import convert_torchvision_state

    state = convert_torchvision_state(name, state)
    own = model.state_dict()
    head = _head_keys(name, model)
    if any(k in state and k in own and state[k].shape != own[k].shape for k in head):
        state = {**{k: v for k, v in state.items() if k not in head}, **{k: own[k] for k in head}}
    load_state(model, state, source=source)
