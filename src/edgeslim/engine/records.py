"""Typed results read from the store: what reports, ``recommend`` and ``edgeslim results`` use.

A **trial result** is one measure node and the chain of steps behind it: the model it started from,
the compression step (method config and its parameters), and the typed :class:`Measurement` of each
runtime. Its **baseline** is the measure node hanging directly off the same start (the uncompressed
model measured the same way), so drops and reductions are always against a measured model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from edgeslim.bench import Measurement
from edgeslim.config import config_from_dict
from edgeslim.engine.store import TrialRecord
from edgeslim.errors import EdgeslimError
from edgeslim.methods import method_of, method_params

#: The parameter that is a trial's "rate" in the plots (share of filters removed / sparsity).
RATE_PARAM = "ratio"


@dataclasses.dataclass(frozen=True)
class TrialResult:
    """One measured chain (see the module docstring); ``measurements`` in the measure step's order."""

    name: str
    key: str
    status: str
    model: str  # the label the experiment gave the model
    model_name: str
    family: str  # "baseline" | "prune" | "quantize" | "recipe"
    method: str  # the registered method name ("l1", "static", ...) or "baseline"
    params: dict[str, Any]
    measurements: tuple[Measurement, ...]
    steps: tuple[str, ...]  # the step types of the chain, start first
    error: str | None = None
    seconds: float | None = None
    finetune_epochs: int | None = None
    env: dict[str, Any] = dataclasses.field(default_factory=dict)
    baseline: TrialResult | None = None

    @property
    def kind(self) -> str:
        return "baseline" if self.family == "baseline" else "compress"

    @property
    def rate(self) -> float | None:
        value = self.params.get(RATE_PARAM)
        return float(value) if isinstance(value, int | float) and self.family == "prune" else None

    @property
    def primary(self) -> Measurement | None:
        """The first runtime the measure step names: what plots and recommendations use."""
        return self.measurements[0] if self.measurements else None

    @property
    def latency_noisy(self) -> bool:
        """Whether the latency the result reports (primary runtime, smallest batch size) is noisy: its
        timing passes spread more than the measure step's ``noise_threshold``."""
        primary = self.primary
        if primary is None or not primary.latency:
            return False
        return primary.latency[min(primary.latency)].noisy

    def accuracy_source(self) -> Measurement | None:
        """The measurement whose top-1 the result reports: the first measured on a real artifact, else
        (nothing deployed) the first simulated one, which the row marks ``simulated``."""
        real = next((m for m in self.measurements if m.top1 is not None and not m.simulated), None)
        return real or next((m for m in self.measurements if m.top1 is not None), None)

    def row(self) -> dict[str, Any]:
        """The flat row the plots, the HTML table and ``recommend`` read."""
        primary = self.primary
        acc = self.accuracy_source()
        top1 = acc.top1 if acc is not None else None
        counts = next((m for m in self.measurements if m.params is not None), primary)
        size = primary.size_bytes if primary is not None and primary.size_bytes is not None else None
        smallest = min(primary.latency) if primary is not None and primary.latency else None
        stats = primary.latency[smallest] if primary is not None and smallest is not None else None
        row: dict[str, Any] = {
            "name": self.name,
            "key": self.key,
            "kind": self.kind,
            "status": self.status,
            "model": self.model,
            "model_name": self.model_name,
            "family": self.family,
            "method": self.method,
            "rate": self.rate,
            "bits": self.params.get("bits"),
            "top1": top1,
            "simulated": bool(acc.simulated) if acc is not None else False,
            "top1_runtime": acc.runtime if acc is not None else None,
            "params": counts.params if counts is not None else None,
            "nonzero_params": counts.nonzero_params if counts is not None else None,
            "macs": counts.macs if counts is not None else None,
            "size_bytes": size,
            "latency_ms": stats.median_ms if stats is not None else None,
            "latency_p90_ms": stats.p90_ms if stats is not None else None,
            "latency_batch_size": smallest,
            "latency_passes": stats.passes if stats is not None else None,
            "latency_spread": stats.spread if stats is not None else None,
            "latency_noisy": stats.noisy if stats is not None else False,
            "noise_threshold": primary.extra.get("noise_threshold") if primary is not None else None,
            "latency_ms_by_batch": (
                {str(b): s.median_ms for b, s in sorted(primary.latency.items())} if primary else {}
            ),
            "runtime": primary.runtime if primary is not None else None,
            "peak_rss_bytes": primary.peak_rss_bytes if primary is not None else None,
            "finetune_epochs": self.finetune_epochs,
            "seconds": self.seconds,
            "runtime_errors": {
                m.runtime: m.extra["failed"] for m in self.measurements if m.extra.get("failed")
            },
            "error": self.error,
        }
        base = (
            self.baseline.row() if self.baseline is not None else (row if self.kind == "baseline" else None)
        )
        if base is None:
            row.update(
                baseline_top1=None,
                top1_drop=None,
                param_reduction_ratio=None,
                mac_reduction=None,
                baseline_size_bytes=None,
                baseline_latency_ms=None,
            )
            return row
        nz, base_nz = row["nonzero_params"], base.get("nonzero_params")
        macs, base_macs = row["macs"], base.get("macs")
        row.update(
            baseline_top1=base.get("top1"),
            top1_drop=None if top1 is None or base.get("top1") is None else base["top1"] - top1,
            param_reduction_ratio=1.0 - nz / base_nz if nz is not None and base_nz else None,
            mac_reduction=base_macs / macs if macs and base_macs else None,
            baseline_size_bytes=base.get("size_bytes"),
            baseline_latency_ms=base.get("latency_ms"),
        )
        return row

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.row(),
            "params": dict(self.params),
            "measurements": [m.to_dict() for m in self.measurements],
            "steps": list(self.steps),
        }


