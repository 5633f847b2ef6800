"""Load any artifact edgeslim writes and run it on its runtime, through one small interface.

Artifacts: ONNX (``.onnx``, FP32 or int8 QDQ), OpenVINO IR (``.xml`` + ``.bin``), TensorRT engines
(``.engine``/``.plan``), LiteRT flatbuffers (``.tflite``), ExportedPrograms (``.pt2``), TorchScript
files, edgeslim checkpoints (dense or sparse pruned files) and packed low-bit quantization files.
:func:`inspect_artifact` says what a file is, its precision and which runtimes run it;
:func:`open_runner` returns a :class:`Runner` whose ``run(x)`` maps a float32 NCHW batch to logits,
whatever executes it.

Runtimes: "torch" (eager PyTorch), "ort" (ONNX Runtime, CPU), "openvino" (OpenVINO, CPU),
"tensorrt" (TensorRT, CUDA) and "litert" (LiteRT/TFLite, optional). :func:`default_runtime` is the
policy edgeslim uses when none is named.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import importlib.util
import logging
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeslim.bench.latency import LatencyStats, measure_latency
from edgeslim.bench.size import file_size_bytes
from edgeslim.checkpoint import read_file
from edgeslim.config import config_from_dict
from edgeslim.errors import CheckpointError, ConfigError, ExportError
from edgeslim.export.base import Runner
from edgeslim.export.litert import LiteRTRunner, litert_status
from edgeslim.export.onnx import ort_latency, ort_session
from edgeslim.export.openvino import OPENVINO_HINT, openvino_compile, openvino_ir_precision
from edgeslim.export.tensorrt import TensorRTRunner, engine_precision, tensorrt_status
from edgeslim.methods import HandlerTable
from edgeslim.models import create_model, load_model_from_checkpoint, model_info
from edgeslim.models.channels import apply_channel_spec
from edgeslim.quantization import QAT, DynamicQuant, StaticQuant, convert, load_packed, quantize
from edgeslim.quantization.dynamic import REAL_INT8_NOTE, runs_real_int8, to_torch_dynamic
from edgeslim.runtimes import RUNTIME_NAMES, Runtime

__all__ = [
    "ARTIFACT_KINDS",
    "RUNTIMES",
    "ArtifactInfo",
    "OpenVinoRunner",
    "OrtRunner",
    "Runner",
    "TorchRunner",
    "available_runtimes",
    "default_runtime",
    "deployed_latency",
    "inspect_artifact",
    "load_packed_model",
    "load_torch_artifact",
    "open_runner",
    "run_deployed",
    "runtime_status",
    "trusting_artifacts",
]

#: every runtime name (the one vocabulary: :mod:`edgeslim.runtimes`)
RUNTIMES = RUNTIME_NAMES
#: artifact kind -> runtimes that execute the file as it is
ARTIFACT_KINDS: dict[str, tuple[str, ...]] = {
    "onnx": (Runtime.ORT, Runtime.OPENVINO, Runtime.TENSORRT),
    "openvino": (Runtime.OPENVINO,),
    "tensorrt": (Runtime.TENSORRT,),
    "litert": (Runtime.LITERT,),
    "exported_program": (Runtime.TORCH,),
    "torchscript": (Runtime.TORCH,),
    "checkpoint": (Runtime.TORCH,),
    "packed": (Runtime.TORCH,),
}
TORCH_KINDS = frozenset({"exported_program", "torchscript", "checkpoint", "packed"})


# ---------------------------------------------------------------------------------------------
# what a file is


@dataclasses.dataclass(frozen=True)
class ArtifactInfo:
    """What :func:`inspect_artifact` found out about a file without running it."""

    path: Path
    kind: str  # a key of ARTIFACT_KINDS
    precision: str  # fp32 | fp16 | int8
    runtimes: tuple[str, ...]  # runtimes that run the file as it is
    size_bytes: int
    model: str | None = None  # zoo name, when the file records it
    simulated: bool = False  # torch runs a packed file as fake quantization (8-bit dynamic: real int8)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["path"] = str(self.path)
        data["runtimes"] = list(self.runtimes)
        return data


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def _onnx_precision(path: Path) -> str:
    try:
        import onnx
    except ImportError:
        raise ExportError("onnx is not installed: pip install 'edgeslim[runtimes]'") from None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ExportError(f"{str(path)!r} is not a readable ONNX file ({str(exc)[:160]})") from None
    ops = {node.op_type for node in proto.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger"}:
        return "int8"
    if any(init.data_type == onnx.TensorProto.FLOAT16 for init in proto.graph.initializer):
        return "fp16"
    return "fp32"


def inspect_artifact(path: str | os.PathLike[str]) -> ArtifactInfo:
    """Identify an artifact by its suffix and contents; a clear error for anything else."""
    p = Path(path)
    if not p.is_file():
        raise ExportError(f"artifact {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    size = file_size_bytes(p)
    model: str | None = None
    simulated = False
    if suffix == ".onnx":
        kind, precision = "onnx", _onnx_precision(p)
    elif suffix == ".xml":
        if not p.with_suffix(".bin").is_file():
            raise ExportError(f"OpenVINO IR {str(p)!r} has no weights file {str(p.with_suffix('.bin'))!r}")
        kind, precision = "openvino", openvino_ir_precision(p)
    elif suffix in (".engine", ".plan", ".trt"):
        kind, precision = "tensorrt", engine_precision(p)
    elif suffix == ".tflite":
        kind, precision = "litert", "fp32"
    elif suffix == ".pt2":
        kind, precision = "exported_program", "fp32"
    elif any("/code/" in name or name.endswith("constants.pkl") for name in _zip_names(p)):
        kind, precision = "torchscript", "fp32"
    else:
        obj = read_file(p)
        fmt = obj.get("format") if isinstance(obj, dict) else None
        spec = obj.get("model") if isinstance(obj, dict) else None
        if fmt == "edgeslim.packed":
            # simulated (fake quantization) unless torch has real int8 kernels for it (dynamic, 8 bits)
            kind, precision = "packed", "int8"
            simulated = not _packed_real_int8(obj)
            bits = _packed_bits(obj)
            precision = f"int{bits}" if bits else "int8"
        elif fmt in ("edgeslim.checkpoint", "edgeslim.sparse"):
            kind, precision = "checkpoint", "fp32"
            if fmt == "edgeslim.sparse":
                spec = (obj.get("meta") or {}).get("model")
        else:
            raise ExportError(
                f"{str(p)!r} is a weights file without a model description: load it as ModelSource.weights "
                "with a ModelSource.name, or pass an edgeslim checkpoint, .onnx, .xml, .pt2 or packed file"
            )
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            model = spec["name"]
    return ArtifactInfo(p, kind, precision, ARTIFACT_KINDS[kind], size, model, simulated)


def _packed_real_int8(obj: dict[str, Any]) -> bool:
    try:
        config = _packed_config((obj.get("meta") or {}).get("quantization"))
    except ConfigError:
        return False
    return runs_real_int8(config)


def _packed_bits(obj: dict[str, Any]) -> int | None:
    quant = (obj.get("meta") or {}).get("quantization")
    if isinstance(quant, dict):
        bits = quant.get("bits", quant.get("weight_bits"))
        if isinstance(bits, int):
            return bits
    return None


# ---------------------------------------------------------------------------------------------
# runtimes present


def runtime_status() -> dict[str, str | None]:
    """Each runtime -> None when it can run here, else why not (one line)."""
    status: dict[str, str | None] = {"torch": None}
    status["ort"] = (
        None
        if importlib.util.find_spec("onnxruntime")
        else "onnxruntime is not installed: pip install 'edgeslim[runtimes]'"
    )
    status["openvino"] = None if importlib.util.find_spec("openvino") else OPENVINO_HINT
    status["tensorrt"] = tensorrt_status()
    status["litert"] = litert_status()
    return status


def available_runtimes() -> tuple[str, ...]:
    return tuple(name for name, reason in runtime_status().items() if reason is None)


#: MACs of one call (batch x MACs per image) up to which a CPU call is overhead-bound
SMALL_CALL_MACS = 1_000_000_000
#: the same for int8 artifacts: OpenVINO's int8 kernels overtake ONNX Runtime's much earlier
#: (measured: resnet20 at 41 MMAC ties, resnet56 at 125 MMAC is 1.29x faster on OpenVINO)
SMALL_INT8_CALL_MACS = 50_000_000


def default_runtime(
    precision: str = "fp32",
    *,
    candidates: Sequence[str] | None = None,
    batch_size: int = 1,
    macs_per_image: int | None = None,
    ort_float_layers: int | None = None,
) -> str:
    """The runtime edgeslim picks when none is named, from what was measured on x86 CPUs here.

    TensorRT when CUDA and TensorRT are present. On CPUs the work of one call decides between ONNX
    Runtime and OpenVINO. A small call (at most 1 GMAC for the whole batch; without
    ``macs_per_image``, a batch of at most 4) is overhead-bound and ONNX Runtime's lower per-call
    cost wins (OpenVINO up to 4x slower on single CIFAR images); larger calls are compute-bound and
    OpenVINO's kernels win (FP32 10-40% faster at batch 32, a 4.3 GMAC image 2.3x). int8 calls are
    small up to 50 MMAC (``SMALL_INT8_CALL_MACS``); int8 goes to OpenVINO from batch 5 on whatever
    the size (its AMX/VNNI int8 kernels were 1.2-5x faster at
    batch 32 even for a 8 MMAC model), and at every size when ONNX Runtime leaves layers of the
    artifact in float (``ort_float_layers`` > 0, e.g. scope "weights_and_activations"; None: not
    known), which makes it about 2x slower there. Then LiteRT, then PyTorch eager.
    ``benchmarks/runtimes.py`` checks the pick against the fastest runtime measured.
    """
    present = set(available_runtimes() if candidates is None else candidates)
    is_int = precision.startswith("int") and precision[3:].isdigit()
    if precision not in ("fp32", "fp16") and not is_int:
        raise ConfigError(f"precision must be fp32, fp16 or intN, not {precision!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if macs_per_image is None:
        small = batch_size <= 4
    else:
        limit = SMALL_INT8_CALL_MACS if is_int else SMALL_CALL_MACS
        small = batch_size * macs_per_image <= limit and (not is_int or batch_size <= 4)
    if is_int and ort_float_layers != 0:
        small = False
    cpu = ("ort", "openvino") if small else ("openvino", "ort")
    for name in ("tensorrt", *cpu, "litert", "torch"):
        if name in present:
            return name
    raise ExportError("no runtime can run this artifact here (install 'edgeslim[runtimes]')")


# ---------------------------------------------------------------------------------------------
# runners


class TorchRunner(Runner):
    """Eager PyTorch under ``inference_mode`` (a zoo model, checkpoint, packed file, .pt2, TorchScript)."""

    runtime = "torch"

    def __init__(
        self,
        model: nn.Module | Callable[..., Any],
        path: Path | None = None,
        precision: str = "fp32",
        *,
        simulated: bool = False,
        notes: Sequence[str] = (),
    ) -> None:
        super().__init__(path, precision)
        self.simulated = simulated  # fake quantization: low-bit values, float arithmetic
        self.notes = tuple(notes)
        if isinstance(model, nn.Module):
            with contextlib.suppress(NotImplementedError):  # ExportedProgram modules have no eval()
                model.eval()
        self.model = model

    def run(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return out.float().numpy()


class OrtRunner(Runner):
    """An ONNX Runtime CPU session (all graph optimizations; dynamic batch as exported)."""

    runtime = "ort"

    def __init__(self, path: Path, precision: str = "fp32", *, threads: int | None = None) -> None:
        super().__init__(path, precision)
        try:
            self.session = ort_session(path, threads=threads)
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"ONNX Runtime cannot load {str(path)!r}: {str(exc)[:300]}") from None
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        feed = {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        return np.asarray(self.session.run(None, feed)[0])


class OpenVinoRunner(Runner):
    """OpenVINO on the CPU, compiled once per batch size with a static shape (faster than dynamic)."""

    runtime = "openvino"

    def __init__(self, path: Path, precision: str = "fp32", *, threads: int | None = None) -> None:
        super().__init__(path, precision)
        self.threads = threads
        self._compiled: dict[int, Any] = {}
        self._requests: dict[int, Any] = {}
        self._request(1)  # compile once now so that a broken file fails here, not mid-benchmark

    def _request(self, batch_size: int) -> Any:
        if batch_size not in self._requests:
            if len(self._requests) >= 4:  # evaluation sees a few batch sizes; keep memory bounded
                self._requests.clear()
                self._compiled.clear()
            compiled = openvino_compile(str(self.path), threads=self.threads, batch_size=batch_size)
            self._compiled[batch_size] = compiled
            self._requests[batch_size] = compiled.create_infer_request()
        return self._requests[batch_size]

    def run(self, x: np.ndarray) -> np.ndarray:
        request = self._request(int(x.shape[0]))
        request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(request.get_output_tensor(0).data)

    def timed_call(self, batch_size: int) -> Callable[[np.ndarray], Any]:
        request = self._request(batch_size)
        return lambda a: request.infer({0: a})


# ---------------------------------------------------------------------------------------------
# torch artifacts


#: how the quantized model a packed file was written from is rebuilt, by its config's type:
#: ``fn(float model, config, example input) -> fake-quantized model`` (its weights are loaded next)
PACKED_REBUILDERS: HandlerTable[Callable[..., nn.Module]] = HandlerTable("packed file rebuild")


@PACKED_REBUILDERS.register(StaticQuant)
def _rebuild_static(model: nn.Module, config: StaticQuant, example: torch.Tensor) -> nn.Module:
    batches = [example] * config.calibration_batches
    return quantize(model, config, calibration=batches, example_inputs=example).model


@PACKED_REBUILDERS.register(QAT)
def _rebuild_qat(model: nn.Module, config: QAT, example: torch.Tensor) -> nn.Module:
    return convert(quantize(model, config, example_inputs=example).model)


@PACKED_REBUILDERS.register(DynamicQuant)
def _rebuild_dynamic(model: nn.Module, config: DynamicQuant, example: torch.Tensor) -> nn.Module:
    del example
    return quantize(model, config).model


def _packed_config(quant: Any) -> Any:
    """The quantization config a packed file's meta records, or None when it names none we rebuild."""
    names = {t.__name__ for t in PACKED_REBUILDERS.types()}
    if not isinstance(quant, dict) or quant.get("type") not in names:
        return None
    return config_from_dict(quant)


