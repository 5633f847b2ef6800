"""The one runner: record a plan's nodes in the store, hand ready ones to an executor, record what ends.

Sweeps and recipes both come here (``edgeslim sweep`` with worker processes or Ray, ``edgeslim run``
inline in this process). A node is ready once the node it depends on is done and its artifact is
still on disk byte for byte (otherwise that node runs again first); if it failed, its dependents are
recorded as failed without running. Rerunning skips done nodes, runs queued ones and requeues those
left "running" by a process that no longer exists (a dead process, a pid now used by another
process, or this process itself from an interrupted earlier run); ``retry_failed`` also reruns failed
ones. While a run waits on a node another run on the same store holds, it checks that run's process
and takes the node over if it died.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeslim.engine.executors.base import Executor, default_workers
from edgeslim.engine.executors.inline import InlineExecutor
from edgeslim.engine.executors.local import LocalExecutor
from edgeslim.engine.handlers import artifact_files
from edgeslim.engine.jobs import Outcome, TrialFn, TrialJob, run_node
from edgeslim.engine.keys import sha256_files
from edgeslim.engine.plan import Node
from edgeslim.engine.progress import SweepProgress
from edgeslim.engine.store import Store, TrialRecord, owner_id
from edgeslim.errors import ConfigError
from edgeslim.yaml_schema import MAX_THREADS, max_workers

DEFAULT_DB: Path = Path("runs") / "sweeps.db"
EXECUTORS = ("inline", "local", "ray")


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """How a run ended: counts over the whole experiment and what this run did."""

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
    failures: tuple[tuple[str, str], ...] = ()  # (record name, error) of nodes that failed in this run
    #: record key -> the exception a node raised in this process (inline runs re-raise it)
    exceptions: dict[str, BaseException] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("failures", "exceptions")
        }


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-node limits (``limits`` in an experiment file): wall time and resident memory."""

    trial_timeout_s: float | None = None
    trial_memory_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "node"


def check_execution(workers: int | None, threads: int | None) -> None:
    """``workers`` (None: the default) and ``threads`` per worker within bounds, checked before the
    store or any folder is written: a million workers would spawn processes until the machine
    stops, a million threads per trial would thrash it."""
    most = max_workers()
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= most
    ):
        raise ConfigError(
            f"workers must be an integer from 1 to {most} (64, or 4 per CPU on bigger machines), "
            f"got {workers!r}",
            field="workers",
        )
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS
    ):
        raise ConfigError(
            f"executor.threads (per worker) must be an integer from 1 to {MAX_THREADS}, got {threads!r}",
            field="executor.threads",
        )


def make_executor(
    kind: str,
    workers: int,
    *,
    db: Path,
    address: str | None = None,
    threads: int | None = None,
    trial_fn: TrialFn = run_node,
    ship_files: bool | None = None,
) -> Executor:
    if kind != "ray" and address is not None:
        raise ConfigError("executor.address is for the ray executor", field="executor.address")
    if kind != "ray" and ship_files is not None:
        raise ConfigError("executor.ship_files is for the ray executor", field="executor.ship_files")
    check_execution(workers, threads)
    if kind == "inline":
        return InlineExecutor(threads=threads, trial_fn=trial_fn)
    if kind == "local":
        return LocalExecutor(workers, db_path=db, threads=threads, trial_fn=trial_fn)
    if kind == "ray":  # ray is an optional extra: imported only when asked for
        from edgeslim.engine.executors.ray import RayExecutor

        return RayExecutor(
            workers, address=address, threads=threads, trial_fn=trial_fn, ship_files=ship_files
        )
    raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, not {kind!r}", field="executor")


def intact(record: TrialRecord, root: Path | None = None) -> bool:
    """A done record whose artifact files are still on disk with the recorded sha256."""
    if record.status != "done" or not record.artifact:
        return False
    path = locate(record.artifact, root)
    files = artifact_files(path)
    if not all(f.is_file() for f in files):
        return False
    expected = record.metrics.get("artifact_sha256")
    return expected is None or sha256_files(files) == expected


