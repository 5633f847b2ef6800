"""PyTorch-only artifacts, for deployments with no other runtime: ExportedProgram and TorchScript.

``.pt2`` (``torch.export``) is the maintained format: one file with the graph and the weights, a
dynamic batch dimension, loaded with ``torch.export.load(path).module()``. TorchScript
(``torch.jit.trace`` + ``freeze``) is deprecated since torch 2.10 but still what older C++
(libtorch) and mobile deployments load; it is traced at the example's batch size and, being a
trace, runs any batch size for these feed-forward CNNs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from edgeslim.errors import ExportError
from edgeslim.export.onnx import export_failure
from edgeslim.io import atomic_write

__all__ = ["export_program", "export_torchscript"]


def export_program(
    model: nn.Module, path: str | os.PathLike[str], example: torch.Tensor, *, dynamic_batch: bool = True
) -> Path:
    """Write ``torch.export.export(model)`` as a ``.pt2`` file (dynamic batch unless told not to)."""
    target = Path(path)
    if target.suffix != ".pt2":
        raise ExportError(f"an ExportedProgram file must end in .pt2, got {str(target)!r}")
    model = model.eval()
    shapes = ({0: torch.export.Dim("batch", min=1, max=65536)},) if dynamic_batch else None
    try:
        program = torch.export.export(model, (example,), dynamic_shapes=shapes)
    except Exception as exc:
        raise ExportError(f"torch.export failed ({export_failure(exc)})") from None
    return atomic_write(target, lambda fh: torch.export.save(program, fh))


def export_torchscript(model: nn.Module, path: str | os.PathLike[str], example: torch.Tensor) -> Path:
    """Write a traced, frozen TorchScript module (``torch.jit.save``)."""
    target = Path(path)
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and tracer warnings (data-independent CNNs)
        try:
            with torch.no_grad():
                traced = torch.jit.freeze(torch.jit.trace(model, example))
        except Exception as exc:
            raise ExportError(f"TorchScript tracing failed ({export_failure(exc)})") from None
        return atomic_write(target, lambda fh: torch.jit.save(traced, fh))