def load_packed_model(
    path: str | os.PathLike[str], *, real_int8: bool = False
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the fake-quantized model a packed low-bit file was written from, with its weights.

    The file holds the zoo spec and the quantization config: the model is built, quantized the
    same way (a throwaway calibration on zeros gives the structure; the file's scales replace its
    ranges) and the dequantized weights are loaded strictly. Returns (model in eval mode, meta).
    ``real_int8``: an 8-bit dynamic file comes back on torch's real int8 kernels (same weight codes;
    :func:`~edgeslim.quantization.dynamic.to_torch_dynamic`) instead of simulated; every other
    file is simulated whatever this says.
    """
    source = repr(str(path))
    state, meta = load_packed(path)
    spec = meta.get("model")
    config_data = meta.get("quantization")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise CheckpointError(f"{source}: packed file has no model spec")
    config = _packed_config(config_data)
    if config is None:
        raise CheckpointError(
            f"{source}: packed file does not say how it was quantized (meta 'quantization' with a "
            "StaticQuant, QAT or DynamicQuant config); it was not written by `edgeslim quantize`"
        )
    kwargs = dict(spec.get("kwargs") or {})
    num_classes = kwargs.pop("num_classes", 10)
    model = create_model(spec["name"], num_classes=num_classes, **kwargs).eval()
    if meta.get("channel_spec"):
        apply_channel_spec(model, meta["channel_spec"])
    example = torch.zeros(2, *_input_size_for(spec["name"]))
    qmodel = PACKED_REBUILDERS.get(config)(model, config, example)
    try:
        qmodel.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise CheckpointError(f"{source} does not fit the model it names ({first})") from None
    if real_int8 and runs_real_int8(config):
        qmodel = to_torch_dynamic(qmodel, config)
    return qmodel.eval(), meta


def _input_size_for(name: str) -> tuple[int, ...]:
    try:
        return tuple(model_info(name).input_size)
    except Exception:
        return (3, 32, 32)


#: Artifact kinds loaded by ``torch.jit.load`` / ``torch.export.load``, outside the ``weights_only=True``
#: guarantee of checkpoints and packed files (:mod:`edgeslim.checkpoint`): opened only when trusted.
UNTRUSTED_KINDS = ("exported_program", "torchscript")
_TRUST: contextvars.ContextVar[bool] = contextvars.ContextVar("edgeslim_trust_artifact", default=False)


@contextlib.contextmanager
def trusting_artifacts(trust: bool = True) -> Iterator[None]:
    """Within this block, TorchScript and ExportedProgram files may be loaded (``--trust-artifact``)."""
    token = _TRUST.set(trust or _TRUST.get())
    try:
        yield
    finally:
        _TRUST.reset(token)


def check_trusted(path: str | os.PathLike[str], kind: str, trust_artifact: bool | None = None) -> None:
    """Refuse a TorchScript or ExportedProgram file unless it is trusted (argument or
    :func:`trusting_artifacts`): loading one unpickles and runs what it contains."""
    if kind not in UNTRUSTED_KINDS or trust_artifact or _TRUST.get():
        return
    what = "an ExportedProgram (.pt2)" if kind == "exported_program" else "a TorchScript file"
    loader = "torch.export.load" if kind == "exported_program" else "torch.jit.load"
    raise ConfigError(
        f"{str(path)!r} is {what}: {loader} can run code the file contains (it is outside the "
        "weights_only=True guarantee of checkpoints); only for files you made or trust, pass "
        "--trust-artifact on the command line or trust_artifact=True in Python",
        field="trust_artifact",
    )


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


def load_torch_artifact(
    path: str | os.PathLike[str],
    kind: str | None = None,
    *,
    real_int8: bool = False,
    trust_artifact: bool | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The callable model in a torch artifact (checkpoint, packed file, .pt2, TorchScript) and its meta.

    ``real_int8``: run an 8-bit dynamic packed file on torch's int8 kernels (see :func:`load_packed_model`);
    leave it False where the model is exported or inspected rather than run. ``trust_artifact``: load
    a TorchScript or .pt2 file (refused otherwise, unless inside :func:`trusting_artifacts`).
    """
    kind = kind or inspect_artifact(path).kind
    check_trusted(path, kind, trust_artifact)
    if kind == "packed":
        return load_packed_model(path, real_int8=real_int8)
    if kind == "checkpoint":
        return load_model_from_checkpoint(path)
    if kind == "exported_program":
        if not zipfile.is_zipfile(path):
            raise ExportError(
                f"{str(path)!r} is not an ExportedProgram archive (.pt2 files are zip archives)"
            )
        try:  # torch logs a traceback of its own before raising: the error below says it in one line
            with _quiet_logger("torch.export"):
                program = torch.export.load(str(path))
        except Exception as exc:
            raise ExportError(f"cannot load the ExportedProgram {str(path)!r}: {str(exc)[:200]}") from None
        return program.module(), {}
    if kind == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.10+
            try:
                return torch.jit.load(str(path), map_location="cpu"), {}
            except Exception as exc:
                raise ExportError(
                    f"cannot load the TorchScript file {str(path)!r}: {str(exc)[:200]}"
                ) from None
    raise ExportError(f"{str(path)!r} is a {kind} artifact, not a PyTorch one")