def locate(artifact: str, root: Path | None) -> Path:
    """``artifact``; if the store and its artifacts folder moved together, the same file under
    today's ``root`` (node folders keep their names)."""
    path = Path(artifact)
    if path.exists() or root is None:
        return path
    moved = root / path.parent.name / path.name
    return moved if moved.exists() else path


def register(
    store: Store,
    name: str,
    kind: str,
    config: dict[str, Any],
    nodes: list[Node],
    *,
    strict: bool,
) -> int:
    """Create or reuse the experiment and add its nodes; return the experiment id.

    ``strict`` (sweeps): a stored record the plan no longer produces means the file's settings
    changed; mixing both in one report would mislead, so that is an error. Recipes keep every
    variant that was run (their steps are looked up by key).
    """
    exp = store.create_experiment(name, config, kind=kind)
    if exp.kind != kind:
        raise ConfigError(
            f"experiment {name!r} in {store.path} is a {exp.kind}, not a {kind}; give this {kind} another name"
        )
    if strict:
        keys = {n.key for n in nodes}
        orphans = [t.name for t in store.trials(exp.id) if t.key not in keys]
        if orphans:
            raise ConfigError(
                f"experiment {name!r} in {store.path} already has {len(orphans)} record(s) this file no longer "
                f"produces (e.g. {orphans[0]!r}): its settings changed. Give the experiment a new name, or "
                "use another db"
            )
    for node in nodes:
        store.add_trial(
            exp.id, node.key, node.name, node.config(), kind=node.kind, depends_on=node.depends_on
        )
    store.update_experiment(exp.id, config)
    return exp.id


def summary_line(metrics: dict[str, Any]) -> str:
    """One line of a finished node's figures, for the live view and step logs."""
    parts = []
    if metrics.get("top1") is not None:
        simulated = " (simulated)" if metrics.get("simulated") else ""
        parts.append(f"top-1 {metrics['top1']:.2f}%{simulated}")
    if metrics.get("sparsity"):
        parts.append(f"sparsity {100 * metrics['sparsity']:.1f}%")
    if metrics.get("latency_ms") is not None:
        noisy = " noisy" if metrics.get("latency_noisy") else ""
        parts.append(f"{metrics['latency_ms']:.3f} ms{noisy} (batch {metrics.get('latency_batch_size')})")
    if metrics.get("size_bytes") is not None:
        parts.append(f"{metrics['size_bytes'] / 1e6:.3f} MB")
    return ", ".join(parts)


