"""Running one step: handlers looked up by step type, each a call to an existing task function.

========  =====================================  ==============================================
step      task                                   artifact it writes (the next step's input)
========  =====================================  ==============================================
start     build / ``tasks.train_task``           edgeslim checkpoint (``.pt``)
train     ``tasks.train_task``                   edgeslim checkpoint
distill   ``tasks.distill_task``                 edgeslim checkpoint (the student)
prune     ``tasks.prune_task``                   edgeslim checkpoint (dense or sparse layout)
quantize  ``tasks.quantize_task``                packed low-bit file (``.pt``) (+ QDQ ``.onnx``)
export    ``tasks.export_task``                  ``.onnx`` or OpenVINO ``.xml`` + ``.bin``
measure   ``evaluate_artifact_task`` +           none: hands its input on; one Measurement per
          ``edgeslim.export.benchmark_artifact``  runtime
========  =====================================  ==============================================

Tasks are called through the :mod:`edgeslim.tasks` module, so tests that monkeypatch a task there
replace what runs. Every handler returns a :class:`StepResult`: the artifact, the files it consists
of, a summary ``metrics`` dict for logs and the full task report, and typed :class:`Measurement`
records (what reports read).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from edgeslim import tasks
from edgeslim.bench import Measurement, count_macs, count_nonzero_params, count_params, file_size_bytes
from edgeslim.checkpoint import save_checkpoint
from edgeslim.data import Augment, BatchLoader
from edgeslim.engine.steps import (
    DistillStep,
    ExportStep,
    MeasureStep,
    PruneStep,
    QuantizeStep,
    StartStep,
    Step,
    TrainStep,
)
from edgeslim.errors import ConfigError, EdgeslimError, ExportError
from edgeslim.export import benchmark_artifact
from edgeslim.export.runners import open_runner
from edgeslim.methods import HandlerTable, method_of
from edgeslim.models import load_model_from_checkpoint, model_spec
from edgeslim.runtimes import Runtime
from edgeslim.tasks.common import DataSource, ModelSource

#: Artifact kinds a step can hand on.
KINDS = ("checkpoint", "packed", "onnx", "openvino")


@dataclasses.dataclass(frozen=True)
class StepInput:
    """What a step starts from: the artifact the previous step wrote (None for a start step)."""

    path: Path | None = None
    kind: str = "checkpoint"
    files: tuple[Path, ...] = ()

    def source(self) -> ModelSource:
        if self.path is None:
            raise ConfigError("internal: this step needs the artifact of a step before it")
        return ModelSource(checkpoint=self.path)


@dataclasses.dataclass(frozen=True)
class StepResult:
    """What a step produced: its main artifact, every file it wrote, and what it measured."""

    artifact: Path
    kind: str
    files: tuple[Path, ...]
    metrics: dict[str, Any]
    measurements: list[Measurement] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class StepContext:
    """Everything a step needs besides its own config."""

    input: StepInput
    data: DataSource
    out: Path  # the artifact path without suffix: <folder>/<NN>-<type>-<key prefix>
    threads: int | None = None
    progress: bool = True
    resume: bool = False  # an earlier attempt of this step was interrupted: go on from its files
    labels: dict[str, Any] = dataclasses.field(default_factory=dict)
    exclusive: bool = False  # nothing else of this run used the machine while the step ran


StepHandler = Callable[[Any, StepContext], StepResult]

#: The one table: step type -> handler. A new step type registers here with ``@HANDLERS.register``.
HANDLERS: HandlerTable[StepHandler] = HandlerTable("step")


def run_step(step: Step, ctx: StepContext) -> StepResult:
    """Run ``step`` on ``ctx.input``; the files it writes start with ``ctx.out``."""
    return HANDLERS.get(step)(step, ctx)


def artifact_files(path: Path) -> tuple[Path, ...]:
    """The files an artifact consists of (an OpenVINO IR is its .xml and .bin)."""
    return (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,)


def _augment(on: bool) -> Augment:
    return Augment() if on else Augment.none()


@HANDLERS.register(StartStep)
def _start(step: StartStep, ctx: StepContext) -> StepResult:
    if step.checkpoint is not None:  # an edgeslim file already: every later step reads it as it is
        return StepResult(step.checkpoint, "checkpoint", (step.checkpoint,), {"model": str(step.checkpoint)})
    out = ctx.out.with_suffix(".pt")
    out.parent.mkdir(parents=True, exist_ok=True)
    source = step.source()
    init = "weights" if step.weights else ("pretrained" if step.pretrained else step.init)
    metrics: dict[str, Any] = {"model": step.model, "init": init}
    if step.train is not None:
        result = tasks.train_task(
            source,
            ctx.data,
            step.train,
            out=out,
            resume=ctx.resume and out.is_file(),
            validate=False,
            num_threads=ctx.threads,
            progress=ctx.progress,
        )
        metrics.update(init="train", epochs=result.epochs_completed, train_seconds=result.seconds)
        model, _ = load_model_from_checkpoint(out)
        spec = model_spec(model) or {"name": step.model, "kwargs": {}}
    else:
        model, spec = source.build(default_num_classes=ctx.data.load().num_classes)
    size = ctx.data.input_size()
    meta = {"input": size.to_dict()} if size is not None else None  # the size later steps resize to
    save_checkpoint(out, model, model_name=spec["name"], model_kwargs=spec["kwargs"], meta=meta)
    if step.init == "random":
        metrics["note"] = "untrained: random initial weights (init: random), not a meaningful accuracy"
    return StepResult(out, "checkpoint", (out,), metrics)


@HANDLERS.register(TrainStep)
def _train(step: TrainStep, ctx: StepContext) -> StepResult:
    out = ctx.out.with_suffix(".pt")
    result = tasks.train_task(
        ctx.input.source(),
        ctx.data,
        step.train,
        out=out,
        resume=ctx.resume and out.is_file(),  # an interrupted train step goes on from its last epoch
        validate=False,
        augment=_augment(step.augment),
        num_threads=ctx.threads,
        progress=ctx.progress,
    )
    last = result.history[-1] if result.history else {}
    metrics = {
        "epochs": result.epochs_completed,
        "train_top1": last.get("train_top1"),
        "train_seconds": result.seconds,
        "size_bytes": file_size_bytes(out),
        "details": {"history": result.history},
    }
    return StepResult(out, "checkpoint", (out,), metrics)


def _teacher_file(ctx: StepContext) -> Path:
    """Where a distill step keeps the teacher it trained (beside its own artifact)."""
    return Path(f"{ctx.out}.teacher.pt")


def _teacher(step: DistillStep, ctx: StepContext) -> tuple[ModelSource, dict[str, Any]]:
    """The distill step's teacher: as given, or trained from scratch first when it names a ``train``
    budget (into ``<step>.teacher.pt`` beside the step's artifact, resumed if interrupted, reused
    when the step runs again). The step's key covers the teacher's settings, so a changed teacher
    gets a new step folder."""
    teacher = step.teacher
    if teacher.train is None:
        return teacher.source(), {}
    out = _teacher_file(ctx)
    if not out.is_file() or ctx.resume:
        out.parent.mkdir(parents=True, exist_ok=True)
        result = tasks.train_task(
            teacher.source(),
            ctx.data,
            teacher.train,
            out=out,
            resume=out.is_file(),
            validate=False,
            num_threads=ctx.threads,
            progress=ctx.progress,
        )
        return ModelSource(checkpoint=out), {
            "teacher_epochs": result.epochs_completed,
            "teacher_train_seconds": result.seconds,
        }
    return ModelSource(checkpoint=out), {}


@HANDLERS.register(DistillStep)
def _distill(step: DistillStep, ctx: StepContext) -> StepResult:
    out = ctx.out.with_suffix(".pt")
    teacher, teacher_metrics = _teacher(step, ctx)
    outcome = tasks.distill_task(
        ctx.input.source(),
        teacher,
        step.config,  # type: ignore[arg-type]  # a distill/* method config (checked by the step)
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
        **teacher_metrics,
        "details": d,
    }
    teacher_file = _teacher_file(ctx)
    files = (out, teacher_file) if teacher_file.is_file() else (out,)
    return StepResult(out, "checkpoint", files, metrics)


@HANDLERS.register(PruneStep)
def _prune(step: PruneStep, ctx: StepContext) -> StepResult:
    out = ctx.out.with_suffix(".pt")
    outcome = tasks.prune_task(
        ctx.input.source(),
        step.config,  # type: ignore[arg-type]  # a prune/* method config (checked by the step)
        out=out,
        select=step.select,
        data_source=ctx.data,
        finetune=step.train,
        recovery=step.recovery,
        layout=step.layout,  # type: ignore[arg-type]  # one of LAYOUTS (checked by the step)
        latency_batch_sizes=(),  # latency is the measure step's job, on the runtimes it names
        num_threads=ctx.threads,
        progress=ctx.progress,
        measure_before=False,  # the model it starts from is measured by its own measure step
    )
    d = outcome.to_dict()
    metrics = {
        "top1": d["top1_after"],
        "method": method_of(step.config).id,
        "sparsity": d["sparsity"],
        "params": d["params_after"],
        "nonzero_params": d["nonzero_params_after"],
        "macs": d["macs_after"],
        "mac_reduction": d["mac_reduction"],
        "size_bytes": d["size_bytes"],
        "dense_size_bytes": d["dense_size_bytes"],
        "layout": d["layout"],
        "finetune_epochs": d["finetune_epochs"],
        "recovery": _recovery_summary(d.get("recovery")),
        "details": d,
    }
    return StepResult(out, "checkpoint", (out,), metrics)


def _recovery_summary(run: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a sweep/recipe log shows of a recovery fine-tune: distilled?, epochs, cost."""
    if not run:
        return None
    budget = run.get("budget") or {}
    return {
        "distill": run["distill"],
        "teacher_logits_cached": run["teacher_logits_cached"],
        "epochs": run["epochs"],
        "seconds": run["seconds"],
        "teacher_seconds": run["teacher_seconds"],
        "budget_minutes": budget.get("budget_minutes"),
    }


