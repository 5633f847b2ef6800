"""``export(model, format, example_inputs, out=...)``: one call per deployable artifact, parity-checked.

Formats and precisions:

==============  ==================  ===========================================================
format          precisions          artifact
==============  ==================  ===========================================================
``onnx``        fp32, int8          one self-contained ``.onnx`` (opset 18, dynamic batch); int8
                                    is QDQ (ONNX Runtime and OpenVINO run it as int8)
``openvino``    fp32, fp16, int8    OpenVINO IR ``.xml`` + ``.bin`` (fp16: float16 weights; int8
                                    from the QDQ ONNX graph)
``tensorrt``    fp32, fp16, int8    serialized engine ``.engine`` (needs CUDA and TensorRT)
``litert``      fp32                LiteRT/TFLite ``.tflite`` (batch 1; optional litert-torch)
``pt2``         fp32                ``torch.export`` ExportedProgram (dynamic batch)
``torchscript`` fp32                traced + frozen TorchScript (deprecated by PyTorch, for libtorch)
==============  ==================  ===========================================================

int8 needs a fake-quantized model (``edgeslim.quantization.quantize``, a packed file) or
``calibration`` batches, with which the model is quantized by static PTQ (per-channel int8, scope
"all_layers") first. After writing, the artifact is loaded on its runtime and compared with PyTorch
on ``parity_inputs`` (real images, ideally): the result's ``parity`` says whether it computes the
same thing, and ``ok`` is False when it does not. A failed artifact stays on disk for inspection
but is reported failed; :mod:`edgeslim.export.bench` refuses to time it as if it were good.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from edgeslim.bench.size import file_size_bytes
from edgeslim.errors import ConfigError, ExportError
from edgeslim.export.litert import export_litert, litert_status
from edgeslim.export.onnx import export_onnx
from edgeslim.export.openvino import save_openvino_ir
from edgeslim.export.parity import Parity, compare_outputs
from edgeslim.export.qdq import export_qdq_onnx
from edgeslim.export.runners import open_runner
from edgeslim.export.tensorrt import build_tensorrt_engine, tensorrt_status
from edgeslim.export.torchscript import export_program, export_torchscript
from edgeslim.quantization import StaticQuant, fake_quantizers, quantize
from edgeslim.quantization.packing import no_observation

__all__ = ["FORMATS", "ExportResult", "export", "format_for_path", "reference_outputs"]

#: format -> (precisions, file suffixes accepted for --out, runtime the artifact is checked on)
FORMATS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "onnx": (("fp32", "int8"), (".onnx",), "ort"),
    "openvino": (("fp32", "fp16", "int8"), (".xml",), "openvino"),
    "tensorrt": (("fp32", "fp16", "int8"), (".engine", ".plan", ".trt"), "tensorrt"),
    "litert": (("fp32",), (".tflite",), "litert"),
    "pt2": (("fp32",), (".pt2",), "torch"),
    "torchscript": (("fp32",), (".ts", ".pt", ".pth", ".torchscript"), "torch"),
}


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote and whether it reproduces the model."""

    format: str
    precision: str
    path: Path
    files: tuple[Path, ...]  # everything written (IR: .xml and .bin; engine: engine and .json)
    size_bytes: int
    runtime: str  # the runtime parity was checked on
    parity: Parity | None  # None when check=False
    exporter: str
    seconds: float
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.parity is not None and self.parity.ok

    @property
    def status(self) -> str:
        if self.parity is None:
            return "unchecked"
        return "ok" if self.parity.ok else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "precision": self.precision,
            "path": str(self.path),
            "files": [str(f) for f in self.files],
            "size_bytes": self.size_bytes,
            "runtime": self.runtime,
            "status": self.status,
            "ok": self.ok,
            "parity": None if self.parity is None else self.parity.to_dict(),
            "exporter": self.exporter,
            "seconds": self.seconds,
            "notes": list(self.notes),
        }


def format_for_path(path: str | os.PathLike[str]) -> str | None:
    """The format a file name implies (``.onnx`` -> "onnx", ...), None when it is ambiguous."""
    suffix = Path(path).suffix.lower()
    for name, (_, suffixes, _) in FORMATS.items():
        if suffix in suffixes and name != "torchscript":
            return name
    return "torchscript" if suffix == ".ts" else None


def _is_quantized(model: nn.Module) -> bool:
    return bool(fake_quantizers(model))


