"""16-bit precision: store weights and compute in fp16 or bf16 (half the bytes of fp32).

bf16 keeps fp32's exponent range (no overflow, coarser mantissa) and has fast AMX/AVX-512 kernels
on recent Xeons; fp16 keeps more mantissa bits but overflows above 65504. Integer buffers (e.g.
BatchNorm's ``num_batches_tracked``) are left alone. The model casts floating inputs to its dtype
and returns float32 outputs, so callers and losses do not change.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16}
HALF_ATTR = "_edgeslim_half_dtype"


class _CastInputs:
    """Forward pre-hook: floating tensor inputs to ``dtype`` (a class, so the model stays picklable)."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            a.to(self.dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args
        )


def _output_to_float(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    if isinstance(output, torch.Tensor) and output.is_floating_point():
        return output.float()
    return output


def to_half(model: nn.Module, dtype: str = "fp16") -> nn.Module:
    """Convert ``model``'s floating parameters and buffers to ``dtype`` ("fp16"/"bf16") in place."""
    torch_dtype = DTYPES[dtype]
    model.to(torch_dtype)
    casts = [h for h in model._forward_pre_hooks.values() if isinstance(h, _CastInputs)]
    for hook in casts:
        hook.dtype = torch_dtype
    if not casts:
        model.register_forward_pre_hook(_CastInputs(torch_dtype))
        model.register_forward_hook(_output_to_float)
    setattr(model, HALF_ATTR, dtype)
    return model
