"""A hand-built sweep in the engine's record shape: two models, pruning at three rates, one int8 trial,
one failure and one trial that never ran. Each trial is a chain start -> (compress) -> measure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeslim.bench import LatencyStats, Measurement
from edgeslim.engine.records import TrialResult, trial_results
from edgeslim.engine.store import Store
from edgeslim.methods import method_config

# name, model, family, method, rate, top1, latency ms, size bytes, nonzero params
TRIALS: list[tuple[str, str, str, str, float | None, float, float | None, int, int]] = [
    ("a/baseline", "a", "baseline", "baseline", None, 91.0, 2.0, 1_000_000, 1000),
    ("a/l1 ratio=0.2", "a", "prune", "l1", 0.2, 90.5, 1.6, 700_000, 700),
    ("a/l1 ratio=0.4", "a", "prune", "l1", 0.4, 89.0, 1.2, 450_000, 450),
    ("a/l1 ratio=0.6", "a", "prune", "l1", 0.6, 84.0, 1.3, 250_000, 250),
    ("a/static bits=8", "a", "quantize", "static", None, 90.8, 0.9, 260_000, 1000),
    ("b/baseline", "b", "baseline", "baseline", None, 93.0, 4.0, 3_000_000, 3000),
    ("b/l1 ratio=0.2", "b", "prune", "l1", 0.2, 92.6, 3.1, 2_000_000, 2000),
    ("b/l1 ratio=0.4", "b", "prune", "l1", 0.4, 91.9, 2.5, 1_400_000, 1400),
]

ENV = {"hash": "abc123", "cpu_model": "test cpu", "sweep_workers": 2, "worker_threads": 1}
DATA = {
    "path": "/data",
    "source": "data",
    "train_limit": None,
    "test_limit": None,
    "val_fraction": 0.0,
    "seed": 0,
    "eval_split": "test",
}


def _stats(ms: float) -> LatencyStats:
    return LatencyStats(
        batch_size=1,
        runs=5,
        median_ms=ms,
        mean_ms=ms,
        p90_ms=ms * 1.1,
        min_ms=ms,
        max_ms=ms * 1.2,
        std_ms=0.01,
        throughput_ips=1000.0 / ms,
    )


def _config(step: dict[str, Any], trial: str | None, model: str, position: int) -> dict[str, Any]:
    labels: dict[str, Any] = {"recipe": trial or model, "position": position, "model": model}
    if trial:
        labels["trial"] = trial
    return {"step": step, "data": DATA, "labels": labels}


def measure_step() -> dict[str, Any]:
    """A measure step as stored before it had passes (and exclusive)."""
    return {
        "type": "measure",
        "name": "measure",
        "runtimes": ["torch"],
        "batch_sizes": [1],
        "runs": 5,
        "warmup": 1,
        "accuracy": True,
        "latency": True,
        "memory": "none",
    }


def _ensure_start(store: Store, exp_id: int, model: str) -> str:
    key = f"start-{model}"
    if store.trial(key, experiment_id=exp_id) is None:
        step = {
            "type": "start",
            "name": f"{model}/start",
            "model": "resnet20_tiny",
            "weights": None,
            "checkpoint": None,
            "num_classes": None,
            "train": None,
            "init": "random",
        }
        record = store.add_trial(exp_id, key, f"{model}/start", _config(step, None, model, 0), kind="start")
        store.claim_trial(record.id, "test:1")
        store.finish_trial(
            record.id,
            metrics={"artifact_kind": "checkpoint"},
            timings={"total_s": 0.5},
            env=ENV,
            artifact=f"/runs/{model}/start.pt",
        )
    return key


def add_trial(
    store: Store,
    exp_id: int,
    name: str,
    *,
    model: str,
    family: str,
    method: str,
    rate: float | None = None,
    top1: float | None = None,
    latency_ms: float | None = None,
    size_bytes: int | None = None,
    nonzero_params: int | None = None,
    params: int | None = None,
    simulated: bool = False,
    runtime: str = "torch",
    runtime_errors: dict[str, str] | None = None,
    status: str = "done",
    error: str | None = None,
    seconds: float = 1.0,
) -> None:
    """One trial chain; ``status`` "done", "failed" (the compress step failed) or "queued"."""
    parent = _ensure_start(store, exp_id, model)
    if family != "baseline":
        params_ = {"ratio": rate} if family == "prune" else {"bits": 8}
        config = method_config(family, method, params_)
        step = {
            "type": family,
            "name": f"{name} [{family}]",
            "config": config.to_dict(),
            "train": {"epochs": 1} if family == "prune" else None,
        }
        key = f"c-{name}"
        record = store.add_trial(
            exp_id, key, f"{name} [{family}]", _config(step, None, model, 1), kind=family, depends_on=parent
        )
        if status == "failed":
            store.claim_trial(record.id, "test:1")
            store.fail_trial(record.id, error or "failed")
        elif status == "done":
            store.claim_trial(record.id, "test:1")
            store.finish_trial(
                record.id,
                metrics={"artifact_kind": "checkpoint"},
                timings={"total_s": seconds},
                env=ENV,
                artifact=f"/runs/{name}.pt",
            )
        parent = key
    record = store.add_trial(
        exp_id, f"m-{name}", name, _config(measure_step(), name, model, 2), kind="measure", depends_on=parent
    )
    if status == "queued":
        return
    store.claim_trial(record.id, "test:1")
    if status == "failed":
        store.fail_trial(record.id, error or "failed")
        return
    measurements = [
        Measurement(
            model=model,
            runtime=runtime,
            simulated=simulated,
            params=params if params is not None else (1000 if model == "a" else 3000),
            nonzero_params=nonzero_params,
            macs=None if nonzero_params is None else nonzero_params * 100,
            size_bytes=size_bytes,
            top1=top1,
            latency={} if latency_ms is None else {1: _stats(latency_ms)},
        )
    ]
    for failed_runtime, why in (runtime_errors or {}).items():
        measurements.append(Measurement(model=model, runtime=failed_runtime, extra={"failed": why}))
    store.finish_trial(
        record.id,
        metrics={"top1": top1},
        measurements=[m.to_dict() for m in measurements],
        timings={"total_s": seconds},
        env=ENV,
        artifact=f"/runs/{name}.pt",
    )


def build_store(db: Path, name: str = "hand") -> None:
    """Write the hand-built trials (plus a failed one and one that never ran) as a sweep would."""
    with Store.open(db) as store:
        exp = store.create_experiment(name, {"source": "hand.yaml"})
        for i, (trial, model, family, method, rate, top1, lat, size, nonzero) in enumerate(TRIALS):
            add_trial(
                store,
                exp.id,
                trial,
                model=model,
                family=family,
                method=method,
                rate=rate,
                top1=top1,
                latency_ms=lat,
                size_bytes=size,
                nonzero_params=nonzero,
                seconds=1.0 + i,
            )
        add_trial(
            store,
            exp.id,
            "b/fpgm ratio=0.6",
            model="b",
            family="prune",
            method="fpgm",
            rate=0.6,
            status="failed",
            error="TrainingError: the loss is nan at epoch 1",
        )
        add_trial(
            store, exp.id, "b/l1 ratio=0.8", model="b", family="prune", method="l1", rate=0.8, status="queued"
        )


def records(db: Path, name: str = "hand") -> tuple[dict[str, Any], list[TrialResult]]:
    with Store.open(db) as store:
        exp = store.get_experiment(name)
        assert exp is not None
        return exp.to_dict(), trial_results(store.trials(exp.id))


def add_done(db: Path, name: str, metrics: dict[str, Any], experiment: str = "hand") -> None:
    """One more finished trial in the hand-built sweep (e.g. one with a simulated accuracy)."""
    with Store.open(db) as store:
        exp = store.get_experiment(experiment)
        assert exp is not None
        add_trial(
            store,
            exp.id,
            name,
            model=metrics["model"],
            family=metrics.get("family", "prune"),
            method=metrics.get("method", "l1"),
            rate=metrics.get("rate", 0.5),
            top1=metrics.get("top1"),
            latency_ms=metrics.get("latency_ms"),
            size_bytes=metrics.get("size_bytes"),
            nonzero_params=metrics.get("nonzero_params"),
            params=metrics.get("params"),
            simulated=bool(metrics.get("simulated")),
            runtime=metrics.get("runtime", "torch"),
            runtime_errors=metrics.get("runtime_errors"),
        )
