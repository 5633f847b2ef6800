"""The sweep tasks behind ``edgeslim sweep``, ``results``, ``report`` and ``recommend``.

:func:`run_sweep` plans the experiment's recipes (:func:`edgeslim.sweep.grid.expand`) and runs them on
the one runner (:func:`edgeslim.engine.runner.run_plan`); reports and recommendations read typed
:class:`~edgeslim.engine.records.TrialResult` records from the store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeslim.engine.estimate import (
    PlanEstimate,
    Throughput,
    estimate_plan,
    model_probe,
    probe_throughput,
    stored_records,
)
from edgeslim.engine.executors.base import Executor, default_workers, threads_per_worker
from edgeslim.engine.jobs import TrialFn, run_node
from edgeslim.engine.records import TrialResult, trial_results
from edgeslim.engine.runner import DEFAULT_DB, RunSummary, check_execution, run_plan
from edgeslim.engine.searches import SEARCH_KINDS, search_record
from edgeslim.engine.store import ExperimentRecord, Store, TrialRecord
from edgeslim.errors import ConfigError
from edgeslim.report import (
    Constraints,
    Recommendation,
    ReportFiles,
    recommend,
    rows,
    write_report,
    write_search_report,
)
from edgeslim.sweep.experiment import Experiment, load_experiment
from edgeslim.sweep.grid import expand
from edgeslim.yaml_schema import parse_yaml

#: What a sweep run reports (the runner's summary).
SweepSummary = RunSummary


def artifacts_root(experiment: Experiment, db: Path) -> Path:
    """Where trial models go: the experiment's ``artifacts``, else beside the store."""
    if experiment.artifacts:
        return Path(experiment.artifacts).expanduser().resolve()
    return (db.resolve().parent / experiment.name).resolve()


def run_sweep(
    experiment: Experiment,
    *,
    db: str | os.PathLike[str] = DEFAULT_DB,
    executor: str | Executor = "local",
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    ship_files: bool | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    trial_fn: TrialFn = run_node,
    poll_s: float = 0.2,
) -> SweepSummary:
    """Run every unfinished node of ``experiment`` and record it in the store at ``db``.

    ``workers`` defaults to the experiment's ``execution.workers``, else half the usable CPUs;
    ``threads`` (per worker) to ``execution.threads``, else the usable CPUs divided by the workers.
    ``ship_files`` (Ray) defaults to ``execution.ship_files``, else on exactly when ``address`` is
    given: trial inputs travel through Ray's object store, for clusters without a shared file system.
    """
    db_path = Path(db)
    nodes = expand(experiment)
    trials = sum(1 for n in nodes if n.labels.get("trial"))
    return run_plan(
        experiment.name,
        "sweep",
        {"source": experiment.source, "file": experiment.raw, "trials": trials},
        nodes,
        db=db_path,
        artifacts=artifacts_root(experiment, db_path),
        executor=executor,
        workers=workers or experiment.workers,
        threads=threads or experiment.threads,
        address=address,
        ship_files=experiment.ship_files if ship_files is None and executor == "ray" else ship_files,
        limits=experiment.limits,
        retry_failed=retry_failed,
        progress=progress,
        trial_fn=trial_fn,
        strict=True,
        poll_s=poll_s,
    )