def _int8_model(
    model: nn.Module, calibration: Iterable[Any] | None, example: Tensor
) -> tuple[nn.Module, str]:
    """The fake-quantized model an int8 artifact is exported from, and how it was obtained."""
    if _is_quantized(model):
        return model, "the model's own quantizers"
    if calibration is None:
        raise ConfigError(
            "precision int8 needs a quantized model (edgeslim quantize / edgeslim.quantization.quantize) "
            "or calibration batches: export(..., calibration=loader)"
        )
    config = StaticQuant(bits=8, per_channel=True, scope="all_layers")
    result = quantize(model, config, calibration=calibration, example_inputs=example[:2])
    return (
        result.model.eval(),
        f"static PTQ int8 per-channel all_layers ({result.report.calibration_batches} batches)",
    )


class _HalfInside(nn.Module):
    """float32 in and out, float16 inside: the graph an FP16 TensorRT engine is built from."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.half()).float()


def reference_outputs(model: nn.Module, inputs: Tensor, batch_size: int = 256) -> np.ndarray:
    """PyTorch logits of ``model`` on ``inputs`` (eval mode, observers off), in batches."""
    was_training = model.training
    model.eval()
    outs = []
    try:
        with no_observation(model), torch.inference_mode():
            for start in range(0, int(inputs.shape[0]), batch_size):
                outs.append(model(inputs[start : start + batch_size]).float().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def run_in_batches(runner: Any, inputs: Tensor, batch_size: int = 256) -> np.ndarray:
    outs = [
        runner.run(inputs[start : start + batch_size].numpy().astype(np.float32))
        for start in range(0, int(inputs.shape[0]), batch_size)
    ]
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def _check_out(format: str, precision: str, out: Path) -> None:
    if format not in FORMATS:
        raise ConfigError(
            f"export.format must be one of {', '.join(FORMATS)}, not {format!r}", field="export.format"
        )
    precisions, suffixes, _ = FORMATS[format]
    if precision not in precisions:
        raise ConfigError(
            f"export.precision {precision!r} is not available for {format}; choose {', '.join(precisions)}",
            field="export.precision",
        )
    if out.suffix.lower() not in suffixes:
        raise ConfigError(
            f"export.out for {format} must end in {' or '.join(suffixes)}, got {str(out)!r}",
            field="export.out",
        )
    if out.exists() and out.is_dir():
        raise ConfigError(
            f"export.out {str(out)!r} is a directory; give a file name ending in {suffixes[0]}",
            field="export.out",
        )


def export(
    model: nn.Module,
    format: str,
    example_inputs: Tensor | Sequence[Tensor],
    *,
    out: str | os.PathLike[str],
    precision: str = "fp32",
    calibration: Iterable[Any] | None = None,
    parity_inputs: Tensor | None = None,
    parity_source: str = "given",
    check: bool = True,
    tolerance: float | None = None,
    min_agreement: float | None = None,
    opset: int = 18,
    dynamic_batch: bool = True,
    threads: int | None = None,
    max_batch: int = 256,
) -> ExportResult:
    """Write ``model`` as a ``format`` artifact at ``out`` and check it against PyTorch.

    ``example_inputs``: a batch (or a 1-tuple holding one) with the input shape ``(N, C, H, W)``.
    ``parity_inputs`` default to ``example_inputs``; pass real images (``parity_source`` names them
    in the report). The model is not modified.
    """
    target = Path(out)
    example = example_inputs if isinstance(example_inputs, Tensor) else example_inputs[0]
    if not isinstance(example, Tensor) or example.dim() < 2:
        raise ConfigError("example_inputs must be a batch tensor shaped (N, C, H, W)")
    example = example.detach().float().cpu()
    if format == "tensorrt":
        reason = tensorrt_status()
        if reason is not None:
            raise ExportError(f"cannot build a TensorRT engine here: {reason}")
    if format == "litert":
        reason = litert_status()
        if reason is not None:
            raise ExportError(f"cannot write a LiteRT file here: {reason}")
    notes: list[str] = []
    if precision == "fp32" and _is_quantized(model):
        precision = "int8"
        notes.append("the model is fake-quantized: exported as int8 (its own scales)")
    _check_out(format, precision, target)
    if opset < 17:
        raise ConfigError(f"opset must be at least 17, got {opset}")
    was_training = model.training
    try:
        return _export(
            model.eval(), format, example, target, precision, calibration, parity_inputs, parity_source,
            check, tolerance, min_agreement, opset, dynamic_batch, threads, max_batch, notes,
        )  # fmt: skip
    finally:
        model.train(was_training)


def _export(
    model: nn.Module,
    format: str,
    example: Tensor,
    target: Path,
    precision: str,
    calibration: Iterable[Any] | None,
    parity_inputs: Tensor | None,
    parity_source: str,
    check: bool,
    tolerance: float | None,
    min_agreement: float | None,
    opset: int,
    dynamic_batch: bool,
    threads: int | None,
    max_batch: int,
    notes: list[str],
) -> ExportResult:
    input_size = tuple(int(s) for s in example.shape[1:])
    started = time.perf_counter()
    reference = model
    if precision == "int8":
        reference, how = _int8_model(model, calibration, example)
        notes.append(f"int8 from {how}; parity is checked against that fake-quantized model")
    files, exporter = _write(
        model,
        reference,
        format,
        precision,
        target,
        example,
        input_size,
        opset,
        dynamic_batch,
        max_batch,
        notes,
    )
    size = file_size_bytes(target)  # an IR's .xml counts its .bin
    runtime = FORMATS[format][2]
    parity: Parity | None = None
    if check:
        inputs = (parity_inputs if parity_inputs is not None else example).detach().float().cpu()
        source = parity_source if parity_inputs is not None else "example"
        runner = open_runner(target, runtime, threads=threads, trust_artifact=True)  # just written here
        expected = reference_outputs(reference, inputs)
        parity = compare_outputs(
            expected,
            run_in_batches(runner, inputs),
            precision=precision,
            tolerance=tolerance,
            min_agreement=min_agreement,
            inputs=source,
            reference="fake-quantized model" if precision == "int8" else "PyTorch model",
        )
        if reference is not model:  # what quantization itself changes, for the record
            fp32 = reference_outputs(model, inputs)
            agree = float((fp32.argmax(-1) == expected.argmax(-1)).mean()) if fp32.size else 1.0
            notes.append(
                f"top-1 agreement of the fake-quantized model with the FP32 model: {100 * agree:.1f}%"
            )
    return ExportResult(
        format=format,
        precision=precision,
        path=target,
        files=tuple(files),
        size_bytes=size,
        runtime=runtime,
        parity=parity,
        exporter=exporter,
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
    )


def _onnx_to(
    model: nn.Module,
    reference: nn.Module,
    precision: str,
    path: Path,
    input_size: tuple[int, ...],
    opset: int,
    dynamic_batch: bool,
    notes: list[str],
) -> str:
    """Write the ONNX graph of ``precision`` at ``path``; returns a description of the exporter."""
    if precision == "int8":
        qdq = export_qdq_onnx(reference, path, input_size=input_size, opset=opset)
        notes.extend(qdq.notes)
        return f"QDQ {qdq.exporter} (opset {qdq.opset})"
    source = _HalfInside(copy.deepcopy(model)) if precision == "fp16" else model
    result = export_onnx(source, path, input_size=input_size, opset=opset, dynamic_batch=dynamic_batch)
    return f"{result.exporter} (opset {result.opset})"


def _write(
    model: nn.Module,
    reference: nn.Module,
    format: str,
    precision: str,
    target: Path,
    example: Tensor,
    input_size: tuple[int, ...],
    opset: int,
    dynamic_batch: bool,
    max_batch: int,
    notes: list[str],
) -> tuple[list[Path], str]:
    if format == "onnx":
        return [target], _onnx_to(
            model, reference, precision, target, input_size, opset, dynamic_batch, notes
        )
    if format == "pt2":
        export_program(model, target, example, dynamic_batch=dynamic_batch)
        return [target], "torch.export"
    if format == "litert":
        export_litert(model, target, example[:1])
        return [target], "litert_torch.convert"
    if format == "torchscript":
        export_torchscript(model, target, example)
        notes.append("TorchScript is deprecated in PyTorch; prefer format pt2 where the deployment allows")
        return [target], "torch.jit.trace + freeze"
    with tempfile.TemporaryDirectory(prefix="edgeslim-export-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        if format == "openvino":
            how = _onnx_to(
                model,
                reference,
                "int8" if precision == "int8" else "fp32",
                onnx_path,
                input_size,
                opset,
                dynamic_batch,
                notes,
            )
            xml = save_openvino_ir(onnx_path, target, compress_to_fp16=precision == "fp16")
            if precision == "fp16":
                notes.append("fp16 IR: weights stored in float16; the CPU plugin computes in float32")
            return [xml, xml.with_suffix(".bin")], f"ONNX {how} -> openvino.save_model"
        how = _onnx_to(model, reference, precision, onnx_path, input_size, opset, True, notes)
        engine = build_tensorrt_engine(
            onnx_path, target, precision=precision, input_size=input_size, max_batch=max_batch
        )
        return [engine, engine.with_name(engine.name + ".json")], f"ONNX {how} -> TensorRT builder"
