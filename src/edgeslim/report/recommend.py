"""Recommendation: the finished trials that fit a device's limits, best first, each with the reasons.

Limits are optional and combine: latency (ms, the record's primary runtime and smallest batch
size; > 0), speed-up over the model's baseline (its latency / the trial's, same runtime and batch
size; > 0: a budget that means the same on any machine, where milliseconds do not), size on disk
(MB = 10^6 bytes; > 0) and accuracy drop (percentage points of top-1 below the model's baseline;
>= 0). Baselines are candidates too (drop 0): sometimes no compression
is needed. Fitting trials are ranked by accuracy, then latency, then size. A trial whose accuracy
is a simulation (a quantized model that could not be deployed), whose latency is noisy (its timing
passes disagreed by more than the measure step's noise threshold) or that lacks a runtime's figures
says so in its reasons.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from edgeslim.errors import ConfigError
from edgeslim.report.plots import pareto_front


@dataclasses.dataclass(frozen=True)
class Constraints:
    """Device limits; each is optional. Latency and size limits must be > 0 (nothing takes 0 ms or
    0 bytes), the accuracy drop >= 0."""

    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    max_accuracy_drop: float | None = None
    min_speedup: float | None = None

    def __post_init__(self) -> None:
        for name, value, strict in (
            ("max_latency_ms", self.max_latency_ms, True),
            ("max_size_mb", self.max_size_mb, True),
            ("max_accuracy_drop", self.max_accuracy_drop, False),
            ("min_speedup", self.min_speedup, True),
        ):
            field = f"Constraints.{name}"
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise ConfigError(f"{field} must be a number, got {value!r}", field=field)
            if strict and not value > 0:
                raise ConfigError(
                    f"{field} must be a number > 0 (no model runs in 0), got {value:g}", field=field
                )
            if not strict and not value >= 0:
                raise ConfigError(f"{field} must be a number >= 0, got {value:g}", field=field)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _ratio(value: float, limit: float) -> float:
    """How far ``value`` passes ``limit``, relative to it (a limit of 0 cannot be met at all)."""
    return value / limit - 1 if limit > 0 else float("inf")


@dataclasses.dataclass(frozen=True)
class Choice:
    """A trial row and why it was chosen (or, for a near miss, why it does not fit)."""

    row: dict[str, Any]
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"trial": self.row, "why": list(self.reasons)}


@dataclasses.dataclass(frozen=True)
class Recommendation:
    constraints: Constraints
    fitting: tuple[Choice, ...]  # best first, at most ``top``
    num_fitting: int
    num_candidates: int
    near_misses: tuple[Choice, ...]  # when nothing fits: the closest trials and what they miss

    @property
    def found(self) -> bool:
        return bool(self.fitting)

    def to_dict(self) -> dict[str, Any]:
        return {
            "constraints": self.constraints.to_dict(),
            "found": self.found,
            "num_fitting": self.num_fitting,
            "num_candidates": self.num_candidates,
            "recommendations": [c.to_dict() for c in self.fitting],
            "near_misses": [c.to_dict() for c in self.near_misses],
        }


def _checks(row: dict[str, Any], c: Constraints) -> tuple[list[str], list[str], float]:
    """(reasons it fits, reasons it misses, how far it misses: sum of relative excesses)."""
    fits: list[str] = []
    misses: list[str] = []
    excess = 0.0
    runtime = f"{row.get('runtime') or '?'}, batch {row.get('latency_batch_size') or '?'}"
    if c.max_latency_ms is not None:
        lat = row.get("latency_ms")
        if lat is None:
            misses.append(f"latency not measured on the primary runtime ({row.get('runtime') or '?'})")
            excess += float("inf")
        elif lat <= c.max_latency_ms:
            fits.append(f"latency {lat:.2f} ms <= {c.max_latency_ms:g} ms ({runtime})")
        else:
            misses.append(f"latency {lat:.2f} ms > {c.max_latency_ms:g} ms ({runtime})")
            excess += _ratio(lat, c.max_latency_ms)
    if c.min_speedup is not None:
        lat, base = row.get("latency_ms"), row.get("baseline_latency_ms")
        if not lat or not base:
            misses.append(f"speed-up unknown: no latency for it or its baseline ({runtime})")
            excess += float("inf")
        elif base / lat >= c.min_speedup:
            fits.append(f"{base / lat:.2f}x the speed of its baseline >= {c.min_speedup:g}x ({runtime})")
        else:
            misses.append(f"{base / lat:.2f}x the speed of its baseline < {c.min_speedup:g}x ({runtime})")
            excess += c.min_speedup * lat / base - 1
    if c.max_size_mb is not None:
        size = row.get("size_bytes")
        if size is None:
            misses.append("size not measured")
            excess += float("inf")
        elif size / 1e6 <= c.max_size_mb:
            fits.append(f"size {size / 1e6:.3f} MB <= {c.max_size_mb:g} MB")
        else:
            misses.append(f"size {size / 1e6:.3f} MB > {c.max_size_mb:g} MB")
            excess += _ratio(size / 1e6, c.max_size_mb)
    if c.max_accuracy_drop is not None:
        drop = row.get("top1_drop")
        if drop is None:
            misses.append("accuracy drop unknown")
            excess += float("inf")
        elif drop <= c.max_accuracy_drop:
            fits.append(
                f"accuracy drop {drop:.2f} pp <= {c.max_accuracy_drop:g} pp (top-1 {row['top1']:.2f}%)"
            )
        else:
            misses.append(
                f"accuracy drop {drop:.2f} pp > {c.max_accuracy_drop:g} pp (top-1 {row['top1']:.2f}%)"
            )
            excess += (drop - c.max_accuracy_drop) / max(1.0, c.max_accuracy_drop)
    return fits, misses, excess


def _caveats(row: dict[str, Any]) -> list[str]:
    """What the reader must know about a row's figures."""
    out = []
    if row.get("simulated"):
        out.append(
            "caution: its top-1 is simulated (fake quantization in torch), not measured on a deployed "
            "artifact: the quantized model could not be deployed, so its real accuracy is unknown"
        )
    if row.get("latency_noisy") and row.get("latency_ms") is not None:
        spread = row.get("latency_spread")
        passes = row.get("latency_passes")
        threshold = row.get("noise_threshold")
        how = (
            f"its {passes} timing passes' medians differ by {100 * spread:.1f}% of their median"
            if spread is not None
            else "its timing passes disagree"
        )
        limit = f" (more than the {100 * threshold:g}% threshold)" if threshold is not None else ""
        out.append(
            f"caution: its latency is noisy: {how}{limit}; the machine was busy or unsteady while it was "
            "timed, so re-measure it (edgeslim bench) before relying on it"
        )
    for runtime, why in (row.get("runtime_errors") or {}).items():
        out.append(f"caution: no {runtime} figures ({why})")
    return out