def sweep_task(
    experiment_file: Path,
    *,
    db: Path = DEFAULT_DB,
    executor: str = "local",
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    ship_files: bool | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> SweepSummary:
    """Validate the experiment file, then run its unfinished trials and record them in ``db``."""
    experiment = load_experiment(experiment_file)
    return run_sweep(
        experiment,
        db=db,
        executor=executor,
        workers=workers,
        threads=threads,
        address=address,
        ship_files=ship_files,
        retry_failed=retry_failed,
        progress=progress,
    )


def dry_run_sweep(
    experiment_file: Path | Experiment,
    *,
    db: Path = DEFAULT_DB,
    workers: int | None = None,
    threads: int | None = None,
    throughput: Throughput | None = None,
) -> PlanEstimate:
    """Validate the experiment file and price its plan, running nothing and writing nothing: which
    nodes the store at ``db`` already holds, and about how long the rest would take with ``workers``
    x ``threads`` (``throughput`` default: a few-second probe of this machine at that thread count).
    Counting the images reads the dataset (it must be there, as for a real run). An experiment
    parsed already (a study's seeded copy) is priced as given."""
    experiment = (
        experiment_file if isinstance(experiment_file, Experiment) else load_experiment(experiment_file)
    )
    check_execution(workers, threads)
    n_workers = workers or experiment.workers or default_workers()
    n_threads = threads_per_worker(n_workers, threads or experiment.threads)
    nodes = expand(experiment)
    return estimate_plan(
        nodes,
        throughput=throughput or probe_throughput(n_threads),
        rate_of=None if throughput is not None else model_probe(n_threads),
        workers=n_workers,
        threads=n_threads,
        stored=stored_records(Path(db), experiment.name, (n.key for n in nodes)),
    )


def experiment_name(experiment: str) -> str:
    """An experiment name, or the ``name`` inside an experiment YAML file given by path."""
    path = Path(experiment)
    if path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        data, _ = parse_yaml(path.read_text(encoding="utf-8"), str(path))
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ConfigError(f"{path}: has no 'name'; pass the experiment's name instead")
        return data["name"]
    return experiment


def _open_existing(db: Path) -> Store:
    if not Path(db).is_file():
        raise ConfigError(
            f"no result store at {str(db)!r}: run `edgeslim sweep EXP.yaml` first, or pass --db PATH"
        )
    return Store.open(db)


def _records(experiment: str, db: Path) -> tuple[ExperimentRecord, list[TrialRecord]]:
    name = experiment_name(experiment)
    with _open_existing(db) as store:
        found = store.get_experiment(name)
        if found is None:
            known = ", ".join(e.name for e in store.experiments()) or "none"
            raise ConfigError(f"no experiment {name!r} in {str(db)!r} (experiments there: {known})")
        return found, store.trials(found.id)


def _load(experiment: str, db: Path) -> tuple[ExperimentRecord, list[TrialResult]]:
    found, records = _records(experiment, db)
    return found, trial_results(records)


def load_results(experiment: str, *, db: Path = DEFAULT_DB) -> tuple[ExperimentRecord, list[TrialResult]]:
    """An experiment's record and its typed trial results (a missing store or name: ConfigError)."""
    return _load(experiment, db)


def trial_rows(experiment: str, *, db: Path = DEFAULT_DB) -> list[dict[str, Any]]:
    """Every trial of an experiment as the flat row reports read (``TrialResult.row()``)."""
    return [r.row() for r in _load(experiment, db)[1]]


def results_task(experiment: str, *, db: Path = DEFAULT_DB) -> dict[str, Any]:
    """Every trial of an experiment (a measured chain, typed) and every raw record, as plain data; for
    a search (``edgeslim compress`` / ``nas search``) also ``candidates``, the rows its report reads."""
    exp, records = _records(experiment, db)
    data: dict[str, Any] = {
        "experiment": exp.to_dict(),
        "trials": [r.to_dict() for r in trial_results(records)],
        "records": [r.to_dict() for r in records],
    }
    if exp.kind in SEARCH_KINDS:  # a compress or nas search: its scored candidates
        data["candidates"] = [c.row() for c in search_record(exp, records).candidates]
    return data


def report_task(
    experiment: str,
    *,
    db: Path = DEFAULT_DB,
    out: Path = Path("report.html"),
    max_latency_ms: float | None = None,
    max_size_mb: float | None = None,
    max_accuracy_drop: float | None = None,
    min_speedup: float | None = None,
) -> ReportFiles:
    """Write the self-contained HTML report and a PNG per plot; a budget (any of the limits) puts the
    recommendation for it at the top of the page."""
    constraints = Constraints(max_latency_ms, max_size_mb, max_accuracy_drop, min_speedup)
    exp, records = _records(experiment, db)
    if exp.kind in SEARCH_KINDS:  # edgeslim compress / nas search: the search's own page
        if any(v is not None for v in (max_latency_ms, max_size_mb, max_accuracy_drop, min_speedup)):
            raise ConfigError(
                f"report: {exp.name!r} is a {exp.kind} search, which chose its model for its own budget; "
                "leave out --max-latency-ms/--max-size-mb/--max-accuracy-drop/--min-speedup",
                field="report.constraints",
            )
        return write_search_report(search_record(exp, records), out)
    return write_report(exp.to_dict(), trial_results(records), out, constraints=constraints)


def recommend_task(
    experiment: str,
    *,
    db: Path = DEFAULT_DB,
    max_latency_ms: float | None = None,
    max_size_mb: float | None = None,
    max_accuracy_drop: float | None = None,
    min_speedup: float | None = None,
    top: int = 3,
) -> Recommendation:
    """The best finished trials within the limits, with the reasons (empty ``fitting`` if none fits).

    Latency and size limits must be > 0, the accuracy drop >= 0 (checked before the store is read).
    """
    if top < 1:
        raise ConfigError(f"recommend_task.top must be at least 1, got {top}", field="recommend_task.top")
    constraints = Constraints(max_latency_ms, max_size_mb, max_accuracy_drop, min_speedup)
    exp, results = _load(experiment, db)
    if exp.kind in SEARCH_KINDS:
        raise ConfigError(
            f"recommend: {exp.name!r} is a {exp.kind} search, which chose its model already; see "
            f"`edgeslim report {exp.name}` (recommend picks among a sweep's or recipe's trials)",
            field="experiment",
        )
    return recommend(rows(results), constraints, top=top)


__all__ = [
    "SweepSummary",
    "artifacts_root",
    "dry_run_sweep",
    "experiment_name",
    "load_results",
    "recommend_task",
    "report_task",
    "results_task",
    "run_sweep",
    "sweep_task",
    "trial_rows",
]
