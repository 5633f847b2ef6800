"""One trial: baseline -> compress -> fine-tune -> measure, built from the existing tasks.

* A **baseline** builds its model (zoo weights, or trained from scratch with :func:`train_task`),
  saves it as an edgeslim checkpoint (the artifact every trial of that model starts from and the
  size every trial is compared with), evaluates it (:func:`evaluate_task`) and measures it on each
  runtime.
* A **compress** trial runs :func:`prune_task` (pruning plus fine-tuning) or :func:`quantize_task`
  (PTQ, QAT or dynamic; deployed int8 accuracy) on the baseline artifact, then measures the result.

Runtimes, measured with :func:`edgeslim.export.benchmark_artifact`: ``torch`` (the checkpoint,
eager) and ``onnxruntime`` (the FP32 ONNX file written and parity-checked by
:func:`edgeslim.export.export`, or the QDQ int8 file that quantization wrote). Each is one
:class:`Measurement` in the record; a runtime whose export or parity check failed is a failed
measurement (``extra["failed"]``: no latency, memory or accuracy credited). Memory is the peak RSS of
a fresh process that loads the artifact, not the long-lived worker's. The flat ``metrics``
summarize the first runtime listed, which reports and recommendations use; ``metrics["simulated"]``
says the top-1 comes from a fake-quantized model in torch (the quantized model was not deployed).

:func:`execute` wraps any trial function with the thread count, time/memory limits, the NaN check,
timings and the environment fingerprint, and never raises: a failure becomes a failed
:class:`Outcome` with its error text.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from torch import nn

from edgeslim.bench import Measurement, env_fingerprint, file_size_bytes, threads
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

    def record(self, store: Any, trial_id: int) -> bool:
        """Write this outcome into ``store`` (an :class:`edgeslim.sweep.store.Store`); False if the
        trial was no longer running there (requeued as stale meanwhile), so nothing was written."""
        if self.status == "done":
            return bool(
                store.finish_trial(
                    trial_id,
                    metrics=self.metrics,
                    measurements=self.measurements,
                    timings=self.timings,
                    env=self.env,
                    artifact=self.artifact,
                )
            )
        return bool(
            store.fail_trial(
                trial_id, self.error or "failed", timings=self.timings, env=self.env, traceback=self.traceback
            )
        )


TrialFn = Callable[[TrialJob], TrialOutput]


def non_finite(value: Any, prefix: str = "") -> list[str]:
    """Names of NaN or infinite numbers in ``value``: any real number (Python or NumPy), inside dicts,
    lists, tuples and :class:`Measurement` records at any depth (``a.b[2].c``)."""
    if isinstance(value, Measurement):
        value = value.to_dict()
    if isinstance(value, numbers.Real) and not isinstance(value, bool | int):
        return [] if math.isfinite(float(value)) else [prefix or "(value)"]
    bad: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            bad += non_finite(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            bad += non_finite(v, f"{prefix}[{i}]")
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
    bad = non_finite(output.metrics) + non_finite(output.measurements, "measurements")
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
    if weights is None and not entry.get("train") and entry.get("init") != "random":
        raise EdgeslimError(  # the experiment file checks this; a replayed old record may not have
            f"model {entry.get('label', entry['name'])!r} has no weights, no training and no 'init: random'"
        )
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
    if entry.get("init") == "random":
        note = "untrained: random initial weights (init: random), not a meaningful accuracy"
        measured = measured.replace(notes=(*measured.notes, note))
    measurements = _measure_runtimes(job, measured, artifact, input_size, onnx=None)
    metrics = _metrics(job, measured, measurements, rate=None, input_size=input_size)
    metrics["finetune_epochs"] = 0
    metrics["init"] = "weights" if weights is not None else ("train" if entry.get("train") else "random")
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
    metrics["top1_deployed"] = outcome.top1_deployed
    metrics["finetune_epochs"] = int(cfg["finetune"]["epochs"]) if cfg.get("finetune") else 0
    return TrialOutput(
        metrics=metrics,
        measurements=[m.to_dict() for m in measurements],
        artifact=str(outcome.packed_path),
        timings={"compress_s": compress_s, "measure_s": time.perf_counter() - t1},
    )


#: Sweep runtime names -> the names edgeslim.export uses.
_EXPORT_RUNTIME = {"torch": "torch", "onnxruntime": "ort"}

#: Parity inputs for the ONNX export of a float model (random, like edgeslim.export's default).
PARITY_IMAGES = 64


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
    A runtime that could not be measured (export or parity failure) has ``extra["failed"]`` with
    the reason, and neither latency nor accuracy.
    """
    spec = job.config["measure"]
    out: list[Measurement] = []
    for runtime in spec["runtimes"]:
        if runtime == "torch":
            out.append(_torch_runtime(job, measured, checkpoint, torch_model, input_size))
        elif runtime == "onnxruntime":
            out.append(_ort_runtime(job, measured, checkpoint, onnx, input_size))
        else:  # validated by the experiment file; kept for a clear message if a record is replayed
            raise EdgeslimError(f"unknown runtime {runtime!r}")
    return out


def _failed(base: Measurement, reason: str) -> Measurement:
    """A runtime measurement that did not happen: no latency, memory or accuracy is credited."""
    return base.replace(
        top1=None,
        latency={},
        peak_rss_bytes=None,
        notes=(*base.notes, f"not measured: {reason}"),
        extra={**base.extra, "failed": reason},
    )


