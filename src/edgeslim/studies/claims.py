"""A study's claims as typed checks over measured trial rows, each giving a verdict with its figure.

A claim in ``study.yaml`` names a check (``check: {type: drop_at_most, trial: ..., points: 1}``);
each check type is one :class:`~edgeslim.config.Config` registered under its YAML name, and
:func:`judge` evaluates it on the rows of the study's experiments (``TrialResult.row()``: top-1,
its drop from the trial's baseline, size, latency, parameter reduction ...). A check never passes by
default: a trial that is missing or failed gives ``not measured``, with why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from edgeslim.config import Config
from edgeslim.errors import ConfigError

Row = dict[str, Any]
Status = Literal["reproduced", "not reproduced", "not measured"]
#: Metrics where less is better (a "better" check compares them the other way round).
LOWER_IS_BETTER = ("latency_ms", "size_bytes", "peak_rss_bytes", "macs", "params", "nonzero_params")
METRICS = ("top1", *LOWER_IS_BETTER)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What a check found: ``status`` and the measured figure(s) behind it, in words."""

    status: Status
    measured: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHECKS: dict[str, type[Check]] = {}


def check_type(cls: type[Check]) -> type[Check]:
    """Class decorator: register a check under its ``NAME`` (what ``check.type`` says in YAML)."""
    CHECKS[cls.NAME] = cls
    return cls


@dataclasses.dataclass(frozen=True)
class Check(Config):
    NAME: ClassVar[str] = ""

    def evaluate(self, rows: Sequence[Row]) -> Verdict:
        raise NotImplementedError


def _positive(owner: Config, name: str, *, zero: bool = False) -> None:
    value = getattr(owner, name)
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise ConfigError(
            f"{type(owner).__name__}.{name} must be a finite number {bound}, got {value}",
            field=f"{type(owner).__name__}.{name}",
        )


def _metric(owner: Config, name: str = "metric") -> None:
    value = getattr(owner, name)
    if value not in METRICS:
        raise ConfigError(
            f"{type(owner).__name__}.{name} must be one of {', '.join(METRICS)}, not {value!r}",
            field=f"{type(owner).__name__}.{name}",
        )


class Missing(Exception):
    """A trial the check needs has no finished measurement."""


def _row(rows: Sequence[Row], trial: str) -> Row:
    """The row named ``trial``, or the one row its shell pattern matches (``densenet/gradual
    ratio=0.9 *``: scales that differ in a setting share one claim)."""
    found = next((r for r in rows if r["name"] == trial), None)
    if found is None:
        matches = [r for r in rows if fnmatch.fnmatchcase(r["name"], trial)]
        if len(matches) > 1:
            raise Missing(
                f"{trial!r} matches {len(matches)} trials: {', '.join(r['name'] for r in matches[:3])}"
            )
        if not matches:
            raise Missing(f"no trial {trial!r}")
        found = matches[0]
    if found["status"] != "done":
        raise Missing(f"trial {trial!r} {found['status']}: {found.get('error') or 'not finished'}")
    return found


def _value(row: Row, metric: str) -> float:
    value = row.get(metric)
    if value is None:
        raise Missing(f"trial {row['name']!r} has no {metric}")
    return float(value)


def _baseline(row: Row, metric: str) -> float:
    key = {"top1": "baseline_top1", "size_bytes": "baseline_size_bytes", "latency_ms": "baseline_latency_ms"}
    value = row.get(key.get(metric, ""))
    if value is None:
        raise Missing(f"trial {row['name']!r} has no measured baseline {metric}")
    return float(value)


def _fmt(metric: str, value: float) -> str:
    if metric == "top1":
        return f"{value:.2f}%"
    if metric == "size_bytes":
        return f"{value / 1e3:,.0f} kB"
    if metric == "latency_ms":
        return f"{value:.3f} ms"
    return f"{value:,.4g}"


def guarded(evaluate: Callable[[Any, Sequence[Row]], Verdict]) -> Callable[[Any, Sequence[Row]], Verdict]:
    """A missing or failed trial makes the verdict ``not measured`` (with why), never a pass."""

    def wrapper(self: Any, rows: Sequence[Row]) -> Verdict:
        try:
            return evaluate(self, rows)
        except Missing as exc:
            return Verdict("not measured", str(exc))

    return wrapper


def _holds(ok: bool) -> Status:
    return "reproduced" if ok else "not reproduced"


