"""One trial: baseline -> compress -> fine-tune -> measure, built from the existing tasks.

* A **baseline** builds its model (zoo weights, or trained from scratch with :func:`train_task`),
  saves it as an edgeslim checkpoint (the artifact every trial of that model starts from and the
  size every trial is compared with), evaluates it (:func:`evaluate_task`) and measures it on each
  runtime.
* A **compress** trial runs :func:`prune_task` (pruning plus fine-tuning) or :func:`quantize_task`
  (PTQ, QAT or dynamic; deployed int8 accuracy) on the baseline artifact, then measures the result.

Runtimes: ``torch`` (eager, :func:`bench_task`) and ``onnxruntime`` (the exported ONNX file, or the
QDQ int8 file that quantization wrote). Each is one :class:`Measurement` in the record; the flat
``metrics`` summarize the first runtime listed, which reports and recommendations use.

:func:`execute` wraps any trial function with the thread count, time/memory limits, the NaN check,
timings and the environment fingerprint, and never raises: a failure becomes a failed
:class:`Outcome` with its error text.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from torch import nn

from edgeslim.bench import Measurement, env_fingerprint, file_size_bytes, measure_peak_rss, threads
from edgeslim.errors import EdgeslimError
from edgeslim.sweep.limits import LimitGuard, TrialLimitExceeded


@dataclasses.dataclass(frozen=True)
class TrialJob:
    """Everything a worker needs to run one trial (plain data: crosses process and node borders)."""

    trial_id: int
    key: str
    name: str
    kind: str
    config: dict[str, Any]
    baseline: dict[str, Any] | None  # the baseline record's {"artifact", "metrics"} (compress trials)
    workdir: str
    threads: int = 1
    timeout_s: float | None = None
    memory_mb: float | None = None
    workers: int = 1


@dataclasses.dataclass(frozen=True)
class TrialOutput:
    """What a trial function returns; :func:`execute` turns it into an :class:`Outcome`."""

    metrics: dict[str, Any]
    measurements: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    artifact: str | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A finished trial, done or failed, ready to be written to the store."""

    status: Literal["done", "failed"]
    metrics: dict[str, Any]
    measurements: list[dict[str, Any]]
    artifact: str | None
    error: str | None
    traceback: str | None
    timings: dict[str, Any]
    env: dict[str, Any]

    @classmethod
    def failed(cls, error: str, *, timings: dict[str, Any] | None = None, tb: str | None = None) -> Outcome:
        return cls("failed", {}, [], None, error, tb, dict(timings or {}), {})

    def record(self, store: Any, trial_id: int) -> None:
        """Write this outcome into ``store`` (an :class:`edgeslim.sweep.store.Store`)."""
        if self.status == "done":
            store.finish_trial(
                trial_id,
                metrics=self.metrics,
                measurements=self.measurements,
                timings=self.timings,
                env=self.env,
                artifact=self.artifact,
            )
        else:
            store.fail_trial(
                trial_id, self.error or "failed", timings=self.timings, env=self.env, traceback=self.traceback
            )


TrialFn = Callable[[TrialJob], TrialOutput]


def non_finite(metrics: dict[str, Any], prefix: str = "") -> list[str]:
    """Names of NaN or infinite numbers in ``metrics`` (nested dicts included)."""
    bad: list[str] = []
    for k, v in metrics.items():
        if isinstance(v, float) and not math.isfinite(v):
            bad.append(prefix + str(k))
        elif isinstance(v, dict):
            bad += non_finite(v, f"{prefix}{k}.")
    return bad


