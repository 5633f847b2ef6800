"""OpenVINO: IR files (FP32, FP16 weights, int8 from a QDQ ONNX file), compiled CPU models, latency.

OpenVINO reads ONNX directly, so every IR is made from an ONNX file edgeslim exported (the same
graph ONNX Runtime runs): FP32 keeps float32 weights, FP16 stores weights in float16 (half the file;
the CPU plugin decompresses them and computes in float32 under the ``f32`` precision hint), and a
QDQ ONNX file becomes an int8 IR whose quantized layers the CPU plugin runs in u8/i8.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.bench.latency import LatencyStats, measure_latency
from edgeslim.errors import ExportError

__all__ = [
    "OPENVINO_HINT",
    "openvino_available",
    "openvino_compile",
    "openvino_ir_precision",
    "openvino_latency",
    "save_openvino_ir",
]

OPENVINO_HINT = "OpenVINO is not installed: pip install openvino (or 'edgeslim[runtimes]')"


def openvino_module() -> Any:
    """The ``openvino`` package, or an ExportError that says how to install it."""
    try:
        import openvino
    except ImportError:
        raise ExportError(OPENVINO_HINT) from None
    return openvino


def openvino_available() -> bool:
    try:
        openvino_module()
    except ExportError:
        return False
    return True


def openvino_compile(
    model_path: str | os.PathLike[str],
    *,
    threads: int | None = None,
    batch_size: int | None = None,
    precision_hint: str | None = "f32",
) -> Any:
    """Compile an ONNX (QDQ) or OpenVINO IR file for the CPU; returns an ``openvino.CompiledModel``.

    ``batch_size`` fixes the batch dimension (static shapes run faster than a dynamic batch).
    ``precision_hint="f32"`` keeps the layers that are not quantized in float32: on CPUs with AMX
    OpenVINO would otherwise run them in bf16, which is another approximation than the model's.
    Quantized layers run in int8 regardless. One stream, latency mode.
    """
    ov = openvino_module()
    core = ov.Core()
    try:
        model = core.read_model(str(model_path))
        if batch_size is not None:
            shape = list(model.input(0).get_partial_shape())
            shape[0] = batch_size
            model.reshape({model.input(0): ov.PartialShape(shape)})
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if precision_hint:
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        return core.compile_model(model, "CPU", config)
    except Exception as exc:
        raise ExportError(f"OpenVINO cannot compile {str(model_path)!r}: {str(exc)[:300]}") from None


def save_openvino_ir(
    model_path: str | os.PathLike[str], xml_path: str | os.PathLike[str], *, compress_to_fp16: bool = False
) -> Path:
    """Convert an ONNX file to OpenVINO IR (``.xml`` + ``.bin`` beside it), written atomically.

    ``compress_to_fp16`` stores float weights as float16; int8 weights stay int8 either way.
    Returns the ``.xml`` path.
    """
    ov = openvino_module()
    target = Path(xml_path)
    if target.suffix != ".xml":
        raise ExportError(f"OpenVINO IR path must end in .xml, got {str(target)!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.stem}.", dir=target.parent))
    try:
        try:
            model = ov.convert_model(str(model_path))  # MOC conversion: keeps int8 weights compact
            ov.save_model(model, str(tmp_dir / "model.xml"), compress_to_fp16=compress_to_fp16)
        except Exception as exc:
            raise ExportError(f"OpenVINO cannot convert {str(model_path)!r}: {str(exc)[:300]}") from None
        os.replace(tmp_dir / "model.bin", target.with_suffix(".bin"))  # weights first, then the graph
        os.replace(tmp_dir / "model.xml", target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


def openvino_ir_precision(model_path: str | os.PathLike[str]) -> str:
    """ "int8" when the graph holds quantization (FakeQuantize, i8/u8 constants), "fp16" when its float
    weights are float16, else "fp32". Reads ONNX files as well as IR."""
    ov = openvino_module()
    model = ov.Core().read_model(str(model_path))
    types: set[str] = set()
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "FakeQuantize":
            return "int8"
        if kind == "Constant":
            types.add(op.get_output_element_type(0).get_type_name())
    if types & {"i8", "u8"}:
        return "int8"
    return "fp16" if "f16" in types else "fp32"


def openvino_latency(
    model_path: str | os.PathLike[str],
    input_size: Sequence[int],
    batch_sizes: Sequence[int] = (1, 32),
    *,
    threads: int | None = None,
    warmup: int = 5,
    runs: int = 30,
) -> dict[int, LatencyStats]:
    """Median/p90 latency of OpenVINO at each batch size (compiled with a static batch for each)."""
    out: dict[int, LatencyStats] = {}
    for b in batch_sizes:
        compiled = openvino_compile(model_path, threads=threads, batch_size=b)
        request = compiled.create_infer_request()
        x = np.random.default_rng(0).standard_normal((b, *input_size)).astype(np.float32)
        out[b] = measure_latency(
            lambda a, r=request: r.infer({0: a}), x, warmup=warmup, runs=runs, batch_size=b
        )
    return out