@HANDLERS.register(QuantizeStep)
def _quantize(step: QuantizeStep, ctx: StepContext) -> StepResult:
    out = ctx.out.with_suffix(".pt")
    outcome = tasks.quantize_task(
        ctx.input.source(),
        step.config,  # type: ignore[arg-type]  # a quantize/* method config (checked by the step)
        out=out,
        data_source=ctx.data,
        qat_training=step.train,
        recovery=step.recovery,
        keep_sparsity=step.keep_sparsity,
        num_threads=ctx.threads,
        progress=ctx.progress,
    )
    d = outcome.to_dict()
    files = (outcome.packed_path,) + ((outcome.onnx_path,) if outcome.onnx_path is not None else ())
    metrics = {
        "top1": d["top1_deployed"] if d["top1_deployed"] is not None else d["top1_simulated"],
        "top1_simulated": d["top1_simulated"],
        "top1_deployed": d["top1_deployed"],
        "top1_fp32": d["top1_fp32"],
        "method": method_of(step.config).id,
        "runtime": d["runtime"],
        "bits": d["bits"],
        "act_bits": d["act_bits"],
        "size_bytes": d["size_bytes"],
        "size_bytes_fp32": d["size_bytes_fp32"],
        "onnx_path": d["onnx_path"],
        "keep_sparsity": step.keep_sparsity,
        "recovery": _recovery_summary(d.get("recovery")),
        "details": d,
    }
    return StepResult(outcome.packed_path, "packed", files, metrics)


