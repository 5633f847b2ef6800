"""Searches in the store: what ``edgeslim compress`` and ``edgeslim nas search`` scored, kept with sweeps.

A search is one experiment (kind ``compress`` or ``nas``) whose config holds its summary (the JSON
object the command printed, without the candidate list) and whose records are the candidates it
scored, one done record each (kind ``candidate``, ``reference`` for the baselines it compares with:
uniform-ratio plans or hand-designed nets, ``chosen`` for the one it kept). The report draws them on
the accuracy-vs-latency plane; ``edgeslim results`` lists them like trials.

    name = record_search(store, "c1", "compress", summary, candidates)   # a free name: c1, c1-2, ...
    search = load_search(store, store.get_experiment(name))             # SearchRecord
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from edgeslim.bench.latency import DEFAULT_NOISE_THRESHOLD
from edgeslim.engine.store import ExperimentRecord, FinishedEntry, Store, TrialRecord
from edgeslim.errors import ConfigError

SearchKind = Literal["compress", "nas"]
SEARCH_KINDS: tuple[str, ...] = ("compress", "nas")
Role = Literal["candidate", "reference", "chosen"]
ROLES: tuple[str, ...] = ("candidate", "reference", "chosen")


@dataclasses.dataclass(frozen=True)
class SearchCandidate:
    """One scored candidate: proxy top-1 against predicted (and, for finalists, measured) latency.

    ``plan`` says what it is (per-knob kept channels, or a subnet's depths and widths); ``top1`` is
    the fine-tuned accuracy of the chosen one (the others have only the proxy)."""

    label: str
    role: Role
    top1_proxy: float | None
    latency_ms_predicted: float
    latency_ms: float | None = None
    params: int | None = None
    macs: int | None = None
    top1: float | None = None
    plan: dict[str, Any] = dataclasses.field(default_factory=dict)
    latency_spread: float | None = None  # of the measured latency's passes ((max - min) / median)

    def row(self) -> dict[str, Any]:
        """The dict :func:`edgeslim.report.plots.search_plane` and the report's table read."""
        return {
            "label": self.label,
            "role": self.role,
            "top1_proxy": self.top1_proxy,
            "latency_ms_predicted": self.latency_ms_predicted,
            "latency_ms": self.latency_ms,
            "latency_spread": self.latency_spread,
            "latency_noisy": self.latency_spread is not None
            and self.latency_spread > DEFAULT_NOISE_THRESHOLD,
            "params": self.params,
            "macs": self.macs,
            "top1": self.top1,
            "reference": self.label if self.role == "reference" else None,
            "plan": self.plan,
        }


@dataclasses.dataclass(frozen=True)
class SearchRecord:
    """A recorded search: its experiment (name, kind, summary) and its candidates in scoring order."""

    experiment: ExperimentRecord
    candidates: tuple[SearchCandidate, ...]

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self.experiment.config.get("summary", {}))

    @property
    def chosen(self) -> SearchCandidate | None:
        return next((c for c in self.candidates if c.role == "chosen"), None)


def _key(candidate: SearchCandidate) -> str:
    plan = json.dumps(candidate.plan, sort_keys=True, default=str)
    return hashlib.sha256(f"{candidate.role}|{candidate.label}|{plan}".encode()).hexdigest()[:24]


def free_name(store: Store, wanted: str) -> str:
    """``wanted``, or ``wanted-2``, ``wanted-3``... whichever the store does not hold yet."""
    name, n = wanted, 1
    while store.get_experiment(name) is not None:
        n += 1
        name = f"{wanted}-{n}"
    return name


def check_store(db: str | os.PathLike[str], field: str) -> None:
    """Refuse, before a search starts, a store path that cannot take its record (a folder, not a
    store, a store of an older schema); a missing file is fine (made when the search ends)."""
    path = Path(db)
    if path.exists() and not path.is_file():
        raise ConfigError(
            f"{field}: {str(path)!r} is not a file; give the path of a result store (.db)", field=field
        )
    if path.is_file():
        Store.open(path).close()  # not a store, or an older schema: ConfigError naming the file


def record_search(
    store: Store,
    name: str,
    kind: SearchKind,
    summary: dict[str, Any],
    candidates: Sequence[SearchCandidate],
    *,
    env: dict[str, Any] | None = None,
) -> str:
    """Store a finished search as a new experiment (under a free name near ``name``); return the name."""
    if kind not in SEARCH_KINDS:
        raise ConfigError(f"record_search.kind must be one of {', '.join(SEARCH_KINDS)}, not {kind!r}")
    for c in candidates:
        if c.role not in ROLES:
            raise ConfigError(f"SearchCandidate.role must be one of {', '.join(ROLES)}, not {c.role!r}")
    name = free_name(store, name)
    experiment = store.create_experiment(name, {"summary": summary}, kind=kind)
    entries = [
        FinishedEntry(
            key=_key(c),
            name=c.label,
            kind=c.role,
            config={"plan": c.plan},
            metrics={
                "top1_proxy": c.top1_proxy,
                "latency_ms_predicted": c.latency_ms_predicted,
                "latency_ms": c.latency_ms,
                "latency_spread": c.latency_spread,
                "params": c.params,
                "macs": c.macs,
                "top1": c.top1,
            },
            env=env or {},
        )
        for c in candidates
    ]
    store.add_finished(experiment.id, entries)
    return name


def load_search(store: Store, experiment: ExperimentRecord) -> SearchRecord:
    """The search ``experiment`` (of kind ``compress`` or ``nas``) with its candidates."""
    return search_record(experiment, store.trials(experiment.id))


def search_record(experiment: ExperimentRecord, records: Sequence[TrialRecord]) -> SearchRecord:
    """A search from its experiment and its records (as ``Store.trials`` returns them)."""
    if experiment.kind not in SEARCH_KINDS:
        raise ConfigError(
            f"experiment {experiment.name!r} is a {experiment.kind}, not a search (compress or nas)",
            field="experiment",
        )
    candidates = []
    for record in records:
        if record.kind not in ROLES:
            continue
        m = record.metrics
        candidates.append(
            SearchCandidate(
                label=record.name,
                role=record.kind,  # type: ignore[arg-type]  # filtered to ROLES above
                top1_proxy=m.get("top1_proxy"),
                latency_ms_predicted=float(m.get("latency_ms_predicted") or 0.0),
                latency_ms=m.get("latency_ms"),
                params=m.get("params"),
                macs=m.get("macs"),
                top1=m.get("top1"),
                plan=dict(record.config.get("plan") or {}),
                latency_spread=m.get("latency_spread"),
            )
        )
    return SearchRecord(experiment, tuple(candidates))


__all__ = [
    "ROLES",
    "SEARCH_KINDS",
    "SearchCandidate",
    "SearchKind",
    "SearchRecord",
    "check_store",
    "free_name",
    "load_search",
    "record_search",
    "search_record",
]