def run_plan(
    name: str,
    kind: str,
    config: dict[str, Any],
    nodes: list[Node],
    *,
    db: str | os.PathLike[str] = DEFAULT_DB,
    artifacts: Path,
    workdir: Callable[[Node | TrialRecord], Path] | None = None,
    executor: str | Executor = "local",
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    ship_files: bool | None = None,
    limits: Limits = Limits(),
    retry_failed: bool = False,
    progress: bool = True,
    trial_fn: TrialFn = run_node,
    strict: bool = True,
    poll_s: float = 0.2,
) -> RunSummary:
    """Run every unfinished node of ``nodes`` and record it in the store at ``db``.

    ``executor`` is "inline" (this process, one node at a time), "local" (worker processes), "ray"
    or an :class:`Executor`; ``workers`` defaults to half the usable CPUs; ``threads`` (per worker)
    to the usable CPUs divided by the workers. ``ship_files`` (Ray only; default: on with
    ``address``) sends each node's inputs with it and brings its files back, for cluster nodes
    without the driver's files. ``workdir(record)`` is where a node writes (default:
    one folder per node under ``artifacts``). ``trial_fn`` replaces the job itself (benchmarks of
    the orchestration use a trivial one).
    """
    t0 = time.perf_counter()
    db_path = Path(db)
    n_workers = workers or default_workers()
    runner = (
        make_executor(
            executor,
            n_workers,
            db=db_path,
            address=address,
            threads=threads,
            trial_fn=trial_fn,
            ship_files=ship_files,
        )
        if isinstance(executor, str)
        else executor
    )
    root = artifacts
    folder = workdir or (lambda n: root / f"{slug(n.name)}-{n.key[:8]}")
    configs = {n.key: n.config() for n in nodes}  # today's paths, also for records stored by an earlier run
    owner = owner_id()
    failures: list[tuple[str, str]] = []
    exceptions: dict[str, BaseException] = {}
    with Store.open(db_path) as store:
        exp_id = register(store, name, kind, config, nodes, strict=strict)
        store.requeue_stale(exp_id)
        if retry_failed:
            for t in store.trials(exp_id, status="failed"):
                store.requeue(t.id, only_if="failed")
        _requeue_broken(store, exp_id, root)
        counts = store.counts(exp_id)
        pending = _queued(store, exp_id)
        view = SweepProgress(name, slots=runner.slots, enabled=progress and runner.name != "inline")
        view.begin(queued=len(pending), done=counts["done"], failed=counts["failed"])
        ran = 0
        in_flight: set[int] = set()  # claimed by this run and handed to the executor
        exclusive: set[int] = set()  # of those, the ones running alone (measure steps)
        started = False  # nothing to run: do not start workers (or a Ray instance) at all
        try:
            while True:
                if not pending and not runner.busy():
                    # before leaving: a node another run on this store held may have lost its owner
                    pending = _take_stale(store, exp_id, pending, in_flight, view)
                    if not pending:
                        break
                if pending and not started:
                    runner.start()
                    started = True
                pending = _dispatch(
                    store,
                    exp_id,
                    pending,
                    runner,
                    view,
                    root,
                    folder,
                    limits,
                    owner,
                    configs,
                    in_flight,
                    exclusive,
                    progress,
                )
                for event in runner.wait(poll_s):
                    in_flight.discard(event.trial_id)
                    exclusive.discard(event.trial_id)
                    record = store.trial(event.trial_id)
                    if event.outcome is not None and record is not None and record.status == "running":
                        event.outcome.record(store, event.trial_id)
                        record = store.trial(event.trial_id)
                    ran += 1
                    interrupted = event.outcome.exception if event.outcome is not None else None
                    if interrupted is not None and not isinstance(interrupted, Exception):
                        raise interrupted  # Ctrl-C in an inline run: recorded as failed, then stop
                    if record is not None:
                        if record.status == "failed":
                            failures.append((record.name, record.error or "failed"))
                            if event.outcome is not None and event.outcome.exception is not None:
                                exceptions[record.key] = event.outcome.exception
                        summary = (
                            summary_line(record.metrics) if record.status == "done" else (record.error or "")
                        )
                        view.trial_finished(event.trial_id, record.status, summary)
                if pending and not runner.busy() and not _any_ready(store, exp_id, pending):
                    # waiting on a node another run on this store holds: if that run died, take the
                    # node over instead of waiting forever
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
    return RunSummary(
        experiment=name,
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
        failures=tuple(failures),
        exceptions=exceptions,
    )


def _requeue_broken(store: Store, exp_id: int, root: Path) -> None:
    """Done nodes whose artifact is gone or changed run again, and so does every done node after them
    (their input changes with it)."""
    records = store.trials(exp_id)
    children: dict[str, list[TrialRecord]] = {}
    for r in records:
        if r.depends_on:
            children.setdefault(r.depends_on, []).append(r)
    broken = [
        r
        for r in records
        if r.status == "done" and r.kind != "measure" and r.artifact and not intact(r, root)
    ]
    seen: set[int] = set()
    while broken:
        record = broken.pop()
        if record.id in seen:
            continue
        seen.add(record.id)
        store.requeue(record.id, only_if="done")
        broken.extend(c for c in children.get(record.key, []) if c.status == "done")


def _position(record: TrialRecord) -> int:
    """Where a node stands in its recipe (the start is 0): earlier steps unblock later ones."""
    return int(record.config.get("labels", {}).get("position", 0))


def _queued(store: Store, exp_id: int) -> list[TrialRecord]:
    """Queued nodes, earliest steps first: each one unblocks the steps after it."""
    return sorted(
        store.trials(exp_id, status="queued"),
        key=_position,
    )