def _bench_file(
    job: TrialJob, base: Measurement, path: Path, runtime: str, input_size: tuple[int, ...]
) -> Measurement:
    """Latency and memory of ``path`` on ``runtime`` through :func:`edgeslim.export.benchmark_artifact`.

    Memory (``memory`` in ``measure.metrics``) is the peak resident memory of a fresh process that
    imports the runtime, loads the file and runs one batch of the largest batch size: what deploying
    it costs, unlike the long-lived worker's resident memory, which holds earlier trials' leftovers.
    """
    from edgeslim.export.bench import benchmark_artifact

    spec = job.config["measure"]
    want_latency = "latency" in spec["metrics"]
    want_memory = "memory" in spec["metrics"]
    if not (want_latency or want_memory):
        return base
    batch_sizes = tuple(spec["batch_sizes"])
    name = _EXPORT_RUNTIME[runtime]
    try:
        comparison = benchmark_artifact(
            path,
            [name],
            input_size=input_size,
            batch_sizes=batch_sizes if want_latency else (max(batch_sizes),),
            num_threads=job.threads,
            warmup=spec["warmup"] if want_latency else 0,
            runs=spec["latency_runs"] if want_latency else 1,
            memory="process" if want_memory else "inline",
        )
    except EdgeslimError as exc:  # the file cannot be read or run there: the other runtimes still count
        return _failed(base, f"{runtime}: {exc}")
    found = comparison.measurement(name)
    if found is None:
        return _failed(base, f"{runtime}: {comparison.failed.get(name, 'no measurement')}")
    extra = {**base.extra, **{k: v for k, v in found.extra.items() if k.startswith("ort_")}}
    if want_memory:
        for key in ("rss_baseline_bytes", "rss_increase_bytes", "memory"):
            extra[key] = found.extra.get(key)
    return base.replace(
        latency=found.latency if want_latency else {},
        peak_rss_bytes=found.peak_rss_bytes if want_memory else None,
        extra=extra,
    )


def _torch_runtime(
    job: TrialJob,
    measured: Measurement,
    checkpoint: Path | None,
    torch_model: nn.Module | None,
    input_size: tuple[int, ...],
) -> Measurement:
    from edgeslim.bench import benchmark_torch

    spec = job.config["measure"]
    base = measured.replace(runtime="torch", env={})
    if torch_model is not None:  # dynamic int8: torch runs the real quantized kernels
        want_latency = "latency" in spec["metrics"]
        bench = benchmark_torch(
            torch_model,
            input_size,
            batch_sizes=tuple(spec["batch_sizes"]) if want_latency else (1,),
            threads=job.threads,
            warmup=spec["warmup"],
            runs=spec["latency_runs"] if want_latency else 1,
            measure_memory=False,
        )
        notes = measured.notes
        if "memory" in spec["metrics"]:
            notes = (
                *notes,
                "memory not measured: the dynamic int8 model exists only in memory (torch's int8 kernels), "
                "so no fresh process can load it",
            )
        return base.replace(top1=measured.top1, latency=bench.latency if want_latency else {}, notes=notes)
    if checkpoint is None:
        return base.replace(
            top1=None if measured.runtime != "torch" else measured.top1,
            notes=(
                *measured.notes,
                "not measured on torch: this quantized model runs in torch only as a simulation "
                "(fake quantization); its deployed latency is the onnxruntime measurement",
            ),
        )
    return _bench_file(job, base, checkpoint, "torch", input_size)


def _ort_runtime(
    job: TrialJob,
    measured: Measurement,
    checkpoint: Path | None,
    onnx: Path | None,
    input_size: tuple[int, ...],
) -> Measurement:
    """The ONNX file quantization wrote, or the float checkpoint exported to ONNX (parity-checked
    against torch by :func:`edgeslim.export.export`; a failed check is a failed measurement)."""
    import torch

    from edgeslim.export import export
    from edgeslim.models import load_model_from_checkpoint

    base = measured.replace(runtime="onnxruntime", env={})
    if onnx is None:
        if checkpoint is None:
            return base.replace(
                top1=None,
                size_bytes=None,
                notes=(*measured.notes, "not measured on onnxruntime: this method writes no ONNX artifact"),
            )
        model, _ = load_model_from_checkpoint(checkpoint)
        onnx = Path(job.workdir) / "model.onnx"
        inputs = torch.randn(PARITY_IMAGES, *input_size, generator=torch.Generator().manual_seed(0))
        try:
            result = export(
                model,
                "onnx",
                inputs[:2],
                out=onnx,
                parity_inputs=inputs,
                parity_source="random",
                threads=job.threads,
            )
        except EdgeslimError as exc:
            return _failed(base.replace(size_bytes=None), f"ONNX export failed: {exc}")
        parity = result.parity
        base = base.replace(
            artifact=str(result.path),
            size_bytes=result.size_bytes,
            extra={
                **base.extra,
                "onnx_exporter": result.exporter,
                "onnx_parity": None if parity is None else parity.to_dict(),
                "onnx_parity_max_abs_diff": None if parity is None else parity.max_abs_diff,
            },
        )
        if parity is None or not parity.ok:
            why = "not checked" if parity is None else parity.summary()
            return _failed(base, f"the exported ONNX file does not reproduce the model (parity {why})")
        base = base.replace(
            notes=(
                *base.notes,
                "accuracy measured in torch on the same FP32 weights; the ONNX file passed the parity "
                f"check ({parity.summary()})",
            )
        )
    else:
        base = base.replace(artifact=str(onnx), size_bytes=file_size_bytes(onnx))
    return _bench_file(job, base, onnx, "onnxruntime", input_size)


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
    failed = {m.runtime: m.extra["failed"] for m in measurements if m.extra.get("failed")}
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
        # top-1 from a fake-quantized model in torch, not from a deployed artifact
        "simulated": bool(measured.simulated),
        "top1_runtime": measured.runtime,  # where top1 was measured
    }
    if failed:
        metrics["runtime_errors"] = failed
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