def _chain(record: TrialRecord, by_key: dict[str, TrialRecord]) -> list[TrialRecord]:
    chain = [record]
    while chain[-1].depends_on is not None and chain[-1].depends_on in by_key:
        chain.append(by_key[chain[-1].depends_on])
    return chain[::-1]


def _compression(chain: list[TrialRecord]) -> tuple[str, str, dict[str, Any], int | None]:
    """Family, method name, parameters and training epochs of the chain's last compression step."""
    for record in reversed(chain):
        step = record.config.get("step", {})
        if step.get("type") in ("prune", "quantize") and step.get("config"):
            try:
                config = config_from_dict(step["config"])
                spec = method_of(config)
            except EdgeslimError:
                return str(step["type"]), str(step["config"].get("type")), {}, None
            train = step.get("train") or {}
            return spec.family, spec.name, method_params(config), train.get("epochs", 0)
    return "baseline", "baseline", {}, 0


def trial_results(records: Sequence[TrialRecord]) -> list[TrialResult]:
    """One :class:`TrialResult` per measure record, baselines linked, in the store's order."""
    by_key = {r.key: r for r in records}
    results: dict[str, TrialResult] = {}
    for record in records:
        if record.kind != "measure":
            continue
        chain = _chain(record, by_key)
        labels = record.config.get("labels", {})
        start = chain[0].config.get("step", {})
        family, method, params, epochs = _compression(chain)
        if family == "baseline" and len(chain) > 2:
            family = method = "recipe"
        measurements = tuple(Measurement.from_dict(m) for m in record.measurements)
        seconds = sum(float(r.timings.get("total_s") or 0.0) for r in chain[1:]) or None
        results[record.key] = TrialResult(
            name=str(labels.get("trial") or record.name),
            key=record.key,
            status=record.status,
            model=str(labels.get("model") or start.get("model") or start.get("checkpoint") or "?"),
            model_name=str(start.get("model") or start.get("checkpoint") or "?"),
            family=family,
            method=method,
            params=params,
            measurements=measurements,
            steps=tuple(str(r.kind) for r in chain),
            error=record.error,
            seconds=seconds,
            finetune_epochs=epochs,
            env=record.env,
        )
    baselines: dict[str, TrialResult] = {}
    for key, result in results.items():
        record = by_key[key]
        if result.family == "baseline" and record.depends_on is not None:
            baselines.setdefault(record.depends_on, result)
    out = []
    for key, result in results.items():
        chain = _chain(by_key[key], by_key)
        base = baselines.get(chain[0].key)
        if result.family != "baseline" and base is not None:
            result = dataclasses.replace(result, baseline=base)
        out.append(result)
    return out


__all__ = ["TrialResult", "trial_results"]
