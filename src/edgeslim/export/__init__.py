"""Export models to deployable artifacts, check them against PyTorch, and run them on their runtimes.

- :func:`export` (``api.py``): ONNX (FP32, int8 QDQ), OpenVINO IR (FP32, FP16, int8), TensorRT
  engines (FP32, FP16, int8; CUDA only), LiteRT ``.tflite`` (optional converter), ExportedProgram
  ``.pt2`` and TorchScript, each parity-checked;
- ``runners.py``: :func:`inspect_artifact` / :func:`open_runner` load any artifact edgeslim writes
  (also checkpoints, pruned sparse files and packed low-bit files) on torch, ONNX Runtime, OpenVINO
  or TensorRT behind one ``run(x)``; :func:`default_runtime` is the runtime choice policy;
- ``bench.py``: :func:`benchmark_artifact` measures an artifact on one or all runtimes present;
- ``qdq.py``: a fake-quantized model as a real int8 artifact (QDQ ONNX for ONNX Runtime and
  OpenVINO), its int8 layer counts and deployed parity (export builds on quantization, never the
  reverse);
- ``onnx.py``, ``openvino.py``, ``tensorrt.py``, ``litert.py``, ``torchscript.py``: per-format pieces.
"""

from edgeslim.export.api import FORMATS, ExportResult, export, format_for_path
from edgeslim.export.bench import RuntimeComparison, benchmark_artifact, benchmark_runner
from edgeslim.export.litert import export_litert, litert_status
from edgeslim.export.onnx import OnnxExport, check_parity, export_onnx, ort_latency, ort_session
from edgeslim.export.openvino import openvino_compile, openvino_latency, save_openvino_ir
from edgeslim.export.parity import Parity, compare_outputs, default_tolerance
from edgeslim.export.qdq import (
    LayerCount,
    QdqExport,
    count_openvino_layers,
    count_quantized_layers,
    deployed_parity,
    export_qdq_onnx,
)
from edgeslim.export.runners import (
    RUNTIMES,
    ArtifactInfo,
    Runner,
    available_runtimes,
    default_runtime,
    deployed_latency,
    inspect_artifact,
    load_packed_model,
    load_torch_artifact,
    open_runner,
    run_deployed,
    runtime_status,
    trusting_artifacts,
)
from edgeslim.export.tensorrt import build_tensorrt_engine, tensorrt_status
from edgeslim.export.torchscript import export_program, export_torchscript

__all__ = [
    "FORMATS",
    "RUNTIMES",
    "ArtifactInfo",
    "ExportResult",
    "LayerCount",
    "OnnxExport",
    "Parity",
    "QdqExport",
    "Runner",
    "RuntimeComparison",
    "available_runtimes",
    "benchmark_artifact",
    "benchmark_runner",
    "build_tensorrt_engine",
    "check_parity",
    "compare_outputs",
    "count_openvino_layers",
    "count_quantized_layers",
    "default_runtime",
    "default_tolerance",
    "deployed_latency",
    "deployed_parity",
    "export",
    "export_litert",
    "export_onnx",
    "export_program",
    "export_qdq_onnx",
    "export_torchscript",
    "format_for_path",
    "inspect_artifact",
    "litert_status",
    "load_packed_model",
    "load_torch_artifact",
    "open_runner",
    "openvino_compile",
    "openvino_latency",
    "ort_latency",
    "ort_session",
    "run_deployed",
    "runtime_status",
    "save_openvino_ir",
    "tensorrt_status",
    "trusting_artifacts",
]
