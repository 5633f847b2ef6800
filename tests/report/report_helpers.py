"""A hand-built sweep: two models, pruning at three rates, one int8 trial and one failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeslim.sweep.store import Store

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


def build_store(db: Path, name: str = "hand") -> None:
    """Write the hand-built trials (plus a failed one) as a sweep would."""
    baselines: dict[str, dict[str, Any]] = {}
    with Store.open(db) as store:
        exp = store.create_experiment(name, {"source": "hand.yaml"})
        for i, (trial, model, family, method, rate, top1, lat, size, nonzero) in enumerate(TRIALS):
            kind = "baseline" if family == "baseline" else "compress"
            record = store.add_trial(exp.id, f"k{i}", trial, {"family": family}, kind=kind)
            store.claim_trial(record.id, "test:1")
            base = baselines.get(model)
            metrics: dict[str, Any] = {
                "model": model,
                "family": family,
                "method": method,
                "rate": rate,
                "top1": top1,
                "latency_ms": lat,
                "latency_batch_size": 1,
                "runtime": "torch",
                "size_bytes": size,
                "params": 1000 if model == "a" else 3000,
                "nonzero_params": nonzero,
                "macs": nonzero * 100,
                "top1_drop": 0.0 if base is None else base["top1"] - top1,
                "param_reduction_ratio": 0.0 if base is None else 1 - nonzero / base["nonzero_params"],
                "finetune_epochs": 0 if base is None else 1,
            }
            if family == "baseline":
                baselines[model] = metrics
            store.finish_trial(
                record.id,
                metrics=metrics,
                timings={"total_s": 1.0 + i},
                env={"hash": "abc123", "cpu_model": "test cpu", "sweep_workers": 2, "worker_threads": 1},
            )
        failed = store.add_trial(exp.id, "kf", "b/fpgm ratio=0.6", {"family": "prune"})
        store.claim_trial(failed.id, "test:1")
        store.fail_trial(failed.id, "TrainingError: the loss is nan at epoch 1")
        store.add_trial(exp.id, "kq", "b/l1 ratio=0.8", {"family": "prune"})  # never ran


def records(db: Path, name: str = "hand") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with Store.open(db) as store:
        exp = store.get_experiment(name)
        assert exp is not None
        return exp.to_dict(), [t.to_dict() for t in store.trials(exp.id)]


def add_done(db: Path, name: str, metrics: dict[str, Any], experiment: str = "hand") -> None:
    """One more finished trial in the hand-built sweep (e.g. one with a simulated accuracy)."""
    with Store.open(db) as store:
        exp = store.get_experiment(experiment)
        assert exp is not None
        record = store.add_trial(exp.id, f"k-{name}", name, {"family": metrics.get("family")})
        assert store.claim_trial(record.id, "test:1")
        store.finish_trial(record.id, metrics=metrics, timings={"total_s": 1.0}, env={"hash": "abc123"})