def _base(row: Row, metric: str, rows: Sequence[Row], reference: str | None) -> float:
    """The value ``row`` is compared with: its own baseline's, or the ``reference`` trial's (a chain
    recipe against the model it started from in another file, e.g. the teacher)."""
    return _baseline(row, metric) if reference is None else _value(_row(rows, reference), metric)


def _drop(trial: str, rows: Sequence[Row], reference: str | None = None) -> tuple[float, float, str]:
    """(baseline top-1, trial top-1, "a% -> b% (+d points") of one trial."""
    row = _row(rows, trial)
    base, top1 = _base(row, "top1", rows, reference), _value(row, "top1")
    return base, top1, f"{base:.2f}% -> {top1:.2f}% ({top1 - base:+.2f} points"


@check_type
@dataclasses.dataclass(frozen=True)
class DropAtMost(Check):
    """The trial's top-1 is at most ``points`` below its model's baseline, or below the
    ``reference`` trial's (accuracy kept)."""

    NAME: ClassVar[str] = "drop_at_most"
    trial: str
    points: float
    reference: str | None = None  # compare with this trial instead of the trial's baseline

    def validate(self) -> None:
        _positive(self, "points", zero=True)

    @guarded
    def evaluate(self, rows: Sequence[Row]) -> Verdict:
        base, top1, text = _drop(self.trial, rows, self.reference)
        return Verdict(_holds(base - top1 <= self.points), f"{text}; claim holds within {self.points:g})")


@check_type
@dataclasses.dataclass(frozen=True)
class DropAtLeast(Check):
    """The trial's top-1 falls at least ``points`` below its baseline (a collapse)."""

    NAME: ClassVar[str] = "drop_at_least"
    trial: str
    points: float

    def validate(self) -> None:
        _positive(self, "points")

    @guarded
    def evaluate(self, rows: Sequence[Row]) -> Verdict:
        base, top1, text = _drop(self.trial, rows)
        return Verdict(_holds(base - top1 >= self.points), f"{text}; a collapse is >= {self.points:g} lost)")


@check_type
@dataclasses.dataclass(frozen=True)
class Better(Check):
    """``trial`` beats ``than`` on ``metric`` by more than ``margin`` (higher top-1; lower latency,
    size, memory)."""

    NAME: ClassVar[str] = "better"
    trial: str
    than: str
    metric: str = "top1"
    margin: float = 0.0

    def validate(self) -> None:
        _metric(self)
        _positive(self, "margin", zero=True)

    @guarded
    def evaluate(self, rows: Sequence[Row]) -> Verdict:
        a, b = _value(_row(rows, self.trial), self.metric), _value(_row(rows, self.than), self.metric)
        gain = (b - a) if self.metric in LOWER_IS_BETTER else (a - b)
        return Verdict(
            _holds(gain > self.margin),
            f"{self.metric} {_fmt(self.metric, a)} vs {_fmt(self.metric, b)} ({self.than})",
        )


@check_type
@dataclasses.dataclass(frozen=True)
class RatioAtMost(Check):
    """The trial's ``metric`` is at most ``ratio`` x its baseline's, or the ``reference`` trial's
    (smaller file, faster)."""

    NAME: ClassVar[str] = "ratio_at_most"
    trial: str
    metric: str
    ratio: float
    reference: str | None = None  # compare with this trial instead of the trial's baseline

    def validate(self) -> None:
        if self.metric not in ("size_bytes", "latency_ms"):
            raise ConfigError(
                f"RatioAtMost.metric must be size_bytes or latency_ms, not {self.metric!r}",
                field="RatioAtMost.metric",
            )
        _positive(self, "ratio")

    @guarded
    def evaluate(self, rows: Sequence[Row]) -> Verdict:
        row = _row(rows, self.trial)
        base, value = _base(row, self.metric, rows, self.reference), _value(row, self.metric)
        ratio = value / base
        return Verdict(
            _holds(ratio <= self.ratio),
            f"{_fmt(self.metric, base)} -> {_fmt(self.metric, value)} (x{ratio:.3f}; claim: <= x{self.ratio:g})",
        )


