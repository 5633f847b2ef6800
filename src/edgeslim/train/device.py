"""Where training and evaluation run: ``auto`` (a CUDA GPU when one is present), ``cpu`` or ``cuda``.

On CUDA every forward pass runs under automatic mixed precision (bfloat16 where the GPU supports
it, else float16 with a gradient scaler); on CPU ``TrainConfig.bf16`` decides, as before. Data stays
in CPU memory (uint8) and each batch is copied to the device; models come back to the CPU when
training ends, so the tasks after it (pruning, export, measurement) see CPU tensors as they always
did.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from edgeslim.errors import ConfigError

__all__ = [
    "DEVICES",
    "DEVICE_ENV",
    "amp_dtype",
    "autocast",
    "cpu_bf16",
    "cpu_bf16_fast",
    "grad_scaler",
    "model_device",
    "move_modules",
    "on_device",
    "resolve_device",
]

DEVICES = ("auto", "cpu", "cuda")
#: Default device when none is given (``auto`` when unset).
DEVICE_ENV = "EDGESLIM_DEVICE"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: ``cuda`` when a GPU is available, else ``cpu`` (``$EDGESLIM_DEVICE``
    sets the default); ``"cuda"`` without a GPU is a :class:`ConfigError`."""
    if isinstance(device, torch.device):
        name = device.type if device.index is None else f"{device.type}:{device.index}"
    else:
        name = (device or os.environ.get(DEVICE_ENV, "").strip() or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind = name.split(":", 1)[0]
    if kind not in ("cpu", "cuda"):
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, not {name!r}", field="device")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' asked for but PyTorch sees no CUDA GPU (a CPU-only build, or no driver); "
            "use --device cpu or auto",
            field="device",
        )
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device {name!r}: {exc}", field="device") from None


def amp_dtype(device: torch.device) -> torch.dtype:
    """The mixed-precision dtype on ``device``: bfloat16 where a GPU supports it, else float16."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


@functools.cache
def cpu_bf16_fast() -> bool:
    """Whether oneDNN has bfloat16 kernels for this CPU (AVX-512 or newer; native on AVX-512 BF16 and
    AMX). On AVX2-only CPUs bf16 is emulated: one resnet20 training step (batch 128) took 4.2 s in
    bf16 autocast against 0.33 s in fp32 on an AMD EPYC Zen 3, where Zen 4 (AVX-512 BF16) runs bf16
    about 2x faster than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def cpu_bf16(bf16: bool) -> bool:
    """``bf16`` where this CPU runs it natively; False (fp32, with a warning) where bf16 autocast
    would be emulated, many times slower: it is asked for to be faster, never for its numerics."""
    if bf16 and not cpu_bf16_fast():
        warnings.warn(
            "bf16 autocast asked for, but this CPU has no native bfloat16 (no AVX-512/AMX: "
            f"{torch.backends.cpu.get_cpu_capability()}), where it runs about 12x slower than fp32; "
            "training and evaluating in fp32 (pass --fp32 / bf16: false to silence this)",
            stacklevel=3,
        )
        return False
    return bf16


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    """AMP on CUDA (always); bfloat16 autocast on CPU when ``bf16`` and the CPU runs it natively
    (:func:`cpu_bf16`)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=amp_dtype(device))
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_bf16(bf16))


def grad_scaler(device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler when the device trains in float16 (bfloat16 needs none)."""
    if device.type == "cuda" and amp_dtype(device) == torch.float16:
        return torch.amp.GradScaler("cuda")
    return None


def move_modules(obj: Any, device: torch.device, depth: int = 2) -> None:
    """Move the modules a callback holds (a distillation teacher, connectors) to ``device``:
    attributes that are modules, and modules one object further down (``cb.teacher.teacher``)."""
    if depth < 0 or not hasattr(obj, "__dict__"):
        return
    for value in vars(obj).values():
        if isinstance(value, nn.Module):
            value.to(device)
        elif hasattr(value, "__dict__") and not isinstance(value, type | torch.Tensor):
            move_modules(value, device, depth - 1)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def on_device(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """``model`` on ``device`` for the block, back where it was after it (a no-op when it is there)."""
    before = model_device(model)
    if before == device or (before.type == device.type == "cuda" and device.index is None):
        yield model
        return
    model.to(device)
    try:
        yield model
    finally:
        model.to(before)
