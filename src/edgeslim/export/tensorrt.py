"""TensorRT engines (FP16, int8 from a QDQ ONNX file) for NVIDIA GPUs, and a runner for them.

Importing this module never needs CUDA or TensorRT: :func:`tensorrt_status` says whether both are
present, and every entry point raises an :class:`ExportError` naming what is missing otherwise.

Engines are built from ONNX files edgeslim exported, with one optimization profile over the batch
dimension (1 .. ``max_batch``, tuned for ``opt_batch``). FP16 engines come from an FP16 ONNX graph
(float32 input and output, float16 inside), so the same file builds as a strongly typed network
(TensorRT 10.12+, where the FP16 builder flag is deprecated) or with the FP16 flag on older
versions. int8 engines come from a QDQ ONNX file (explicit quantization: the model's own scales,
no TensorRT calibration). I/O buffers are torch CUDA tensors, so no pycuda is needed. A JSON file
beside the engine records its precision and input size.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.errors import ExportError
from edgeslim.export.base import Runner
from edgeslim.io import atomic_write, atomic_write_text

__all__ = ["TensorRTRunner", "build_tensorrt_engine", "engine_precision", "tensorrt_status"]

TENSORRT_HINT = "TensorRT is not installed: pip install tensorrt (needs an NVIDIA GPU with CUDA)"


def tensorrt_status() -> str | None:
    """None when TensorRT can build and run engines here, else why not (one line)."""
    if importlib.util.find_spec("tensorrt") is None:
        return TENSORRT_HINT
    import torch

    if not torch.cuda.is_available():
        return "TensorRT needs a CUDA GPU and none is available (torch.cuda.is_available() is False)"
    return None


def _tensorrt() -> Any:
    reason = tensorrt_status()
    if reason is not None:
        raise ExportError(reason)
    import tensorrt

    return tensorrt


def _sidecar(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + ".json")


def engine_precision(path: str | os.PathLike[str]) -> str:
    """The precision recorded beside an engine at build time ("fp16", "int8", ...; "fp32" if unknown)."""
    info = _sidecar(Path(path))
    if info.is_file():
        try:
            value = json.loads(info.read_text()).get("precision")
        except (ValueError, OSError):
            value = None
        if isinstance(value, str):
            return value
    return "fp32"


def build_tensorrt_engine(
    onnx_path: str | os.PathLike[str],
    engine_path: str | os.PathLike[str],
    *,
    precision: str,
    input_size: tuple[int, ...],
    opt_batch: int = 32,
    max_batch: int = 256,
    workspace_bytes: int = 1 << 30,
) -> Path:
    """Build and write a serialized engine from an ONNX file (FP16 graph or int8 QDQ); atomic."""
    if precision not in ("fp32", "fp16", "int8"):
        raise ExportError(f"TensorRT precision must be fp32, fp16 or int8, not {precision!r}")
    trt = _tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") and precision != "fp32"
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {str(onnx_path)!r}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if not strongly_typed and precision in ("fp16", "int8") and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 engines keep non-quantized layers in fp16
    if not strongly_typed and precision == "int8" and hasattr(trt.BuilderFlag, "INT8"):
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(
        name, (1, *input_size), (min(opt_batch, max_batch), *input_size), (max_batch, *input_size)
    )
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build an engine from {str(onnx_path)!r} (see its log above)")
    target = Path(engine_path)
    data = bytes(serialized)
    atomic_write(target, lambda fh: fh.write(data))
    meta = {
        "precision": precision,
        "input_size": list(input_size),
        "max_batch": max_batch,
        "tensorrt": str(trt.__version__),
    }
    atomic_write_text(_sidecar(target), json.dumps(meta, indent=1))
    return target


class TensorRTRunner(Runner):
    """Runs a serialized engine on the GPU; ``run(x)`` copies a float32 batch in and the logits out.

    Timing (``timed_call``) includes both host-device copies, as an application would see them.
    """

    runtime = "tensorrt"

    def __init__(self, path: str | os.PathLike[str], precision: str | None = None) -> None:
        trt = _tensorrt()
        import torch

        super().__init__(Path(path), precision or engine_precision(path))
        self.path = Path(path)
        self._torch = torch
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ExportError(f"TensorRT cannot load the engine {str(self.path)!r} (other TensorRT version?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ExportError(f"{str(self.path)!r}: expected one input and one output, got {names}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.stream = torch.cuda.Stream()

    def run(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        device_in = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).cuda()
        self.context.set_input_shape(self.input_name, tuple(device_in.shape))
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        device_out = torch.empty(out_shape, dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(self.input_name, device_in.data_ptr())
        self.context.set_tensor_address(self.output_name, device_out.data_ptr())
        with torch.cuda.stream(self.stream):
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise ExportError(f"TensorRT failed to run {str(self.path)!r}")
        self.stream.synchronize()
        return device_out.cpu().numpy()