def _take_stale(
    store: Store, exp_id: int, pending: list[TrialRecord], in_flight: set[int], view: SweepProgress
) -> list[TrialRecord]:
    """Requeue running nodes whose owner is gone and add them (and any other queued node) to ``pending``."""
    if not store.requeue_stale(exp_id, in_flight=in_flight):
        return pending
    known = {t.id for t in pending} | in_flight
    fresh = [t for t in _queued(store, exp_id) if t.id not in known]
    view.trials_queued(len(fresh))
    return sorted([*pending, *fresh], key=_position)


def _any_ready(store: Store, exp_id: int, pending: list[TrialRecord]) -> bool:
    for record in pending:
        if record.depends_on is None:
            return True
        dep = store.trial(record.depends_on, experiment_id=exp_id)
        if dep is None or dep.status in ("done", "failed"):
            return True
    return False


def is_exclusive(record: TrialRecord) -> bool:
    """Whether the node runs alone (a measure step that asks for an exclusive slot)."""
    step = record.config.get("step") or {}
    return bool(step.get("exclusive", False))


def _dispatch(
    store: Store,
    exp_id: int,
    pending: list[TrialRecord],
    runner: Executor,
    view: SweepProgress,
    root: Path,
    folder: Callable[[Any], Path],
    limits: Limits,
    owner: str,
    configs: dict[str, dict[str, Any]],
    in_flight: set[int],
    exclusive: set[int],
    progress: bool,
) -> list[TrialRecord]:
    """Submit ready nodes while slots are free (adding their ids to ``in_flight``); return the nodes
    still waiting.

    An exclusive node (a measure step) runs alone, so what it times is not slowed by other steps of
    this run: once one is ready no new node starts; it starts when the executor is idle; nothing
    starts while it runs (``exclusive`` holds the ids of those in flight).
    """
    if exclusive & in_flight:
        return list(pending)
    waiting: list[TrialRecord] = []
    ready: list[tuple[TrialRecord, dict[str, Any] | None]] = []
    for record in pending:
        given: dict[str, Any] | None = None
        if record.depends_on is not None:
            dep = store.trial(record.depends_on, experiment_id=exp_id)
            if dep is None or dep.status == "failed":
                if store.claim_trial(record.id, owner):
                    why = dep.error if dep is not None else "missing"
                    error = f"the step before it ({dep.name if dep else record.depends_on!r}) failed: {why}"
                    Outcome.failed(error).record(store, record.id)
                    view.trial_skipped(record.name, "failed", error)
                continue
            if dep.status != "done":
                waiting.append(record)
                continue
            given = {
                "artifact": str(locate(dep.artifact, root)) if dep.artifact else None,
                "kind": dep.metrics.get("artifact_kind", "checkpoint"),
                "files": [str(locate(f, root)) for f in dep.metrics.get("files", [])],
            }
        ready.append((record, given))
    alone = next(((r, g) for r, g in ready if is_exclusive(r)), None)
    if alone is not None:  # measure first: drain the executor, then run it alone
        waiting += [r for r, _ in ready if r is not alone[0]]
        if runner.busy():
            waiting.append(alone[0])
            return waiting
        ready = [alone]
    for record, given in ready:
        if runner.busy() >= runner.slots:
            waiting.append(record)
            continue
        resume = record.attempts > 0  # an earlier attempt was interrupted or failed: reuse its files
        if not store.claim_trial(record.id, owner):
            continue  # another run on this store took it
        job = TrialJob(
            trial_id=record.id,
            key=record.key,
            name=record.name,
            kind=record.kind,
            config=configs.get(record.key, record.config),
            input=given,
            workdir=str(folder(record)),
            threads=runner.threads,
            timeout_s=limits.trial_timeout_s,
            memory_mb=limits.trial_memory_mb,
            workers=runner.slots,
            resume=resume,
            progress=progress and runner.name == "inline",
            exclusive=alone is not None,
        )
        in_flight.add(record.id)
        if alone is not None:
            exclusive.add(record.id)
        runner.submit(job)
        view.trial_started(record.id, record.name)
    return waiting


__all__ = [
    "DEFAULT_DB",
    "EXECUTORS",
    "Limits",
    "RunSummary",
    "check_execution",
    "intact",
    "make_executor",
    "register",
    "run_plan",
    "slug",
    "summary_line",
]