def execute(job: TrialJob, fn: TrialFn) -> Outcome:
    """Run ``fn(job)`` under the job's threads and limits; every failure becomes a failed Outcome."""
    started = time.time()
    t0 = time.perf_counter()

    def timings(extra: dict[str, float] | None = None) -> dict[str, Any]:
        return {**(extra or {}), "started_at": started, "total_s": time.perf_counter() - t0}

    guard = LimitGuard(job.timeout_s, job.memory_mb)
    try:
        with threads(job.threads) as n_threads:
            try:
                with guard, warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("default")
                    output = fn(job)
            except TrialLimitExceeded:
                return Outcome.failed(guard.reason or "ran past a limit", timings=timings())
            env = {**env_fingerprint(), "sweep_workers": job.workers, "worker_threads": n_threads}
    except TrialLimitExceeded:  # delivered just as the trial ended
        return Outcome.failed(guard.reason or "ran past a limit", timings=timings())
    except EdgeslimError as exc:
        return Outcome.failed(f"{type(exc).__name__}: {exc}", timings=timings(), tb=traceback.format_exc())
    except Exception as exc:  # a trial's bug must not stop the sweep (Ctrl-C still does)
        text = str(exc).strip().splitlines()
        return Outcome.failed(
            f"{type(exc).__name__}: {text[0] if text else ''}".strip(),
            timings=timings(),
            tb=traceback.format_exc(),
        )
    notes = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))[:10]
    if notes:  # kept with the record instead of cluttering the live view
        output = dataclasses.replace(output, metrics={**output.metrics, "warnings": notes})
    bad = non_finite(output.metrics)
    if bad:
        return Outcome.failed(
            f"the trial produced NaN/inf in {', '.join(bad)}", timings=timings(output.timings)
        )
    return Outcome(
        "done",
        output.metrics,
        output.measurements,
        output.artifact,
        None,
        None,
        timings(output.timings),
        env,
    )


# -- the real trial -----------------------------------------------------------------------------
def _data_source(data: dict[str, Any]) -> Any:
    from edgeslim.tasks import DataSource

    train_limit = data.get("train_limit")
    if train_limit is None and data.get("test_limit") is not None:
        train_limit = sys.maxsize  # DataSource applies `limit` to train unless train_limit is set
    return DataSource(
        path=data["path"],
        split=data.get("eval_split", "test"),
        limit=data.get("test_limit"),
        val_fraction=data.get("val_fraction", 0.1),
        seed=data.get("seed", 0),
        train_limit=train_limit,
    )


def run_trial(job: TrialJob) -> TrialOutput:
    """The trial function of real sweeps: a baseline or a compress trial (see the module docstring).

    Every trial starts from the experiment's seed, so initialization (a model trained from scratch)
    and everything random after it repeat whichever worker or node runs the trial.
    """
    from edgeslim.train import seed_everything

    seed_everything(int(job.config.get("data", {}).get("seed", 0)))
    if job.kind == "baseline":
        return _baseline(job)
    if job.baseline is None or not job.baseline.get("artifact"):
        raise EdgeslimError(f"trial {job.name!r} has no baseline artifact to start from")
    if job.config["family"] == "prune":
        return _prune(job)
    return _quantize(job)