def _by_model(rows: Sequence[Row], models: Sequence[str]) -> dict[str, list[Row]]:
    """Each model's finished compressed trials that have a rate, sorted by rate."""
    out: dict[str, list[Row]] = {}
    for row in rows:
        if row["status"] == "done" and row.get("rate") is not None and (not models or row["model"] in models):
            out.setdefault(row["model"], []).append(row)
    for model in models:
        if model not in out:
            raise Missing(f"no finished trials with a rate for model {model!r}")
    if not out:
        raise Missing("no finished trials with a rate")
    return {m: sorted(r, key=lambda row: float(row["rate"])) for m, r in out.items()}


@check_type
@dataclasses.dataclass(frozen=True)
class FallsWithRate(Check):
    """For each model, top-1 does not rise with the compression rate by more than ``tolerance``
    points between neighbouring rates, and the highest rate is below the lowest."""

    NAME: ClassVar[str] = "falls_with_rate"
    models: tuple[str, ...] = ()
    tolerance: float = 1.0

    def validate(self) -> None:
        _positive(self, "tolerance", zero=True)

    @guarded
    def evaluate(self, rows: Sequence[Row]) -> Verdict:
        bad: list[str] = []
        for model, trials in _by_model(rows, self.models).items():
            top1 = [_value(r, "top1") for r in trials]
            rises = max((b - a for a, b in itertools.pairwise(top1)), default=0.0)
            if rises > self.tolerance or top1[-1] >= top1[0]:
                bad.append(f"{model} (rises {rises:.1f} points)")
        models = len(_by_model(rows, self.models))
        return Verdict(
            _holds(not bad),
            f"{models - len(bad)} of {models} models fall with the rate"
            + (f"; not: {', '.join(bad)}" if bad else ""),
        )


@check_type
@dataclasses.dataclass(frozen=True)
class LeastDrop(Check):
    """At ``rate``, ``model`` loses the least top-1 of all models."""

    NAME: ClassVar[str] = "least_drop"
    model: str
    rate: float

    @guarded
    def evaluate(self, rows: Sequence[Row]) -> Verdict:
        drops: dict[str, float] = {}
        for model, trials in _by_model(rows, ()).items():
            at = [r for r in trials if math.isclose(float(r["rate"]), self.rate, abs_tol=1e-6)]
            if at and at[0].get("top1_drop") is not None:
                drops[model] = float(at[0]["top1_drop"])
        if self.model not in drops:
            raise Missing(f"no finished trial of {self.model!r} at rate {self.rate:g}")
        best = min(drops, key=lambda m: drops[m])
        ranked = ", ".join(f"{m} {d:+.1f}" for m, d in sorted(drops.items(), key=lambda kv: kv[1]))
        return Verdict(_holds(best == self.model), f"drop at rate {self.rate:g} (points): {ranked}")


@check_type
@dataclasses.dataclass(frozen=True)
class LinearInRate(Check):
    """Parameter reduction is (``expect: true``) or is not (``false``) linear in the rate for each of
    ``models``: a straight-line fit explains at least ``r2`` of its variance."""

    NAME: ClassVar[str] = "linear_in_rate"
    models: tuple[str, ...]
    expect: bool = True
    r2: float = 0.98

    def validate(self) -> None:
        if not self.models:
            raise ConfigError("LinearInRate.models: name at least one model", field="LinearInRate.models")
        if not 0 < self.r2 < 1:
            raise ConfigError(f"LinearInRate.r2 must be in (0, 1), got {self.r2}", field="LinearInRate.r2")

    @guarded
    def evaluate(self, rows: Sequence[Row]) -> Verdict:
        found: list[str] = []
        agree = 0
        for model, trials in _by_model(rows, self.models).items():
            x = np.array([float(r["rate"]) for r in trials])
            y = np.array([_value(r, "param_reduction_ratio") for r in trials])
            if len(x) < 3:
                raise Missing(f"{model}: fewer than 3 rates")
            fit = np.polyval(np.polyfit(x, y, 1), x)
            total = float(((y - y.mean()) ** 2).sum())
            r2 = 1.0 - float(((y - fit) ** 2).sum()) / total if total > 0 else 1.0
            agree += (r2 >= self.r2) == self.expect
            found.append(f"{model} R2 {r2:.3f}")
        return Verdict(_holds(agree == len(found)), "; ".join(found))


@check_type
@dataclasses.dataclass(frozen=True)
class NotMeasurable(Check):
    """A claim this machine cannot test (a GPU, a device it does not have): always ``not measured``."""

    NAME: ClassVar[str] = "not_measurable"
    reason: str

    def evaluate(self, rows: Sequence[Row]) -> Verdict:
        return Verdict("not measured", self.reason)


