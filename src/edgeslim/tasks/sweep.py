"""The sweep tasks behind ``edgeslim sweep``, ``results``, ``report`` and ``recommend``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeslim.errors import ConfigError
from edgeslim.sweep.experiment import load_experiment
from edgeslim.sweep.runner import DEFAULT_DB, SweepSummary, run_sweep
from edgeslim.sweep.store import ExperimentRecord, Store, TrialRecord
from edgeslim.yaml_schema import parse_yaml

if TYPE_CHECKING:  # the report modules import matplotlib: only when a report is made
    from edgeslim.report import Recommendation, ReportFiles


def sweep_task(
    experiment_file: Path,
    *,
    db: Path = DEFAULT_DB,
    executor: str = "local",
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
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
        retry_failed=retry_failed,
        progress=progress,
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


def _load(experiment: str, db: Path) -> tuple[ExperimentRecord, list[TrialRecord]]:
    name = experiment_name(experiment)
    with _open_existing(db) as store:
        found = store.get_experiment(name)
        if found is None:
            known = ", ".join(e.name for e in store.experiments()) or "none"
            raise ConfigError(f"no experiment {name!r} in {str(db)!r} (experiments there: {known})")
        return found, store.trials(found.id)


def results_task(experiment: str, *, db: Path = DEFAULT_DB) -> dict[str, Any]:
    """Every trial record of an experiment, as plain data."""
    exp, trials = _load(experiment, db)
    return {"experiment": exp.to_dict(), "trials": [t.to_dict() for t in trials]}


def report_task(experiment: str, *, db: Path = DEFAULT_DB, out: Path = Path("report.html")) -> ReportFiles:
    """Write the self-contained HTML report and a PNG per plot."""
    from edgeslim.report import write_report

    exp, trials = _load(experiment, db)
    return write_report(exp.to_dict(), [t.to_dict() for t in trials], out)


def recommend_task(
    experiment: str,
    *,
    db: Path = DEFAULT_DB,
    max_latency_ms: float | None = None,
    max_size_mb: float | None = None,
    max_accuracy_drop: float | None = None,
    top: int = 3,
) -> Recommendation:
    """The best finished trials within the limits, with the reasons (empty ``fitting`` if none fits).

    Latency and size limits must be > 0, the accuracy drop >= 0 (checked before the store is read).
    """
    if top < 1:
        raise ConfigError(f"--top must be at least 1, got {top}")
    from edgeslim.report import Constraints, recommend, rows

    constraints = Constraints(max_latency_ms, max_size_mb, max_accuracy_drop)
    _exp, trials = _load(experiment, db)
    return recommend(rows([t.to_dict() for t in trials]), constraints, top=top)


__all__ = [
    "experiment_name",
    "recommend_task",
    "report_task",
    "results_task",
    "sweep_task",
]