def open_runner(
    path: str | os.PathLike[str],
    runtime: str | None = None,
    *,
    threads: int | None = None,
    info: ArtifactInfo | None = None,
    trust_artifact: bool | None = None,
) -> Runner:
    """Load ``path`` on ``runtime`` (None: :func:`default_runtime` among those that run the file).

    ``trust_artifact``: a TorchScript or .pt2 file is loaded only when trusted (see :func:`check_trusted`).
    """
    info = info or inspect_artifact(path)
    check_trusted(info.path, info.kind, trust_artifact)
    status = runtime_status()
    if runtime is None:
        present = [r for r in info.runtimes if status.get(r) is None]
        if not present:
            reasons = "; ".join(f"{r}: {status.get(r)}" for r in info.runtimes)
            raise ExportError(f"no runtime here runs {str(info.path)!r} ({reasons})")
        runtime = default_runtime(info.precision, candidates=present)
    if runtime not in RUNTIMES:
        raise ConfigError(
            f"open_runner.runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}",
            field="open_runner.runtime",
        )
    if runtime not in info.runtimes:
        hint = (
            "export it first to onnx, openvino, tensorrt or litert (`edgeslim export`)"
            if info.kind in TORCH_KINDS
            else f"it runs on {', '.join(info.runtimes)}"
        )
        raise ConfigError(
            f"open_runner.runtime: a {info.kind} artifact does not run on {runtime}; {hint}",
            field="open_runner.runtime",
        )
    reason = status.get(runtime)
    if reason is not None:
        raise ExportError(reason)
    if runtime == "torch":
        model, _ = load_torch_artifact(info.path, info.kind, real_int8=True, trust_artifact=True)
        notes = (REAL_INT8_NOTE,) if info.kind == "packed" and not info.simulated else ()
        return TorchRunner(model, info.path, info.precision, simulated=info.simulated, notes=notes)
    if runtime == "ort":
        return OrtRunner(info.path, info.precision, threads=threads)
    if runtime == "openvino":
        return OpenVinoRunner(info.path, info.precision, threads=threads)
    if runtime == "litert":
        return LiteRTRunner(info.path, info.precision, threads=threads)
    if info.kind == "onnx":
        raise ConfigError(
            f"TensorRT runs engines: export {str(info.path)!r} to format tensorrt first (`edgeslim export`)"
        )
    return TensorRTRunner(info.path, info.precision)


