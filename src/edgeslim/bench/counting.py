"""Parameter, non-zero parameter and MAC counts: the model-side numbers of every measurement."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter entries (shared parameters counted once; pruning keeps the dense count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_nonzero_params(model: nn.Module) -> int:
    """Parameter entries that are exactly non-zero, as the model computes with them.

    For ``torch.nn.utils.prune`` (``weight_orig`` parameter + ``weight_mask`` buffer) and for
    ``torch.nn.utils.parametrize`` the effective tensor (e.g. ``weight_orig * weight_mask``) is
    counted instead of the dense original, so pruned weights count as zeros.
    """
    seen: set[int] = set()
    total = 0
    with torch.no_grad():
        for module in model.modules():
            if parametrize.is_parametrized(module):
                plists = module.parametrizations
                if isinstance(plists, nn.ModuleDict):
                    for name, plist in plists.items():
                        total += int(torch.count_nonzero(getattr(module, name)).item())
                        seen.update(id(p) for p in plist.parameters())
            for name, param in module.named_parameters(recurse=False):
                if id(param) in seen:
                    continue
                seen.add(id(param))
                tensor: torch.Tensor = param
                base = name[: -len("_orig")] if name.endswith("_orig") else None
                if base and hasattr(module, base + "_mask"):
                    effective = getattr(module, base, None)
                    if isinstance(effective, torch.Tensor):
                        tensor = effective
                total += int(torch.count_nonzero(tensor).item())
    return total


def count_macs(model: nn.Module, input_size: Sequence[int] = (1, 3, 32, 32)) -> int:
    """Multiply-accumulates per sample of one forward pass (conv, linear, matmul; FLOPs / 2).

    ``input_size`` is (batch, C, H, W) or (C, H, W); with batch > 1 the total is divided by the
    batch. Norms, activations, pooling and biases are not counted (the usual convention). The model
    runs once in eval mode on zeros of its parameter dtype; its train/eval mode is restored.
    """
    shape = tuple(int(s) for s in input_size)
    if len(shape) == 3:
        shape = (1, *shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_size must be positive dimensions, got {tuple(input_size)}")
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype = first.dtype if first is not None else torch.float32
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(shape, dtype=dtype))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2 // shape[0]
