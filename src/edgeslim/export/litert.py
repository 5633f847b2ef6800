"""LiteRT (TensorFlow Lite) flatbuffers for mobile and embedded CPUs: optional, converter offline.

The converter is ``litert-torch`` (``litert_torch.convert``: torch.export -> StableHLO -> LiteRT,
no TensorFlow needed) and the runtime ``ai-edge-litert`` (the TFLite interpreter with XNNPACK).
Both are optional: ``pip install litert-torch ai-edge-litert`` (about 0.9 GB installed, jax and
jaxlib included). Without them this module still imports and every entry point raises an
:class:`ExportError` that says what to install. The flatbuffer has a static batch dimension (the
example's, batch 1 by default, as mobile deployments use); the runner feeds larger batches one
slice at a time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeslim.errors import ExportError
from edgeslim.export.base import Runner
from edgeslim.export.onnx import export_failure
from edgeslim.io import atomic_path

__all__ = ["LITERT_HINT", "LiteRTRunner", "export_litert", "litert_status"]

LITERT_HINT = (
    "LiteRT is not installed: pip install litert-torch ai-edge-litert (the converter needs no TensorFlow; "
    "about 0.9 GB with jax)"
)


def litert_status() -> str | None:
    """None when the converter and the interpreter are importable, else what to install."""
    if importlib.util.find_spec("litert_torch") is None or importlib.util.find_spec("ai_edge_litert") is None:
        return LITERT_HINT
    return None


def export_litert(model: nn.Module, path: str | os.PathLike[str], example: torch.Tensor) -> Path:
    """Convert ``model`` to a ``.tflite`` flatbuffer with ``example``'s (static) shape; atomic."""
    if litert_status() is not None:
        raise ExportError(LITERT_HINT)
    import litert_torch

    target = Path(path)
    if target.suffix != ".tflite":
        raise ExportError(f"a LiteRT file must end in .tflite, got {str(target)!r}")
    with atomic_path(target) as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            edge = litert_torch.convert(model.eval(), (example,))
            edge.export(str(tmp))
        except Exception as exc:
            raise ExportError(f"LiteRT conversion failed ({export_failure(exc)})") from None
    return target


class LiteRTRunner(Runner):
    """The LiteRT interpreter (XNNPACK on CPU), fed in slices of the file's static batch size.

    Resizing the input to another batch is not safe: converted graphs keep shape constants of the
    export batch (a flatten to ``(1, -1)``), and the interpreter then computes wrong logits without
    an error (measured: 27% top-1 agreement on ResNet-20 resized from 1 to 256).
    """

    runtime = "litert"

    def __init__(self, path: Path, precision: str = "fp32", *, threads: int | None = None) -> None:
        if litert_status() is not None:
            raise ExportError(LITERT_HINT)
        from ai_edge_litert.interpreter import Interpreter

        super().__init__(path, precision)
        try:
            self.interpreter: Any = Interpreter(model_path=str(path), num_threads=threads or 1)
            self.interpreter.allocate_tensors()
        except Exception as exc:
            raise ExportError(f"LiteRT cannot load {str(path)!r}: {str(exc)[:200]}") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.shape = tuple(int(s) for s in self.input["shape"])
        self.batch = max(1, self.shape[0])

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = int(x.shape[0])
        if n % self.batch:
            raise ExportError(f"{str(self.path)!r} takes batches of {self.batch}; got {n} inputs")
        outs = []
        for start in range(0, n, self.batch):
            self.interpreter.set_tensor(self.input["index"], x[start : start + self.batch])
            self.interpreter.invoke()
            outs.append(np.array(self.interpreter.get_tensor(self.output["index"])))
        return np.concatenate(outs)