def _rank_key(row: dict[str, Any]) -> tuple[float, float, float]:
    def num(key: str, missing: float) -> float:
        value = row.get(key)
        return missing if value is None else float(value)

    inf = float("inf")
    return (
        -num("top1", -inf),
        num("latency_ms", inf),
        num("size_bytes", inf),
    )


def recommend(data: Sequence[dict[str, Any]], constraints: Constraints, *, top: int = 3) -> Recommendation:
    """Rank the finished trials in ``data`` (rows from :func:`edgeslim.report.plots.rows`)."""
    candidates = [r for r in data if r.get("status") == "done" and r.get("top1") is not None]
    checked = [(r, *_checks(r, constraints)) for r in candidates]
    fitting = sorted((c for c in checked if not c[2]), key=lambda c: _rank_key(c[0]))
    fitting_rows = [c[0] for c in fitting]
    lat_points = [(r["latency_ms"], r["top1"]) for r in fitting_rows if r.get("latency_ms") is not None]
    lat_rows = [r for r in fitting_rows if r.get("latency_ms") is not None]
    lat_front = {lat_rows[i]["key"] for i in pareto_front(lat_points)}
    size_points = [(r["size_bytes"], r["top1"]) for r in fitting_rows if r.get("size_bytes") is not None]
    size_rows = [r for r in fitting_rows if r.get("size_bytes") is not None]
    size_front = {size_rows[i]["key"] for i in pareto_front(size_points)}
    chosen: list[Choice] = []
    best = fitting_rows[0] if fitting_rows else None
    for rank, (row, fits, _misses, _excess) in enumerate(fitting[:top], start=1):
        reasons = list(fits) or ["no limits given: ranked by accuracy"]
        if rank == 1:
            reasons.append(
                f"most accurate of the {len(fitting)} fitting trial(s) (of {len(candidates)} finished)"
            )
        elif best is not None:
            gap = best["top1"] - row["top1"]
            extra = ""
            if row.get("latency_ms") and best.get("latency_ms"):
                extra = f", {best['latency_ms'] / row['latency_ms']:.2f}x the speed of #1"
            if row.get("size_bytes") and best.get("size_bytes"):
                extra += f", {row['size_bytes'] / best['size_bytes']:.2f}x the size of #1"
            reasons.append(f"rank {rank}: {gap:.2f} pp below #1{extra}")
        if row["key"] in lat_front:
            reasons.append("Pareto-optimal for accuracy vs latency among fitting trials")
        if row["key"] in size_front:
            reasons.append("Pareto-optimal for accuracy vs size among fitting trials")
        if row.get("kind") == "baseline":
            reasons.append("this is the uncompressed baseline: the limits need no compression")
        reasons += _caveats(row)
        chosen.append(Choice(row, tuple(reasons)))
    near: list[Choice] = []
    if not fitting:
        closest = sorted((c for c in checked if c[2]), key=lambda c: (c[3], _rank_key(c[0])))[:top]
        near = [Choice(row, (*misses, *_caveats(row))) for row, _fits, misses, _excess in closest]
    return Recommendation(constraints, tuple(chosen), len(fitting), len(candidates), tuple(near))
