"""ONNX export (one self-contained file, dynamic batch) and ONNX Runtime sessions, parity and latency.

torch's exporter is used through ``torch.export`` (dynamo) first; the TorchScript-based exporter is
the fallback for models the new one cannot capture, and the result says which one ran.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeslim.bench.latency import LatencyStats, measure_latency
from edgeslim.errors import ExportError
from edgeslim.export.parity import Parity
from edgeslim.io import atomic_path


@dataclasses.dataclass(frozen=True)
class OnnxExport:
    path: Path
    opset: int
    exporter: str  # "dynamo" or "torchscript"
    size_bytes: int


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """torch.onnx prints progress and deprecation chatter; keep stdout clean for --json."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def dynamo_export_to(
    model: nn.Module, example: tuple[torch.Tensor, ...], path: Path, *, opset: int, dynamic_batch: bool = True
) -> str:
    """torch.export-based ONNX export to one self-contained file ("input" -> "logits"); returns "dynamo"."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.onnx.export(
        model,
        example,
        dynamo=True,
        opset_version=opset,
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes=({0: batch},) if dynamic_batch else None,
        external_data=False,
    )
    if program is None:
        raise ExportError("the exporter returned no program")
    program.save(str(path), external_data=False)
    return "dynamo"


def torchscript_export_to(
    model: nn.Module, example: tuple[torch.Tensor, ...], path: Path, *, opset: int, dynamic_batch: bool = True
) -> str:
    """The TorchScript-based exporter (opset at most 17), the fallback; returns "torchscript"."""
    torch.onnx.export(
        model,
        example,
        str(path),
        dynamo=False,
        opset_version=min(opset, 17),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None,
    )
    return "torchscript"


def export_failure(exc: BaseException) -> str:
    """One short line naming why an exporter failed (its messages run to pages)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    input_size: Sequence[int] = (3, 32, 32),
    opset: int = 18,
    dynamic_batch: bool = True,
) -> OnnxExport:
    """Write ``model`` (eval mode, fp32) as one ONNX file with input "input" and output "logits"."""
    target = Path(path)
    model = model.eval()
    example = (torch.randn(2, *input_size),)
    errors: list[str] = []
    with atomic_path(target) as tmp, quiet_exporter():
        exporter = ""
        try:
            exporter = dynamo_export_to(model, example, tmp, opset=opset, dynamic_batch=dynamic_batch)
        except Exception as exc:  # the new exporter fails on some graphs: fall back, keep the reason
            errors.append(f"dynamo: {export_failure(exc)}")
            try:
                exporter = torchscript_export_to(
                    model, example, tmp, opset=opset, dynamic_batch=dynamic_batch
                )
            except Exception as exc2:
                errors.append(f"torchscript: {export_failure(exc2)}")
                raise ExportError(f"ONNX export failed ({'; '.join(errors)})") from None
    return OnnxExport(
        target, opset if exporter == "dynamo" else min(opset, 17), exporter, target.stat().st_size
    )


def ort_session(path: str | os.PathLike[str], *, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with all graph optimizations and a fixed thread count."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("onnxruntime is not installed: pip install 'edgeslim[runtimes]'") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _run(session: Any, x: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: x})[0])


def check_parity(model: nn.Module, session: Any, inputs: torch.Tensor, *, tolerance: float = 1e-3) -> Parity:
    """Compare PyTorch and the runtime on the same inputs (max |diff| of logits, top-1 agreement)."""
    model.eval()
    with torch.inference_mode():
        expected = model(inputs).float().numpy()
    got = _run(session, inputs.numpy().astype(np.float32))
    diff = float(np.abs(expected - got).max())
    agree = float((expected.argmax(1) == got.argmax(1)).mean())
    return Parity(diff, agree, int(inputs.shape[0]), tolerance)


def ort_latency(
    session: Any,
    input_size: Sequence[int],
    batch_sizes: Sequence[int] = (1, 32),
    *,
    warmup: int = 5,
    runs: int = 30,
) -> dict[int, LatencyStats]:
    """Median/p90 latency of the session at each batch size."""
    out: dict[int, LatencyStats] = {}
    for b in batch_sizes:
        x = np.random.default_rng(0).standard_normal((b, *input_size)).astype(np.float32)
        out[b] = measure_latency(lambda a: _run(session, a), x, warmup=warmup, runs=runs, batch_size=b)
    return out
