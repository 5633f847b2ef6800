"""The sweep driver: store the grid, hand ready trials to an executor, record and show what ends.

A compress trial becomes ready once its model's baseline is done (if the baseline failed, its
trials are recorded as failed without running). Rerunning skips done trials, runs queued ones and
requeues those left "running" by a driver that no longer exists (a dead process, a pid now used by
another process, or this process itself from an interrupted earlier run); ``retry_failed`` also
reruns failed ones. While a sweep waits on a trial another sweep on the same store is running, it
checks that sweep's process and takes the trial over if it died.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from pathlib import Path
from typing import Any

from edgeslim.errors import ConfigError
from edgeslim.sweep.executors.base import Executor, default_workers
from edgeslim.sweep.experiment import Experiment
from edgeslim.sweep.grid import TrialSpec, expand
from edgeslim.sweep.progress import SweepProgress
from edgeslim.sweep.store import Store, TrialRecord, owner_id
from edgeslim.sweep.trial import Outcome, TrialFn, TrialJob, run_trial

DEFAULT_DB: Path = Path("runs") / "sweeps.db"


@dataclasses.dataclass(frozen=True)
class SweepSummary:
    """How a sweep run ended: counts over the whole experiment and what this run did."""

    experiment: str
    db: str
    executor: str
    workers: int
    threads: int
    total: int
    done: int
    failed: int
    skipped: int  # done before this run started
    ran: int  # finished (done or failed) during this run
    wall_s: float
    artifacts: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "trial"


def artifacts_root(experiment: Experiment, db: Path) -> Path:
    """Where trial models go: the experiment's ``artifacts``, else beside the store."""
    if experiment.artifacts:
        return Path(experiment.artifacts).expanduser().resolve()
    return (db.resolve().parent / experiment.name).resolve()


def register_trials(store: Store, experiment: Experiment, specs: list[TrialSpec]) -> int:
    """Create or reuse the experiment and add its trials; return the experiment id.

    The file may grow (new trials are added) but a stored trial that the file no longer produces
    means its settings changed; mixing both in one report would mislead, so that is an error.
    """
    config = {"source": experiment.source, "file": experiment.raw, "trials": len(specs)}
    exp = store.create_experiment(experiment.name, config, kind="sweep")
    if exp.kind != "sweep":
        raise ConfigError(f"experiment {experiment.name!r} in {store.path} is a {exp.kind}, not a sweep")
    keys = {s.key for s in specs}
    orphans = [t.name for t in store.trials(exp.id) if t.key not in keys]
    if orphans:
        raise ConfigError(
            f"experiment {experiment.name!r} in {store.path} already has {len(orphans)} trial(s) this file no "
            f"longer produces (e.g. {orphans[0]!r}): its settings changed. Give the experiment a new "
            "name, or use another --db"
        )
    for spec in specs:
        store.add_trial(exp.id, spec.key, spec.name, spec.config, kind=spec.kind, depends_on=spec.depends_on)
    store.update_experiment(exp.id, config)
    return exp.id


def make_executor(
    kind: str,
    workers: int,
    *,
    db: Path,
    address: str | None = None,
    threads: int | None = None,
    trial_fn: TrialFn = run_trial,
) -> Executor:
    if kind == "local":
        if address is not None:
            raise ConfigError("--address is for --executor ray")
        from edgeslim.sweep.executors.local import LocalExecutor

        return LocalExecutor(workers, db_path=db, threads=threads, trial_fn=trial_fn)
    if kind == "ray":
        from edgeslim.sweep.executors.ray import RayExecutor

        return RayExecutor(workers, address=address, threads=threads, trial_fn=trial_fn)
    raise ConfigError(f"--executor must be local or ray, not {kind!r}")


def _summary(outcome_metrics: dict[str, Any]) -> str:
    parts = []
    if outcome_metrics.get("top1") is not None:
        simulated = " (simulated)" if outcome_metrics.get("simulated") else ""
        parts.append(f"top-1 {outcome_metrics['top1']:.2f}%{simulated}")
    if outcome_metrics.get("latency_ms") is not None:
        parts.append(f"{outcome_metrics['latency_ms']:.2f} ms")
    if outcome_metrics.get("size_bytes") is not None:
        parts.append(f"{outcome_metrics['size_bytes'] / 1e6:.2f} MB")
    return "  ".join(parts)


