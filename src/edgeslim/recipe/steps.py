"""Running one recipe step: each is a call to an existing task function on the previous artifact.

========  =====================================  ==============================================
step      task                                   artifact it writes (the next step's input)
========  =====================================  ==============================================
train     ``tasks.train_task`` + ``evaluate_task``  edgeslim checkpoint (``.pt``)
distill   ``tasks.distill_task``                 edgeslim checkpoint (the student)
prune     ``tasks.prune_task``                   edgeslim checkpoint (dense or sparse layout)
quantize  ``tasks.quantize_task``                packed low-bit file (``.pt``) + QDQ ``.onnx``
export    ``tasks.export_task``                  ``.onnx`` or OpenVINO ``.xml`` + ``.bin``
measure   ``evaluate_artifact_task`` +           none: the next step reads the same artifact
          ``edgeslim.export.benchmark_artifact``
========  =====================================  ==============================================

Tasks are looked up on :mod:`edgeslim.tasks` at call time, so the same names tests monkeypatch
are the ones that run. Every step returns flat ``metrics`` (``top1``, ``size_bytes``,
``latency_ms_by_batch``, ... where it measured them, the names sweeps use) plus the task's full
report under ``details``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgeslim.bench import Measurement, file_size_bytes
from edgeslim.data import Augment
from edgeslim.errors import ConfigError, ExportError
from edgeslim.recipe.schema import (
    DistillStep,
    ExportStep,
    MeasureStep,
    PruneStep,
    QuantizeStep,
    Step,
    TrainStep,
)
from edgeslim.tasks.common import DataSource, ModelSource


@dataclasses.dataclass(frozen=True)
class StepInput:
    """What a step starts from: the model source and, once a step wrote one, its artifact file."""

    source: ModelSource
    path: Path | None  # None: the recipe's starting zoo model (name + weights), not yet a file
    kind: str  # "start" | "checkpoint" | "packed" | "onnx" | "openvino"


@dataclasses.dataclass(frozen=True)
class StepResult:
    """What a step produced: its main artifact, every file it wrote, and what it measured."""

    artifact: Path
    kind: str
    files: tuple[Path, ...]
    metrics: dict[str, Any]
    measurements: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class StepContext:
    """Everything a step needs besides its own config."""

    input: StepInput
    data: DataSource
    out: Path  # the artifact path without suffix: <run folder>/<NN>-<type>-<key>
    threads: int | None = None
    progress: bool = True
    resume: bool = False  # an earlier attempt of this step was interrupted: go on from its files


def sha256_files(paths: Iterable[Path]) -> str:
    """One digest over the bytes of ``paths`` in order (what a step's output is, for resume)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def artifact_files(path: Path) -> tuple[Path, ...]:
    """The files an artifact consists of (an OpenVINO IR is its .xml and .bin)."""
    return (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,)


def run_step(step: Step, ctx: StepContext) -> StepResult:
    """Run ``step`` on ``ctx.input``; the files it writes start with ``ctx.out``."""
    if isinstance(step, TrainStep):
        return _train(step, ctx)
    if isinstance(step, DistillStep):
        return _distill(step, ctx)
    if isinstance(step, PruneStep):
        return _prune(step, ctx)
    if isinstance(step, QuantizeStep):
        return _quantize(step, ctx)
    if isinstance(step, ExportStep):
        return _export(step, ctx)
    if isinstance(step, MeasureStep):
        return _measure(step, ctx)
    raise ConfigError(f"unknown step type {type(step).__name__}")


def _tasks() -> Any:
    from edgeslim import tasks

    return tasks


def _augment(on: bool) -> Augment:
    return Augment() if on else Augment.none()


def _train(step: TrainStep, ctx: StepContext) -> StepResult:
    tasks = _tasks()
    out = ctx.out.with_suffix(".pt")
    result = tasks.train_task(
        ctx.input.source,
        ctx.data,
        step.train,
        out=out,
        resume=ctx.resume and out.is_file(),  # an interrupted train step goes on from its last epoch
        validate=False,
        augment=_augment(step.augment),
        num_threads=ctx.threads,
        progress=ctx.progress,
    )
    measured: Measurement = tasks.evaluate_task(
        ModelSource(checkpoint=out), ctx.data, num_threads=ctx.threads, progress=False
    )
    last = result.history[-1] if result.history else {}
    metrics = {
        "top1": measured.top1,
        "top5": measured.top5,
        "num_images": measured.num_images,
        "params": measured.params,
        "macs": measured.macs,
        "size_bytes": file_size_bytes(out),
        "epochs": result.epochs_completed,
        "train_top1": last.get("train_top1"),
        "train_seconds": result.seconds,
        "details": {"history": result.history},
    }
    return StepResult(out, "checkpoint", (out,), metrics, [measured.to_dict()])


def _distill(step: DistillStep, ctx: StepContext) -> StepResult:
    out = ctx.out.with_suffix(".pt")
    outcome = _tasks().distill_task(
        ctx.input.source,
        step.teacher.source(),
        step.config,
        ctx.data,
        step.train,
        out=out,
        augment=_augment(step.augment),
        num_threads=ctx.threads,
        progress=ctx.progress,
    )
    d = outcome.to_dict()
    metrics = {
        "top1": d["top1_student"],
        "top1_teacher": d["top1_teacher"],
        "top1_before": d["top1_student_before"],
        "top1_gap": d["top1_gap"],
        "method": d["method"],
        "params": d["params_student"],
        "params_teacher": d["params_teacher"],
        "macs": d["macs_student"],
        "macs_teacher": d["macs_teacher"],
        "size_bytes": d["size_bytes"],
        "epochs": d["epochs"],
        "num_images": d["num_test_images"],
        "train_seconds": d["seconds"],
        "details": d,
    }
    return StepResult(out, "checkpoint", (out,), metrics)


def _prune(step: PruneStep, ctx: StepContext) -> StepResult:
    out = ctx.out.with_suffix(".pt")
    outcome = _tasks().prune_task(
        ctx.input.source,
        step.config,
        out=out,
        select=step.select,
        data_source=ctx.data,
        finetune=step.train,
        layout=step.layout,
        num_threads=ctx.threads,
        progress=ctx.progress,
        measure_before=False,  # the previous step measured the model it hands over
    )
    d = outcome.to_dict()
    latency = {b: s["median_ms"] for b, s in d["latency_after_ms"].items()}
    metrics = {
        "top1": d["top1_after"],
        "method": d["method"],
        "sparsity": d["sparsity"],
        "params": d["params_after"],
        "nonzero_params": d["nonzero_params_after"],
        "macs": d["macs_after"],
        "mac_reduction": d["mac_reduction"],
        "size_bytes": d["size_bytes"],
        "dense_size_bytes": d["dense_size_bytes"],
        "layout": d["layout"],
        "finetune_epochs": d["finetune_epochs"],
        "runtime": "torch",
        "latency_ms_by_batch": latency,
        "details": d,
    }
    return StepResult(out, "checkpoint", (out,), metrics)


def _quantize(step: QuantizeStep, ctx: StepContext) -> StepResult:
    out = ctx.out.with_suffix(".pt")
    outcome = _tasks().quantize_task(
        ctx.input.source,
        step.config,
        out=out,
        data_source=ctx.data,
        qat_training=step.train,
        keep_sparsity=bool(step.keep_sparsity),
        num_threads=ctx.threads,
        progress=ctx.progress,
    )
    d = outcome.to_dict()
    files = (outcome.packed_path,) + ((outcome.onnx_path,) if outcome.onnx_path is not None else ())
    metrics = {
        "top1": d["top1_deployed"],
        "top1_simulated": d["top1_simulated"],
        "top1_fp32": d["top1_fp32"],
        "runtime": d["runtime"],
        "bits": d["bits"],
        "act_bits": d["act_bits"],
        "size_bytes": d["size_bytes"],
        "size_bytes_fp32": d["size_bytes_fp32"],
        "onnx_path": d["onnx_path"],
        "onnx_size_bytes": d["onnx_size_bytes"],
        "keep_sparsity": bool(step.keep_sparsity),
        "details": d,
    }
    return StepResult(outcome.packed_path, "packed", files, metrics)


def _export(step: ExportStep, ctx: StepContext) -> StepResult:
    out = ctx.out.with_suffix(".xml" if step.format == "openvino" else ".onnx")
    precision = step.precision or ("int8" if ctx.input.kind == "packed" else "fp32")
    source = ModelSource(checkpoint=ctx.input.path) if ctx.input.path is not None else ctx.input.source
    outcome = _tasks().export_task(
        source,
        step.format,
        out=out,
        precision=precision,
        data_source=ctx.data,
        parity_images=step.parity_images,
        opset=step.opset,
        num_threads=ctx.threads,
    )
    d = outcome.to_dict()
    if not outcome.ok:
        summary = outcome.result.parity.summary() if outcome.result.parity is not None else "not checked"
        raise ExportError(f"the exported {step.format} file does not reproduce the model: {summary}")
    files = tuple(Path(f) for f in d["files"])
    metrics = {
        "format": d["format"],
        "precision": d["precision"],
        "size_bytes": d["size_bytes"],
        "parity": d["parity"],
        "exporter": d["exporter"],
        "details": d,
    }
    metrics.update(onnx_weight_stats(out) if out.suffix == ".onnx" else {})
    return StepResult(out, "openvino" if step.format == "openvino" else "onnx", files, metrics)


def _measure(step: MeasureStep, ctx: StepContext) -> StepResult:
    from edgeslim.data import BatchLoader
    from edgeslim.export import benchmark_artifact

    path = ctx.input.path
    if path is None:
        raise ConfigError("internal: measure needs a file; the runner materializes the starting model first")
    tasks = _tasks()
    accuracy: Measurement | None = None
    if step.accuracy:
        accuracy = tasks.evaluate_artifact_task(
            path, ctx.data, runtime=step.runtime, num_threads=ctx.threads, progress=ctx.progress
        )
    parity = dataclasses.replace(ctx.data, limit=64).load("test")
    images = next(iter(BatchLoader(parity, 64)))[0]
    comparison = benchmark_artifact(
        path,
        [step.runtime] if step.runtime else "default",
        input_size=tuple(int(s) for s in images.shape[1:]),
        batch_sizes=step.batch_sizes,
        num_threads=ctx.threads,
        warmup=step.warmup,
        runs=step.runs,
        parity_inputs=images,
        parity_source="real test images",
        memory=step.memory,
    )
    if not comparison.measurements:
        reasons = "; ".join(f"{r}: {why}" for r, why in comparison.failed.items()) or "no runtime measured"
        raise ExportError(f"cannot measure {str(path)!r}: {reasons}")
    timed = comparison.measurements[0]
    if accuracy is not None and accuracy.runtime != timed.runtime:
        raise ExportError(
            f"accuracy ran on {accuracy.runtime} but latency on {timed.runtime}; name the runtime in the step"
        )
    smallest = min(timed.latency)
    metrics: dict[str, Any] = {
        "runtime": timed.runtime,
        "precision": timed.precision,
        "simulated": timed.simulated or (accuracy.simulated if accuracy is not None else False),
        "top1": accuracy.top1 if accuracy is not None else None,
        "top5": accuracy.top5 if accuracy is not None else None,
        "num_images": accuracy.num_images if accuracy is not None else None,
        "params": accuracy.params if accuracy is not None else None,
        "nonzero_params": accuracy.nonzero_params if accuracy is not None else None,
        "macs": accuracy.macs if accuracy is not None else None,
        "size_bytes": file_size_bytes(path),
        "latency_ms": timed.latency[smallest].median_ms,
        "latency_batch_size": smallest,
        "latency_ms_by_batch": {str(b): s.median_ms for b, s in sorted(timed.latency.items())},
        "latency_p90_ms_by_batch": {str(b): s.p90_ms for b, s in sorted(timed.latency.items())},
        "throughput_ips_by_batch": {str(b): s.throughput_ips for b, s in sorted(timed.latency.items())},
        "peak_rss_bytes": timed.peak_rss_bytes,
        "threads": timed.extra.get("threads"),
        "parity": comparison.parity.get(timed.runtime),
    }
    if path.suffix == ".onnx":
        metrics.update(onnx_weight_stats(path))
    measurements = [m.to_dict() for m in (accuracy, timed) if m is not None]
    return StepResult(path, ctx.input.kind, artifact_files(path), metrics, measurements)


def onnx_weight_stats(path: Path) -> dict[str, Any]:
    """How an ONNX file stores its conv/linear weights: counts, exact zeros and bytes.

    The weight is the initializer feeding a layer (Conv, Gemm, MatMul) directly or through a
    DequantizeLinear; zeros are counted in the stored values (int8 codes for QDQ). ONNX stores
    every tensor densely, so zeros cost as much as any other value in the file.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path), load_external_data=False)
    inits = {t.name: t for t in proto.graph.initializer}
    producers = {out: node for node in proto.graph.node for out in node.output}
    weights: dict[str, Any] = {}
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul", "ConvTranspose") or len(node.input) < 2:
            continue
        name = node.input[1]
        feeder = producers.get(name)
        if feeder is not None and feeder.op_type == "DequantizeLinear":
            name = feeder.input[0]
        if name in inits:
            weights[name] = inits[name]
    values = [np.asarray(numpy_helper.to_array(t)) for t in weights.values()]
    total = int(sum(v.size for v in values))
    zeros = int(sum(int((v == 0).sum()) for v in values))
    return {
        "onnx_weights": total,
        "onnx_zero_weights": zeros,
        "onnx_weight_sparsity": zeros / total if total else 0.0,
        "onnx_weight_bytes": int(sum(v.nbytes for v in values)),
    }
