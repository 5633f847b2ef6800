"""Measure an artifact on its runtimes: latency (median, p90) per batch size, throughput, memory, size.

:func:`benchmark_artifact` takes any file :func:`~edgeslim.export.runners.inspect_artifact` knows.
Runtimes that cannot run the file as it is get a converted copy in a temporary folder (a checkpoint
is exported to ONNX for ONNX Runtime and OpenVINO; an ONNX file is built into an engine for
TensorRT), and every converted copy or second runtime is parity-checked first: against the PyTorch
model for torch artifacts, against ONNX Runtime for an ONNX file. A runtime whose parity fails is
listed in ``failed`` with the reason and never timed.

Memory (``memory="process"``, the default): a fresh Python process imports only the runtime, loads
the artifact and runs one batch of the largest size; ``peak_rss_bytes`` is that process's peak RSS
(what deploying the artifact with this runtime costs, the runtime library included) and
``extra["rss_increase_bytes"]`` the part above the runtime's own footprint (model, plans, activations).
``memory="inline"`` measures the same inside this process instead (fast, for tests): runtimes
measured one after another can reuse memory an earlier one freed, so the increase is a lower bound.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeslim.bench import (
    DEFAULT_NOISE_THRESHOLD,
    Measurement,
    count_macs,
    env_fingerprint,
    measure_peak_rss,
    threads,
)
from edgeslim.checkpoint import recorded_image_size
from edgeslim.errors import ConfigError, EdgeslimError, ExportError
from edgeslim.export.api import export, run_in_batches
from edgeslim.export.litert import LiteRTRunner
from edgeslim.export.openvino import openvino_module
from edgeslim.export.parity import Parity, compare_outputs
from edgeslim.export.qdq import count_quantized_layers
from edgeslim.export.runners import (
    RUNTIMES,
    TORCH_KINDS,
    ArtifactInfo,
    Runner,
    check_trusted,
    default_runtime,
    inspect_artifact,
    load_torch_artifact,
    open_runner,
    runtime_status,
    trusting_artifacts,
)
from edgeslim.export.tensorrt import build_tensorrt_engine
from edgeslim.models import model_info

__all__ = ["RuntimeComparison", "artifact_input_size", "benchmark_artifact", "benchmark_runner"]


@dataclasses.dataclass(frozen=True)
class RuntimeComparison:
    """One artifact measured on several runtimes, the fastest per batch size and the default pick."""

    artifact: str
    info: dict[str, Any]
    measurements: tuple[Measurement, ...]
    failed: dict[str, str]  # runtime -> why it was not measured (absent, parity failure, error)
    parity: dict[str, dict[str, Any]]  # runtime -> Parity.to_dict() where checked
    fastest: dict[int, str]  # batch size -> runtime with the lowest median latency
    default: dict[int, str]  # batch size -> what default_runtime() picks among the runtimes measured
    macs_per_image: int | None = None  # what the pick weighed (PyTorch artifacts)

    def measurement(self, runtime: str) -> Measurement | None:
        return next((m for m in self.measurements if m.runtime == runtime), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "info": self.info,
            "measurements": [m.to_dict() for m in self.measurements],
            "failed": dict(self.failed),
            "parity": dict(self.parity),
            "fastest": {str(b): r for b, r in sorted(self.fastest.items())},
            "default": {str(b): r for b, r in sorted(self.default.items())},
            "macs_per_image": self.macs_per_image,
        }


def benchmark_runner(
    open_fn: Callable[[], Runner],
    input_size: Sequence[int],
    *,
    model_name: str = "model",
    artifact: str | None = None,
    size_bytes: int | None = None,
    batch_sizes: Sequence[int] = (1, 32),
    warmup: int = 5,
    runs: int = 30,
    min_seconds: float = 0.0,
    passes: int = 1,
    noise_threshold: float = DEFAULT_NOISE_THRESHOLD,
    num_threads: int | None = None,
    notes: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
    memory_probe: Callable[[], dict[str, int]] | None = None,
) -> Measurement:
    """Load with ``open_fn()``, then time it. Memory: ``memory_probe()`` (a separate process) when
    given, else measured here over loading plus one batch of the largest size. ``passes``: timing
    passes per batch size (see :meth:`Runner.latency`)."""
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise ConfigError(f"batch sizes must be at least 1, got {tuple(batch_sizes)}")
    sizes = sorted(set(int(b) for b in batch_sizes))
    x = np.random.default_rng(1).standard_normal((sizes[-1], *input_size)).astype(np.float32)
    holder: list[Runner] = []

    def load_and_run() -> None:
        runner = open_fn()
        runner.run(x)
        holder.append(runner)

    with threads(num_threads) as n_threads:
        if memory_probe is None:
            stats = measure_peak_rss(load_and_run)
            memory = {
                "baseline": stats.baseline_rss_bytes,
                "peak": stats.peak_rss_bytes,
                "increase": stats.increase_bytes,
            }
            how = f"this process: load + one batch of {sizes[-1]}"
        else:
            probe = memory_probe()
            memory = {
                "baseline": probe["runtime_rss_bytes"],
                "peak": probe["peak_rss_bytes"],
                "increase": probe["increase_bytes"],
            }
            how = f"fresh process: runtime + load + one batch of {sizes[-1]}"
            load_and_run()
        runner = holder[0]
        latency = runner.latency(
            input_size,
            sizes,
            warmup=warmup,
            runs=runs,
            min_seconds=min_seconds,
            passes=passes,
            noise_threshold=noise_threshold,
        )
    return Measurement(
        model=model_name,
        artifact=artifact,
        runtime=runner.runtime,
        precision=runner.precision,
        simulated=runner.simulated,
        size_bytes=size_bytes,
        latency=latency,
        peak_rss_bytes=memory["peak"],
        env=env_fingerprint(),
        notes=(*notes, *runner.notes),
        extra={
            "input_size": list(input_size),
            "threads": num_threads or n_threads,
            "warmup": warmup,
            "rss_baseline_bytes": memory["baseline"],
            "rss_increase_bytes": memory["increase"],
            "memory": how,
            **(extra or {}),
        },
    )


def artifact_input_size(info: ArtifactInfo) -> tuple[int, ...] | None:
    """(C, H, W) an artifact declares: static ONNX/IR input dims, the engine's record, the zoo model's."""
    if info.kind == "onnx":
        import onnx

        dims = onnx.load(str(info.path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
        values = [d.dim_value if d.HasField("dim_value") else None for d in dims[1:]]
        if values and all(isinstance(v, int) and v > 0 for v in values):
            return tuple(int(v) for v in values if v is not None)
        return None
    if info.kind == "openvino":
        shape = openvino_module().Core().read_model(str(info.path)).input(0).get_partial_shape()
        rest = list(shape)[1:]
        if all(d.is_static for d in rest):
            return tuple(int(d.get_length()) for d in rest)
        return None
    if info.kind == "litert":
        return LiteRTRunner(info.path).shape[1:]
    if info.kind == "tensorrt":
        sidecar = info.path.with_name(info.path.name + ".json")
        if sidecar.is_file():
            size = json.loads(sidecar.read_text()).get("input_size")
            return tuple(int(s) for s in size) if isinstance(size, list) else None
        return None
    if info.kind in ("checkpoint", "packed", "sparse"):
        recorded = recorded_image_size(info.path)  # the size it was trained at (--image-size)
        if recorded is not None:
            return (3, recorded, recorded)
    if info.model:
        with contextlib.suppress(EdgeslimError):
            return tuple(model_info(info.model).input_size)
    return None


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="edgeslim-bench-") as tmp:
        yield Path(tmp)


def _parse_runtimes(runtimes: str | Sequence[str], info: ArtifactInfo) -> list[str]:
    names = [runtimes] if isinstance(runtimes, str) else list(runtimes)
    if names == ["default"]:  # the runtime edgeslim would deploy the file on
        status = runtime_status()
        present = [r for r in info.runtimes if status.get(r) is None]
        return [default_runtime(info.precision, candidates=present)] if present else list(info.runtimes[:1])
    if "all" in names:
        if info.kind in TORCH_KINDS:
            return list(RUNTIMES)  # torch as it is, the others on a converted copy
        return list(info.runtimes)
    for name in names:
        if name not in RUNTIMES:
            raise ConfigError(
                f"benchmark_artifact.runtimes: {name!r} is not one of {', '.join(RUNTIMES)}, default or all",
                field="benchmark_artifact.runtimes",
            )
    if info.kind not in TORCH_KINDS and info.kind != "onnx":
        wrong = [n for n in names if n not in info.runtimes]
        if wrong:
            raise ConfigError(
                f"benchmark_artifact.runtimes: a {info.kind} artifact runs only on "
                f"{', '.join(info.runtimes)}, not {wrong[0]}",
                field="benchmark_artifact.runtimes",
            )
    if info.kind == "onnx" and "torch" in names:
        raise ConfigError(
            "benchmark_artifact.runtimes: an ONNX file does not run on torch; bench the checkpoint it came from",
            field="benchmark_artifact.runtimes",
        )
    return names


def benchmark_artifact(
    path: str | os.PathLike[str],
    runtimes: str | Sequence[str] = "all",
    *,
    input_size: Sequence[int] | None = None,
    batch_sizes: Sequence[int] = (1, 32),
    num_threads: int | None = None,
    warmup: int = 5,
    runs: int = 30,
    min_seconds: float = 0.0,
    passes: int = 1,
    noise_threshold: float = DEFAULT_NOISE_THRESHOLD,
    parity_inputs: torch.Tensor | None = None,
    parity_source: str = "random",
    memory: str = "process",
    trust_artifact: bool = False,
) -> RuntimeComparison:
    """Measure ``path`` on ``runtimes`` ("all": every runtime that can run it, converting it when
    needed; "default": the one :func:`default_runtime` picks). Parity inputs default to 64 random
    inputs; pass real images where you have them. A TorchScript or .pt2 file is refused unless
    ``trust_artifact`` (loading one can run code it contains). ``passes``: timing passes per batch
    size, summarised with their spread and a ``noisy`` flag (see :meth:`Runner.latency`)."""
    with trusting_artifacts(trust_artifact):
        return _benchmark_artifact(
            path,
            runtimes,
            input_size=input_size,
            batch_sizes=batch_sizes,
            num_threads=num_threads,
            warmup=warmup,
            runs=runs,
            min_seconds=min_seconds,
            passes=passes,
            noise_threshold=noise_threshold,
            parity_inputs=parity_inputs,
            parity_source=parity_source,
            memory=memory,
        )


def _benchmark_artifact(
    path: str | os.PathLike[str],
    runtimes: str | Sequence[str],
    *,
    input_size: Sequence[int] | None,
    batch_sizes: Sequence[int],
    num_threads: int | None,
    warmup: int,
    runs: int,
    min_seconds: float,
    passes: int,
    noise_threshold: float,
    parity_inputs: torch.Tensor | None,
    parity_source: str,
    memory: str,
) -> RuntimeComparison:
    if memory not in ("process", "inline"):
        raise ConfigError(f"memory must be 'process' or 'inline', not {memory!r}")
    info = inspect_artifact(path)
    check_trusted(info.path, info.kind)
    wanted = _parse_runtimes(runtimes, info)
    size = tuple(int(s) for s in input_size) if input_size else artifact_input_size(info)
    if size is None:
        raise ConfigError(
            f"cannot tell the input size of {str(info.path)!r}: set benchmark_artifact.input_size",
            field="benchmark_artifact.input_size",
        )
    if parity_inputs is None:
        gen = torch.Generator().manual_seed(0)
        parity_inputs = torch.randn((64, *size), generator=gen)
        parity_source = "random"
    macs = _macs(info, size)
    status = runtime_status()
    measurements: list[Measurement] = []
    failed: dict[str, str] = {}
    parities: dict[str, dict[str, Any]] = {}
    model_name = info.model or info.path.stem
    with _workdir() as work:
        reference: np.ndarray | None = None
        reference_name = ""
        for runtime in wanted:
            if status.get(runtime) is not None:
                failed[runtime] = str(status[runtime])
                continue
            try:
                target, target_info, notes, parity = _artifact_for(
                    info, runtime, work, size, parity_inputs, parity_source, num_threads
                )
                if parity is None and runtime not in info.runtimes:
                    raise ExportError("internal: a converted artifact was not parity-checked")
                if parity is None:  # the file itself on a second runtime: compare with the first
                    if reference is None:
                        first = open_runner(target, runtime, threads=num_threads, info=target_info)
                        reference = _run_all(first, parity_inputs)
                        reference_name = first.describe()
                    else:
                        other = open_runner(target, runtime, threads=num_threads, info=target_info)
                        parity = compare_outputs(
                            reference,
                            _run_all(other, parity_inputs),
                            precision=target_info.precision
                            if target_info.precision in ("fp32", "fp16")
                            else "int8",
                            inputs=parity_source,
                            reference=reference_name,
                        )
                if parity is not None:
                    parities[runtime] = parity.to_dict()
                    if not parity.ok:
                        failed[runtime] = f"parity {parity.summary()}"
                        continue
                extra: dict[str, Any] = {}
                if runtime == "ort" and target_info.precision.startswith("int"):
                    count = count_quantized_layers(target)
                    extra = {"ort_int8_layers": count.quantized, "ort_float_layers": len(count.float_layers)}
                measurements.append(
                    benchmark_runner(
                        functools.partial(
                            open_runner, target, runtime, threads=num_threads, info=target_info
                        ),
                        size,
                        model_name=model_name,
                        artifact=str(target) if target == info.path else f"{info.path} -> {target.name}",
                        size_bytes=target_info.size_bytes,
                        notes=notes,
                        extra=extra,
                        batch_sizes=batch_sizes,
                        warmup=warmup,
                        runs=runs,
                        min_seconds=min_seconds,
                        passes=passes,
                        noise_threshold=noise_threshold,
                        num_threads=num_threads,
                        memory_probe=None
                        if memory == "inline" or runtime in ("tensorrt", "litert")
                        else functools.partial(
                            probe_memory, target, runtime, max(batch_sizes), size, num_threads
                        ),
                    )
                )
            except EdgeslimError as exc:
                failed[runtime] = str(exc)
    fastest: dict[int, str] = {}
    default: dict[int, str] = {}
    for b in sorted(set(int(b) for b in batch_sizes)):
        timed = [(m.latency[b].median_ms, m.runtime) for m in measurements if b in m.latency]
        if timed:
            fastest[b] = min(timed)[1]
            candidates = [runtime for _, runtime in timed]
            ort = next((m for m in measurements if m.runtime == "ort"), None)
            float_layers = None if ort is None else ort.extra.get("ort_float_layers")
            default[b] = default_runtime(
                info.precision,
                candidates=candidates,
                batch_size=b,
                macs_per_image=macs,
                ort_float_layers=float_layers,
            )
    return RuntimeComparison(
        artifact=str(info.path),
        info=info.to_dict(),
        measurements=tuple(measurements),
        failed=failed,
        parity=parities,
        fastest=fastest,
        default=default,
        macs_per_image=macs,
    )


def probe_memory(
    path: Path, runtime: str, batch_size: int, input_size: Sequence[int], num_threads: int | None
) -> dict[str, int]:
    """Run ``_memprobe.py`` in a fresh interpreter: the memory cost of deploying ``path`` on ``runtime``."""
    script = Path(__file__).with_name("_memprobe.py")
    args = [str(path), runtime, str(batch_size), *(str(int(s)) for s in input_size), str(num_threads or 0)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ExportError(f"memory probe for {runtime} failed: {tail[0][:200]}")
    data = json.loads(lines[-1])
    return {k: int(v) for k, v in data.items()}


def _macs(info: ArtifactInfo, input_size: tuple[int, ...]) -> int | None:
    """MACs per image of a PyTorch artifact (what the default-runtime policy weighs); None otherwise."""
    if info.kind not in TORCH_KINDS:
        return None
    model, _ = load_torch_artifact(info.path, info.kind)
    if not isinstance(model, torch.nn.Module) or info.kind in ("exported_program", "torchscript"):
        return None
    return count_macs(model, (1, *input_size))


def _run_all(runner: Runner, inputs: torch.Tensor) -> np.ndarray:
    return run_in_batches(runner, inputs)


def _artifact_for(
    info: ArtifactInfo,
    runtime: str,
    work: Path,
    input_size: tuple[int, ...],
    parity_inputs: torch.Tensor,
    parity_source: str,
    num_threads: int | None,
) -> tuple[Path, ArtifactInfo, list[str], Parity | None]:
    """The file ``runtime`` runs: ``info.path`` itself, or a parity-checked conversion of it."""
    if runtime in info.runtimes and not (runtime == "tensorrt" and info.kind == "onnx"):
        return info.path, info, [], None
    notes: list[str] = []
    example = torch.randn(2, *input_size)
    if info.kind in TORCH_KINDS:
        model, _ = load_torch_artifact(info.path, info.kind)  # simulated: the model export converts
        fmt = {"ort": "onnx", "openvino": "openvino", "tensorrt": "tensorrt", "litert": "litert"}[runtime]
        suffix = {"onnx": ".onnx", "openvino": ".xml", "tensorrt": ".engine", "litert": ".tflite"}[fmt]
        precision = "int8" if info.kind == "packed" else "fp32"
        if precision == "int8" and info.precision != "int8":
            notes.append(f"{info.precision} weights run as int8 on {runtime}")
        result = export(
            model,
            fmt,
            example,
            out=work / f"{runtime}{suffix}",
            precision=precision,
            parity_inputs=parity_inputs,
            parity_source=parity_source,
            threads=num_threads,
        )
        notes.append(f"exported to {fmt} ({result.exporter}) for this run")
        return result.path, inspect_artifact(result.path), notes, result.parity
    if info.kind == "onnx" and runtime == "tensorrt":
        precision = "int8" if info.precision == "int8" else "fp32"
        engine = build_tensorrt_engine(
            info.path, work / "model.engine", precision=precision, input_size=input_size
        )
        return engine, inspect_artifact(engine), ["engine built from the ONNX file for this run"], None
    raise ConfigError(f"a {info.kind} artifact does not run on {runtime}")