#: The measured fields of a row, averaged over seeds; every other field (the trial's settings: rate,
#: bits, model, ...) is the same in every seed and kept as it is.
MEASURED = (
    *METRICS,
    "latency_p90_ms",
    "baseline_top1",
    "top1_drop",
    "param_reduction_ratio",
    "mac_reduction",
    "baseline_size_bytes",
    "baseline_latency_ms",
    "seconds",
)


def _first_by_name(rows: Sequence[Row]) -> dict[str, Row]:
    """Each name's first row (the one a check's ``trial`` finds, as :func:`_row` does)."""
    named: dict[str, Row] = {}
    for row in rows:
        named.setdefault(row["name"], row)
    return named


def mean_rows(rows_by_seed: Sequence[Sequence[Row]]) -> list[Row]:
    """One row per trial name with its measured fields averaged over the seeds. A trial that some
    seed lacks or did not finish keeps that seed's failed row (or a row saying which seeds lack it),
    and a figure one seed did not measure is left unmeasured, so a check on it is ``not measured``,
    never judged on the seeds that happened to finish."""
    seeds = [_first_by_name(rows) for rows in rows_by_seed]
    names = list(dict.fromkeys(name for named in seeds for name in named))
    out: list[Row] = []
    for name in names:
        found = [named.get(name) for named in seeds]
        lacking = [str(i) for i, row in enumerate(found) if row is None]
        present = [row for row in found if row is not None]
        unfinished = next((r for r in present if r["status"] != "done"), None)
        if unfinished is not None:
            out.append(unfinished)
        elif lacking:
            note = f"missing in seed run(s) {', '.join(lacking)} of {len(seeds)}"
            out.append({**present[0], "status": "incomplete", "error": note})
        else:
            mean = dict(present[0])
            for key in MEASURED:
                values = [row.get(key) for row in present]
                numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
                mean[key] = float(np.mean(numbers)) if len(numbers) == len(values) else None
            mean["latency_noisy"] = any(bool(row.get("latency_noisy")) for row in present)
            out.append(mean)
    return out


def evaluate_over_seeds(check: Check, rows_by_seed: Sequence[Sequence[Row]]) -> Verdict:
    """The verdict on the seeds' mean rows (so a claim that held in 1 of 3 seeds can still hold on
    the mean), its figure followed by how many seeds it held in and, for a check on one trial, the
    spread (sample standard deviation over the seeds) of the figure it checks."""
    if len(rows_by_seed) < 2:
        return check.evaluate(rows_by_seed[0] if rows_by_seed else [])
    verdict = check.evaluate(mean_rows(rows_by_seed))
    if verdict.status == "not measured":
        return verdict
    each = [check.evaluate(rows) for rows in rows_by_seed]
    held = sum(v.status == "reproduced" for v in each)
    spread = ""
    trial = getattr(check, "trial", None)
    metric = str(getattr(check, "metric", "top1"))
    if isinstance(trial, str):
        values = []
        for rows in rows_by_seed:
            with contextlib.suppress(Missing):
                values.append(_value(_row(rows, trial), metric))
        if len(values) > 1:
            sd = float(np.std(values, ddof=1))
            spread = f", top-1 sd {sd:.2f}" if metric == "top1" else f", {metric} sd {_fmt(metric, sd)}"
    seeds = len(rows_by_seed)
    return Verdict(
        verdict.status, f"{verdict.measured}; mean of {seeds} seeds{spread}, held in {held} of {seeds}"
    )


def parse_check(data: Any) -> Check:
    """``{type: NAME, ...fields}`` -> the registered check (a :class:`ConfigError` names the field)."""
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ConfigError(f"check must be a mapping with a 'type' (one of {', '.join(CHECKS)})", field="type")
    fields = dict(data)
    name = fields.pop("type")
    if name not in CHECKS:
        raise ConfigError(f"unknown check type {name!r}; known: {', '.join(CHECKS)}", field="type")
    return CHECKS[name].from_dict(fields)


__all__ = [
    "CHECKS",
    "MEASURED",
    "Better",
    "Check",
    "DropAtLeast",
    "DropAtMost",
    "FallsWithRate",
    "LeastDrop",
    "LinearInRate",
    "NotMeasurable",
    "RatioAtMost",
    "Verdict",
    "check_type",
    "evaluate_over_seeds",
    "mean_rows",
    "parse_check",
]