def run_sweep(
    experiment: Experiment,
    *,
    db: str | os.PathLike[str] = DEFAULT_DB,
    executor: str | Executor = "local",
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    trial_fn: TrialFn = run_trial,
    poll_s: float = 0.2,
) -> SweepSummary:
    """Run every unfinished trial of ``experiment`` and record it in the store at ``db``.

    ``executor`` is "local", "ray" or an :class:`Executor`; ``workers`` defaults to the experiment's
    ``execution.workers``, else half the usable CPUs; ``threads`` (per worker) to ``execution.threads``,
    else the usable CPUs divided by the workers. ``trial_fn`` replaces the trial itself
    (benchmarks of the orchestration use a trivial one).
    """
    t0 = time.perf_counter()
    db_path = Path(db)
    specs = expand(experiment)
    n_workers = workers or experiment.workers or default_workers()
    runner = (
        make_executor(
            executor,
            n_workers,
            db=db_path,
            address=address,
            threads=threads or experiment.threads,
            trial_fn=trial_fn,
        )
        if isinstance(executor, str)
        else executor
    )
    root = artifacts_root(experiment, db_path)
    owner = owner_id()
    configs = {s.key: s.config for s in specs}  # today's paths, also for trials stored by an earlier run
    with Store.open(db_path) as store:
        exp_id = register_trials(store, experiment, specs)
        store.requeue_stale(exp_id)
        if retry_failed:
            for t in store.trials(exp_id, status="failed"):
                store.requeue(t.id, only_if="failed")
        counts = store.counts(exp_id)
        pending = _queued(store, exp_id)
        view = SweepProgress(experiment.name, slots=runner.slots, enabled=progress)
        view.begin(queued=len(pending), done=counts["done"], failed=counts["failed"])
        ran = 0
        in_flight: set[int] = set()  # claimed by this run and handed to the executor
        started = False  # nothing to run: do not start workers (or a Ray instance) at all
        try:
            while True:
                if not pending and not runner.busy():
                    # before leaving: a trial another sweep on this store held may have lost its owner
                    pending = _take_stale(store, exp_id, pending, in_flight, view)
                    if not pending:
                        break
                if pending and not started:
                    runner.start()
                    started = True
                pending = _dispatch(
                    store, exp_id, pending, runner, view, root, experiment, owner, configs, in_flight
                )
                for event in runner.wait(poll_s):
                    in_flight.discard(event.trial_id)
                    record = store.trial(event.trial_id)
                    if event.outcome is not None and record is not None and record.status == "running":
                        event.outcome.record(store, event.trial_id)
                        record = store.trial(event.trial_id)
                    ran += 1
                    if record is not None:
                        summary = (
                            _summary(record.metrics) if record.status == "done" else (record.error or "")
                        )
                        view.trial_finished(event.trial_id, record.status, summary)
                if pending and not runner.busy() and not _any_ready(store, exp_id, pending):
                    # waiting on a trial (a baseline) another sweep on this store runs: if that sweep
                    # died, take the trial over instead of waiting forever
                    before = len(pending)
                    pending = _take_stale(store, exp_id, pending, in_flight, view)
                    if len(pending) == before:
                        time.sleep(poll_s)
                view.refresh()
        finally:
            if started:
                runner.shutdown()
            view.end()
        counts = store.counts(exp_id)
    return SweepSummary(
        experiment=experiment.name,
        db=str(db_path),
        executor=runner.name,
        workers=runner.slots,
        threads=runner.threads,
        total=sum(counts.values()),
        done=counts["done"],
        failed=counts["failed"],
        skipped=view.skipped,
        ran=ran,
        wall_s=time.perf_counter() - t0,
        artifacts=str(root),
    )


def _queued(store: Store, exp_id: int) -> list[TrialRecord]:
    """Queued trials, baselines first: each one unblocks all of its model's trials."""
    return sorted(store.trials(exp_id, status="queued"), key=lambda t: t.kind != "baseline")


def _take_stale(
    store: Store, exp_id: int, pending: list[TrialRecord], in_flight: set[int], view: SweepProgress
) -> list[TrialRecord]:
    """Requeue running trials whose owner is gone and add them (and any other queued trial) to ``pending``."""
    if not store.requeue_stale(exp_id, in_flight=in_flight):
        return pending
    known = {t.id for t in pending} | in_flight
    fresh = [t for t in _queued(store, exp_id) if t.id not in known]
    view.trials_queued(len(fresh))
    return sorted([*pending, *fresh], key=lambda t: t.kind != "baseline")


def _baseline_artifact(path: str | None, root: Path) -> str | None:
    """The baseline's artifact; if the store and its artifacts folder moved together, the same file
    under today's ``root`` (trial folders keep their names)."""
    if not path or Path(path).exists():
        return path
    moved = root / Path(path).parent.name / Path(path).name
    return str(moved) if moved.exists() else path


def _any_ready(store: Store, exp_id: int, pending: list[TrialRecord]) -> bool:
    for record in pending:
        if record.depends_on is None:
            return True
        dep = store.trial(record.depends_on, experiment_id=exp_id)
        if dep is None or dep.status in ("done", "failed"):
            return True
    return False


def _dispatch(
    store: Store,
    exp_id: int,
    pending: list[TrialRecord],
    runner: Executor,
    view: SweepProgress,
    root: Path,
    experiment: Experiment,
    owner: str,
    configs: dict[str, dict[str, Any]],
    in_flight: set[int],
) -> list[TrialRecord]:
    """Submit ready trials while slots are free (adding their ids to ``in_flight``); return the
    trials still waiting."""
    waiting: list[TrialRecord] = []
    for record in pending:
        baseline: dict[str, Any] | None = None
        if record.depends_on is not None:
            dep = store.trial(record.depends_on, experiment_id=exp_id)
            if dep is None or dep.status == "failed":
                if store.claim_trial(record.id, owner):
                    why = dep.error if dep is not None else "missing"
                    error = f"its baseline {dep.name if dep else record.depends_on!r} failed: {why}"
                    Outcome.failed(error).record(store, record.id)
                    view.trial_skipped(record.name, "failed", error)
                continue
            if dep.status != "done":
                waiting.append(record)
                continue
            baseline = {"artifact": _baseline_artifact(dep.artifact, root), "metrics": dep.metrics}
        if runner.busy() >= runner.slots:
            waiting.append(record)
            continue
        if not store.claim_trial(record.id, owner):
            continue  # another sweep on this store took it
        job = TrialJob(
            trial_id=record.id,
            key=record.key,
            name=record.name,
            kind=record.kind,
            config=configs.get(record.key, record.config),
            baseline=baseline,
            workdir=str(root / f"{_slug(record.name)}-{record.key[:8]}"),
            threads=runner.threads,
            timeout_s=experiment.limits.trial_timeout_s,
            memory_mb=experiment.limits.trial_memory_mb,
            workers=runner.slots,
        )
        in_flight.add(record.id)
        runner.submit(job)
        view.trial_started(record.id, record.name)
    return waiting