@HANDLERS.register(ExportStep)
def _export(step: ExportStep, ctx: StepContext) -> StepResult:
    out = ctx.out.with_suffix(".xml" if step.format == "openvino" else ".onnx")
    precision = step.precision or ("int8" if ctx.input.kind == "packed" else "fp32")
    outcome = tasks.export_task(
        ctx.input.source(),
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


# -- measure ------------------------------------------------------------------------------------
#: Parity inputs (real test images) for the files the measure step exports or times.
PARITY_IMAGES = 64


def _failed(base: Measurement, reason: str) -> Measurement:
    """A runtime measurement that did not happen: no latency, memory or accuracy is credited."""
    return base.replace(
        top1=None,
        top5=None,
        latency={},
        peak_rss_bytes=None,
        notes=(*base.notes, f"not measured: {reason}"),
        extra={**base.extra, "failed": reason},
    )


def _runtime_file(runtime: str, ctx: StepContext, images: torch.Tensor) -> tuple[Path, dict[str, Any]]:
    """The file ``runtime`` runs for the step's input: the input itself, the int8 ONNX file a
    quantize step wrote, or a parity-checked export of a float checkpoint. Raises with the reason
    when this runtime cannot run this artifact."""
    source = ctx.input
    assert source.path is not None
    if runtime == Runtime.TORCH:
        if source.kind not in ("checkpoint", "packed"):
            raise ExportError(
                f"a {source.kind} file does not run on torch; measure the checkpoint it came from"
            )
        return source.path, {}
    if source.kind == "onnx" and runtime in (Runtime.ORT, Runtime.OPENVINO):
        return source.path, {}
    if source.kind == "openvino":
        if runtime != Runtime.OPENVINO:
            raise ExportError(f"an OpenVINO IR runs only on openvino, not {runtime}")
        return source.path, {}
    if source.kind == "packed":
        onnx_file = next((f for f in source.files if f.suffix == ".onnx"), None)
        if onnx_file is None or runtime not in (Runtime.ORT, Runtime.OPENVINO):
            raise ExportError(f"this quantization method writes no int8 file that {runtime} runs")
        return onnx_file, {}
    fmt = {Runtime.ORT: "onnx", Runtime.OPENVINO: "openvino"}.get(Runtime(runtime))
    if fmt is None:
        raise ExportError(f"the measure step exports only to ONNX Runtime and OpenVINO, not {runtime}")
    out = ctx.out.parent / f"{ctx.out.name}-{runtime}{'.xml' if fmt == 'openvino' else '.onnx'}"
    outcome = tasks.export_task(
        source.source(),
        fmt,
        out=out,
        precision="fp32",
        data_source=ctx.data,
        parity_images=PARITY_IMAGES,
        num_threads=ctx.threads,
    )
    parity = outcome.result.parity
    info = {"exported": str(out), "parity": None if parity is None else parity.to_dict()}
    if not outcome.ok:
        why = "not checked" if parity is None else parity.summary()
        raise ExportError(f"the exported {fmt} file does not reproduce the model (parity {why})")
    return out, info


def _counts(ctx: StepContext, input_size: tuple[int, ...]) -> dict[str, Any]:
    """Parameters, non-zero parameters and MACs of the model behind the input (empty when it is a
    runtime file: those are counted on the checkpoint it came from)."""
    path = ctx.input.path
    if path is None or ctx.input.kind not in ("checkpoint", "packed"):
        return {}
    runner = open_runner(path, Runtime.TORCH.value, threads=ctx.threads)
    model = getattr(runner, "model", None)
    if not isinstance(model, nn.Module):
        return {}
    return {
        "params": count_params(model),
        "nonzero_params": count_nonzero_params(model),
        "macs": count_macs(model, (1, *input_size)),
    }


@HANDLERS.register(MeasureStep)
def _measure(step: MeasureStep, ctx: StepContext) -> StepResult:
    path = ctx.input.path
    if path is None:
        raise ConfigError("internal: measure needs the artifact of a step before it")
    parity = dataclasses.replace(ctx.data, limit=PARITY_IMAGES).load("test")
    images = next(iter(BatchLoader(parity, PARITY_IMAGES)))[0]
    input_size = tuple(int(s) for s in images.shape[1:])
    runtimes = list(step.runtimes)
    if not runtimes:  # the runtime edgeslim deploys this artifact on
        probe = benchmark_artifact(
            path,
            "default",
            input_size=input_size,
            batch_sizes=(1,),
            runs=1,
            warmup=0,
            memory="inline",
            parity_inputs=images,
            parity_source="real test images",
        )
        runtimes = [m.runtime for m in probe.measurements][:1] or ["torch"]
    measurements: list[Measurement] = []
    for runtime in runtimes:
        base = Measurement(
            model=str(ctx.labels.get("model") or path.stem), artifact=str(path), runtime=runtime
        )
        try:
            target, info = _runtime_file(runtime, ctx, images)
        except EdgeslimError as exc:
            measurements.append(_failed(base, f"{runtime}: {exc}"))
            continue
        base = base.replace(
            artifact=str(target),
            size_bytes=sum(file_size_bytes(f) for f in artifact_files(target)),
            extra={**base.extra, **({"export": info} if info else {})},
        )
        measurements.append(_measure_one(step, ctx, base, target, runtime, images))
    # the model's counts: from its torch evaluation when there was one, else loaded once for them
    counted = next((m for m in measurements if m.runtime == Runtime.TORCH and m.params is not None), None)
    counts = (
        {"params": counted.params, "nonzero_params": counted.nonzero_params, "macs": counted.macs}
        if counted is not None
        else _counts(ctx, input_size)
    )
    measurements = [
        m.replace(**{k: v for k, v in counts.items() if getattr(m, k) is None}) for m in measurements
    ]
    measured = [m for m in measurements if not m.extra.get("failed")]
    if not measured:
        reasons = "; ".join(str(m.extra["failed"]) for m in measurements)
        raise ExportError(f"cannot measure {str(path)!r} on any runtime asked for: {reasons}")
    first = measured[0] if measurements[0].extra.get("failed") else measurements[0]
    metrics = summary_metrics(first)
    metrics["runtime_errors"] = {m.runtime: m.extra["failed"] for m in measurements if m.extra.get("failed")}
    if path.suffix == ".onnx":
        metrics.update(onnx_weight_stats(path))
    return StepResult(path, ctx.input.kind, ctx.input.files or artifact_files(path), metrics, measurements)


def summary_metrics(m: Measurement) -> dict[str, Any]:
    """The flat figures of one measurement (what step logs and summaries show)."""
    lat = sorted(m.latency.items())
    smallest = lat[0][0] if lat else None
    return {
        "runtime": m.runtime,
        "precision": m.precision,
        "simulated": m.simulated,
        "top1": m.top1,
        "top5": m.top5,
        "num_images": m.num_images,
        "params": m.params,
        "nonzero_params": m.nonzero_params,
        "macs": m.macs,
        "size_bytes": m.size_bytes,
        "latency_ms": m.latency[smallest].median_ms if smallest is not None else None,
        "latency_batch_size": smallest,
        "latency_ms_by_batch": {str(b): s.median_ms for b, s in lat},
        "latency_p90_ms_by_batch": {str(b): s.p90_ms for b, s in lat},
        "latency_passes": m.latency[smallest].passes if smallest is not None else None,
        "latency_spread_by_batch": {str(b): s.spread for b, s in lat},
        "latency_noisy": any(s.noisy for _, s in lat),
        "throughput_ips_by_batch": {str(b): s.throughput_ips for b, s in lat},
        "peak_rss_bytes": m.peak_rss_bytes,
        "threads": m.extra.get("threads"),
        "parity": (m.extra.get("export") or {}).get("parity"),
    }


def _measure_one(
    step: MeasureStep, ctx: StepContext, base: Measurement, target: Path, runtime: str, images: torch.Tensor
) -> Measurement:
    """Accuracy of ``target`` on ``runtime`` (really run there) plus its latency and memory."""
    measured = base
    if step.accuracy:
        try:
            acc = tasks.evaluate_artifact_task(
                target, ctx.data, runtime=runtime, num_threads=ctx.threads, progress=False
            )
        except EdgeslimError as exc:
            return _failed(base, f"{runtime}: {exc}")
        measured = measured.replace(
            top1=acc.top1,
            top5=acc.top5,
            num_images=acc.num_images,
            precision=acc.precision,
            simulated=acc.simulated,
            notes=(*measured.notes, *acc.notes),
            params=measured.params if measured.params is not None else acc.params,
            nonzero_params=measured.nonzero_params
            if measured.nonzero_params is not None
            else acc.nonzero_params,
            macs=measured.macs if measured.macs is not None else acc.macs,
        )
    if not step.latency and step.memory == "none":
        return measured
    if measured.simulated:  # timing a fake-quantized model would credit latency no deployment has
        return measured.replace(
            notes=(
                *measured.notes,
                f"latency and memory not measured on {runtime}: this quantized model runs there only as a "
                "simulation (fake quantization); its deployed figures are those of its int8 runtime",
            )
        )
    try:
        comparison = benchmark_artifact(
            target,
            [runtime],
            input_size=tuple(int(s) for s in images.shape[1:]),
            batch_sizes=step.batch_sizes if step.latency else (max(step.batch_sizes),),
            num_threads=ctx.threads,
            warmup=step.warmup if step.latency else 0,
            runs=step.runs if step.latency else 1,
            passes=step.passes if step.latency else 1,
            noise_threshold=step.noise_threshold,
            parity_inputs=images,
            parity_source="real test images",
            memory="process" if step.memory == "process" else "inline",
        )
    except EdgeslimError as exc:  # the file cannot be timed there: the other runtimes still count
        return _failed(measured, f"{runtime}: {exc}")
    found = comparison.measurement(runtime)
    if found is None:
        return _failed(measured, f"{runtime}: {comparison.failed.get(runtime, 'no measurement')}")
    extra = {**measured.extra, **{k: v for k, v in found.extra.items() if k.startswith("ort_")}}
    if step.latency:  # what the latencies' spread and noisy flags were judged by
        extra.update(latency_passes=step.passes, noise_threshold=step.noise_threshold)
    if step.memory != "none":
        for key in ("rss_baseline_bytes", "rss_increase_bytes", "memory"):
            extra[key] = found.extra.get(key)
    return measured.replace(
        latency=found.latency if step.latency else {},
        peak_rss_bytes=found.peak_rss_bytes if step.memory != "none" else None,
        precision=found.precision if not step.accuracy else measured.precision,
        simulated=measured.simulated or found.simulated,
        notes=tuple(dict.fromkeys((*measured.notes, *found.notes))),
        env=found.env,
        extra={**extra, "threads": found.extra.get("threads"), "exclusive": ctx.exclusive},
    )


def onnx_weight_stats(path: Path) -> dict[str, Any]:
    """How an ONNX file stores its conv/linear weights: counts, exact zeros and bytes.

    The weight is the initializer feeding a layer (Conv, Gemm, MatMul) directly or through a
    DequantizeLinear; zeros are counted in the stored values (int8 codes for QDQ). ONNX stores
    every tensor densely, so zeros cost as much as any other value in the file.
    """
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


__all__ = [
    "HANDLERS",
    "KINDS",
    "StepContext",
    "StepInput",
    "StepResult",
    "artifact_files",
    "onnx_weight_stats",
    "run_step",
]