# ---------------------------------------------------------------------------------------------
# raw runtime handles (an ORT session or an OpenVINO compiled model), used by quantization


def _is_openvino(handle: Any) -> bool:
    return hasattr(handle, "create_infer_request")


def run_deployed(runner: Any, x: np.ndarray) -> np.ndarray:
    """Outputs of a :class:`Runner`, an ONNX Runtime session or an OpenVINO compiled model on ``x``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if isinstance(runner, Runner):
        return runner.run(x)
    if _is_openvino(runner):
        return np.asarray(runner(x)[runner.output(0)])
    if hasattr(runner, "run") and hasattr(runner, "get_inputs"):
        return np.asarray(runner.run(None, {runner.get_inputs()[0].name: x})[0])
    raise ExportError(f"cannot run a {type(runner).__name__}: expected an ORT session or OpenVINO model")


def deployed_latency(
    runner: Any,
    input_size: Sequence[int],
    batch_sizes: Sequence[int] = (1, 32),
    *,
    warmup: int = 5,
    runs: int = 30,
) -> dict[int, LatencyStats]:
    """Latency of an ORT session or an OpenVINO compiled model (as compiled: dynamic or static batch)."""
    if isinstance(runner, Runner):
        return runner.latency(input_size, batch_sizes, warmup=warmup, runs=runs)
    if not _is_openvino(runner):
        return ort_latency(runner, input_size, batch_sizes, warmup=warmup, runs=runs)
    request = runner.create_infer_request()
    out: dict[int, LatencyStats] = {}
    for b in batch_sizes:
        x = np.random.default_rng(0).standard_normal((b, *input_size)).astype(np.float32)
        out[b] = measure_latency(lambda a: request.infer({0: a}), x, warmup=warmup, runs=runs, batch_size=b)
    return out