def _baseline(job: TrialJob) -> TrialOutput:
    from edgeslim.checkpoint import save_checkpoint
    from edgeslim.models import load_model_from_checkpoint, model_spec
    from edgeslim.tasks import ModelSource, evaluate_task, train_task
    from edgeslim.train import TrainConfig

    cfg = job.config
    entry = cfg["model"]
    data_source = _data_source(cfg["data"])
    workdir = Path(job.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    artifact = workdir / "model.pt"
    t0 = time.perf_counter()
    weights = Path(entry["weights"]) if entry.get("weights") else None
    source = ModelSource(name=entry["name"], weights=weights, num_classes=entry.get("num_classes"))
    test = data_source.load()
    if entry.get("train"):
        scratch = workdir / "train.pt"
        train_task(
            source,
            data_source,
            TrainConfig.from_dict(entry["train"]),
            out=scratch,
            validate=False,
            num_threads=job.threads,
            progress=False,
        )
        model, _ = load_model_from_checkpoint(scratch)
        spec = model_spec(model) or {"name": entry["name"], "kwargs": {}}
    else:
        model, spec = source.build(default_num_classes=test.num_classes)
    save_checkpoint(artifact, model, model_name=spec["name"], model_kwargs=spec["kwargs"])
    (workdir / "train.pt").unlink(missing_ok=True)
    train_s = time.perf_counter() - t0
    measured = evaluate_task(
        ModelSource(checkpoint=artifact), data_source, num_threads=job.threads, progress=False
    )
    input_size = tuple(int(s) for s in test.images.shape[1:])
    t1 = time.perf_counter()
    measurements = _measure_runtimes(job, measured, artifact, input_size, onnx=None)
    metrics = _metrics(job, measured, measurements, rate=None, input_size=input_size)
    metrics["finetune_epochs"] = 0
    metrics["train_epochs"] = int(entry["train"]["epochs"]) if entry.get("train") else 0
    return TrialOutput(
        metrics=metrics,
        measurements=[m.to_dict() for m in measurements],
        artifact=str(artifact),
        timings={"build_s": train_s, "measure_s": time.perf_counter() - t1},
    )


def _prune(job: TrialJob) -> TrialOutput:
    from edgeslim.config import config_from_dict
    from edgeslim.select import LayerSelection
    from edgeslim.tasks import ModelSource, prune_task
    from edgeslim.train import TrainConfig

    cfg = job.config
    baseline = job.baseline or {}
    out = Path(job.workdir) / "model.pt"
    finetune = TrainConfig.from_dict(cfg["finetune"]) if cfg.get("finetune") else None
    t0 = time.perf_counter()
    outcome = prune_task(
        ModelSource(checkpoint=Path(baseline["artifact"])),
        config_from_dict(cfg["compression"]),  # type: ignore[arg-type]  # a pruning config by construction
        out=out,
        select=LayerSelection.from_dict(cfg["layers"]),
        data_source=_data_source(cfg["data"]),
        finetune=finetune,
        latency_batch_sizes=(),
        num_threads=job.threads,
        progress=False,
        measure_before=False,
    )
    compress_s = time.perf_counter() - t0
    r = outcome.report
    measured = Measurement(
        model=cfg["model"]["name"],
        artifact=str(out),
        params=r.params_after,
        nonzero_params=r.nonzero_after,
        macs=r.macs_after,
        size_bytes=outcome.size_bytes,
        top1=outcome.top1_after,
        notes=outcome.notes,
        extra={"sparsity": r.sparsity, "prune_report_param_reduction": r.param_reduction_ratio},
    )
    input_size = tuple(baseline["metrics"]["input_size"])
    t1 = time.perf_counter()
    measurements = _measure_runtimes(job, measured, out, input_size, onnx=None)
    metrics = _metrics(job, measured, measurements, rate=float(cfg["params"]["ratio"]), input_size=input_size)
    metrics["sparsity"] = r.sparsity
    metrics["finetune_epochs"] = outcome.finetune_epochs
    return TrialOutput(
        metrics=metrics,
        measurements=[m.to_dict() for m in measurements],
        artifact=str(out),
        timings={"compress_s": compress_s, "measure_s": time.perf_counter() - t1},
    )


def _dynamic_int8_model(artifact: str, config: Any) -> nn.Module | None:
    """torch's real int8 dynamic kernels for the baseline (8-bit only), to time what deploys."""
    from edgeslim.models import load_model_from_checkpoint
    from edgeslim.quantization import DynamicQuant, quantize

    if config.bits != 8:
        return None
    model, _ = load_model_from_checkpoint(artifact)
    return quantize(model, DynamicQuant(bits=8, per_channel=config.per_channel, engine="torch")).model


def _quantize(job: TrialJob) -> TrialOutput:
    from edgeslim.config import config_from_dict
    from edgeslim.quantization import DynamicQuant
    from edgeslim.tasks import ModelSource, quantize_task
    from edgeslim.train import TrainConfig

    cfg = job.config
    baseline = job.baseline or {}
    base = baseline["metrics"]
    out = Path(job.workdir) / "model.pt"
    compression = config_from_dict(cfg["compression"])
    t0 = time.perf_counter()
    outcome = quantize_task(
        ModelSource(checkpoint=Path(baseline["artifact"])),
        compression,  # type: ignore[arg-type]  # a quantization config by construction
        out=out,
        data_source=_data_source(cfg["data"]),
        qat_training=TrainConfig.from_dict(cfg["finetune"]) if cfg.get("finetune") else None,
        num_threads=job.threads,
        progress=False,
    )
    compress_s = time.perf_counter() - t0
    deployed = outcome.top1_deployed is not None
    measured = Measurement(
        model=cfg["model"]["name"],
        artifact=str(outcome.packed_path),
        runtime=outcome.runtime if deployed else "torch",
        precision=f"int{outcome.bits}",
        simulated=not deployed,
        params=base["params"],  # quantization stores the same parameters in fewer bits
        nonzero_params=base["nonzero_params"],
        macs=base["macs"],
        size_bytes=outcome.size_bytes,
        top1=outcome.top1_deployed if deployed else outcome.top1_simulated,
        notes=outcome.notes,
        extra={"top1_simulated": outcome.top1_simulated, "executed_bits": outcome.executed_bits},
    )
    input_size = tuple(base["input_size"])
    t1 = time.perf_counter()
    torch_model = (
        _dynamic_int8_model(baseline["artifact"], compression)
        if isinstance(compression, DynamicQuant)
        else None
    )
    measurements = _measure_runtimes(
        job, measured, None, input_size, onnx=outcome.onnx_path, torch_model=torch_model
    )
    metrics = _metrics(job, measured, measurements, rate=None, input_size=input_size)
    metrics["bits"] = outcome.bits
    metrics["top1_simulated"] = outcome.top1_simulated
    metrics["finetune_epochs"] = int(cfg["finetune"]["epochs"]) if cfg.get("finetune") else 0
    return TrialOutput(
        metrics=metrics,
        measurements=[m.to_dict() for m in measurements],
        artifact=str(outcome.packed_path),
        timings={"compress_s": compress_s, "measure_s": time.perf_counter() - t1},
    )


def _measure_runtimes(
    job: TrialJob,
    measured: Measurement,
    checkpoint: Path | None,
    input_size: tuple[int, ...],
    *,
    onnx: Path | None,
    torch_model: nn.Module | None = None,
) -> list[Measurement]:
    """One Measurement per runtime in ``measure.runtimes`` (with a note where one does not apply).

    ``checkpoint`` is a float model torch can run (None for quantized artifacts); ``onnx`` an ONNX
    file already written (the QDQ int8 export), else the checkpoint is exported for onnxruntime.
    """
    spec = job.config["measure"]
    want_latency = "latency" in spec["metrics"]
    want_memory = "memory" in spec["metrics"]
    batch_sizes = tuple(spec["batch_sizes"])
    out: list[Measurement] = []
    for runtime in spec["runtimes"]:
        if runtime == "torch":
            out.append(
                _torch_runtime(
                    job, measured, checkpoint, torch_model, input_size, batch_sizes, want_latency, want_memory
                )
            )
        elif runtime == "onnxruntime":
            out.append(
                _ort_runtime(
                    job, measured, checkpoint, onnx, input_size, batch_sizes, want_latency, want_memory
                )
            )
        else:  # validated by the experiment file; kept for a clear message if a record is replayed
            raise EdgeslimError(f"unknown runtime {runtime!r}")
    return out


def _torch_runtime(
    job: TrialJob,
    measured: Measurement,
    checkpoint: Path | None,
    torch_model: nn.Module | None,
    input_size: tuple[int, ...],
    batch_sizes: tuple[int, ...],
    want_latency: bool,
    want_memory: bool,
) -> Measurement:
    from edgeslim.bench import benchmark_torch
    from edgeslim.tasks import ModelSource, bench_task

    spec = job.config["measure"]
    base = measured.replace(runtime="torch", env={})
    if torch_model is not None:  # dynamic int8: torch runs the real quantized kernels
        bench = benchmark_torch(
            torch_model,
            input_size,
            batch_sizes=batch_sizes,
            threads=job.threads,
            warmup=spec["warmup"],
            runs=spec["latency_runs"],
            measure_memory=want_memory,
        )
        return base.replace(
            top1=measured.top1,
            latency=bench.latency if want_latency else {},
            peak_rss_bytes=bench.peak_rss_bytes,
        )
    if checkpoint is None:
        return base.replace(
            top1=None if measured.runtime != "torch" else measured.top1,
            notes=(
                *measured.notes,
                "not measured on torch: this quantized model runs in torch only as a simulation "
                "(fake quantization); its deployed latency is the onnxruntime measurement",
            ),
        )
    if not (want_latency or want_memory):
        return base
    bench = bench_task(
        ModelSource(checkpoint=checkpoint),
        batch_sizes=batch_sizes if want_latency else (max(batch_sizes),),
        input_size=(input_size[0], input_size[1], input_size[2]),
        num_threads=job.threads,
        warmup=spec["warmup"],
        runs=spec["latency_runs"] if want_latency else 1,
    )
    return base.replace(
        latency=bench.latency if want_latency else {},
        peak_rss_bytes=bench.peak_rss_bytes if want_memory else None,
        extra={
            **measured.extra,
            **{k: v for k, v in bench.extra.items() if k.startswith(("rss", "threads"))},
        },
    )


def _ort_runtime(
    job: TrialJob,
    measured: Measurement,
    checkpoint: Path | None,
    onnx: Path | None,
    input_size: tuple[int, ...],
    batch_sizes: tuple[int, ...],
    want_latency: bool,
    want_memory: bool,
) -> Measurement:
    import numpy as np
    import torch

    from edgeslim.export.onnx import check_parity, export_onnx, ort_latency, ort_session
    from edgeslim.models import load_model_from_checkpoint

    spec = job.config["measure"]
    base = measured.replace(runtime="onnxruntime", env={})
    extra = dict(measured.extra)
    notes = list(measured.notes)
    if onnx is None:
        if checkpoint is None:
            return base.replace(
                top1=None,
                size_bytes=None,
                notes=(*notes, "not measured on onnxruntime: this method writes no ONNX artifact"),
            )
        model, _ = load_model_from_checkpoint(checkpoint)
        onnx = Path(job.workdir) / "model.onnx"
        export = export_onnx(model, onnx, input_size=input_size)
        session = ort_session(onnx, threads=job.threads)
        parity = check_parity(
            model, session, torch.randn(8, *input_size, generator=torch.Generator().manual_seed(0))
        )
        extra["onnx_exporter"] = export.exporter
        extra["onnx_parity_max_abs_diff"] = parity.max_abs_diff
        notes.append("accuracy measured in torch on the same FP32 weights (ONNX parity checked)")
    else:
        session = ort_session(onnx, threads=job.threads)
    latency = (
        ort_latency(session, input_size, batch_sizes, warmup=spec["warmup"], runs=spec["latency_runs"])
        if want_latency
        else {}
    )
    peak = None
    if want_memory:
        name = session.get_inputs()[0].name
        x = np.random.default_rng(0).standard_normal((max(batch_sizes), *input_size)).astype(np.float32)
        memory = measure_peak_rss(lambda: session.run(None, {name: x}))
        peak = memory.peak_rss_bytes
        extra["rss_increase_bytes"] = memory.increase_bytes
    return base.replace(
        artifact=str(onnx),
        size_bytes=file_size_bytes(onnx),
        latency=latency,
        peak_rss_bytes=peak,
        notes=tuple(notes),
        extra=extra,
    )


def _metrics(
    job: TrialJob,
    measured: Measurement,
    measurements: list[Measurement],
    *,
    rate: float | None,
    input_size: tuple[int, ...],
) -> dict[str, Any]:
    """The flat summary reports use: the primary (first) runtime's figures against the baseline."""
    cfg = job.config
    primary = measurements[0] if measurements else measured
    base = (job.baseline or {}).get("metrics") if job.kind != "baseline" else None
    top1 = primary.top1 if primary.top1 is not None else measured.top1
    size = primary.size_bytes if primary.size_bytes is not None else measured.size_bytes
    smallest = min(primary.latency) if primary.latency else None
    metrics: dict[str, Any] = {
        "model": cfg["model"]["label"],
        "model_name": cfg["model"]["name"],
        "family": cfg.get("family", "baseline"),
        "method": cfg.get("method", "baseline"),
        "rate": rate,
        "runtime": primary.runtime,
        "input_size": list(input_size),
        "top1": top1,
        "params": measured.params,
        "nonzero_params": measured.nonzero_params,
        "macs": measured.macs,
        "size_bytes": size,
        "latency_ms": primary.latency[smallest].median_ms if smallest is not None else None,
        "latency_p90_ms": primary.latency[smallest].p90_ms if smallest is not None else None,
        "latency_batch_size": smallest,
        "latency_ms_by_batch": {str(b): s.median_ms for b, s in sorted(primary.latency.items())},
        "peak_rss_bytes": primary.peak_rss_bytes,
    }
    if base is not None:
        metrics["baseline_top1"] = base.get("top1")
        metrics["top1_drop"] = None if top1 is None or base.get("top1") is None else base["top1"] - top1
        nz, base_nz = measured.nonzero_params, base.get("nonzero_params")
        metrics["param_reduction_ratio"] = 1.0 - nz / base_nz if nz is not None and base_nz else None
        macs, base_macs = measured.macs, base.get("macs")
        metrics["mac_reduction"] = base_macs / macs if macs and base_macs else None
        metrics["baseline_size_bytes"] = base.get("size_bytes")
        metrics["baseline_latency_ms"] = base.get("latency_ms")
    else:
        metrics.update(
            baseline_top1=top1,
            top1_drop=0.0,
            param_reduction_ratio=0.0,
            mac_reduction=1.0,
            baseline_size_bytes=size,
            baseline_latency_ms=metrics["latency_ms"],
        )
    return metrics
