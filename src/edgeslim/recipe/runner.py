"""``edgeslim run``: a recipe is planned into nodes and run by the one runner, inline in this process.

Each step is one record of the store experiment named after the recipe (kind ``"recipe"``), keyed by
:mod:`edgeslim.engine.keys` (the step's config, the data and the key of the step before it), so a
step whose settings or input changed gets a new key and runs again, and so does everything after it;
a step whose key is already done, and whose artifact is still on disk with the recorded sha256, is
kept. Failed or interrupted steps (a killed process leaves its record "running" with a dead owner)
run again; an interrupted train step goes on from its last epoch.

Artifacts go to the run folder as ``NN-<type>-<key prefix>.<ext>``, so the intermediate models of
every variant that was run are kept side by side; ``summary.json`` there lists the current chain.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeslim.data import find_or_fetch_data, is_url, url_fingerprint
from edgeslim.engine.estimate import (
    PlanEstimate,
    Throughput,
    estimate_plan,
    model_probe,
    probe_throughput,
)
from edgeslim.engine.executors.base import threads_per_worker
from edgeslim.engine.plan import Node, plan_recipe
from edgeslim.engine.runner import DEFAULT_DB, check_execution, run_plan, summary_line
from edgeslim.engine.steps import DistillStep, Recipe, StartStep
from edgeslim.engine.store import Store, TrialRecord
from edgeslim.errors import ConfigError, DataError, EdgeslimError
from edgeslim.io import atomic_write_text
from edgeslim.recipe.schema import load_recipe
from edgeslim.tasks import ModelSource
from edgeslim.tasks.recovery import Recovery


@dataclasses.dataclass(frozen=True)
class StepOutcome:
    """One step of this run: ``status`` "ran" (this run did it) or "cached" (done before, kept)."""

    index: int
    name: str
    type: str
    key: str
    status: str
    artifact: str
    metrics: dict[str, Any]
    seconds: float | None
    record_id: int
    measurements: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RecipeOutcome:
    """What ``edgeslim run`` reports: every step with its record, in order."""

    recipe: str
    source: str
    db: Path
    out_dir: Path
    experiment_id: int
    steps: tuple[StepOutcome, ...]
    seconds: float

    @property
    def ran(self) -> int:
        return sum(s.status == "ran" for s in self.steps)

    @property
    def cached(self) -> int:
        return sum(s.status == "cached" for s in self.steps)

    @property
    def final(self) -> StepOutcome:
        return self.steps[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "source": self.source,
            "db": str(self.db),
            "out_dir": str(self.out_dir),
            "experiment_id": self.experiment_id,
            "ran": self.ran,
            "cached": self.cached,
            "seconds": self.seconds,
            "artifact": self.final.artifact,
            "steps": [s.to_dict() for s in self.steps],
        }


def _log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _step_error(index: int, name: str, exc: BaseException) -> BaseException:
    """The same error with the step named (domain errors only; bugs keep their traceback)."""
    if not isinstance(exc, EdgeslimError):
        return exc
    try:
        wrapped = type(exc)(
            f"recipe step {index} ({name}) failed: {exc} - fix it and run the recipe again; finished steps are kept",
            field=exc.field,
        )
    except TypeError:
        return exc
    return wrapped


def _check_models(recipe: Recipe, nodes: list[Node], before: dict[str, TrialRecord | None]) -> None:
    """Build every model file a step still to run reads, before anything is written.

    The start's weights or checkpoint, a distill step's teacher and a fine-tune's ``teacher``
    checkpoint that do not load or do not fit (``resnet20`` with ResNet-56 weights, a state dict
    given as ``checkpoint``) then fail with exit 2 and leave no store and no empty ``recipes/NAME``
    folder behind, like any other validation error. Zoo models without a file (random init,
    trained from scratch, published weights fetched by their step) are built by their step.
    """
    classes: list[int] = []  # the data's classes, read once if a model needs them

    def default_classes() -> int:
        if not classes:
            classes.append(recipe.data.data_source().load().num_classes)
        return classes[0]

    def check(source: ModelSource, where: str) -> None:
        if source.weights is None and source.checkpoint is None:
            return
        try:
            if source.checkpoint is not None:
                source.build()
            else:
                source.build(default_num_classes=source.num_classes or default_classes())
        except EdgeslimError as exc:
            raise type(exc)(f"{recipe.source}: {where}: {exc}", field=exc.field) from None

    for position, node in enumerate(nodes):
        record = before.get(node.key)
        if record is not None and record.status == "done":
            continue
        step = node.step
        where = "model" if position == 0 else f"steps[{position - 1}]"
        if isinstance(step, StartStep):
            check(step.source(), where)
        elif isinstance(step, DistillStep):
            check(step.teacher.source(), f"{where}.teacher")
        recovery = getattr(step, "recovery", None)
        if isinstance(recovery, Recovery) and recovery.distill and recovery.teacher is not None:
            check(ModelSource(checkpoint=Path(recovery.teacher)), f"{where}.train.teacher")


def _with_data(recipe: Recipe, progress: bool) -> Recipe:
    """The recipe with its dataset found: a missing cifar10* folder is CIFAR-10 fetched in its place
    (offline: one line naming the file); no dataset at all is a :class:`DataError` on ``data.path``."""
    data = recipe.data.path
    if data is not None and is_url(data):  # listed now (it must be there), read when a step needs it
        try:
            url_fingerprint(data)
        except EdgeslimError as exc:
            raise DataError(f"{recipe.source}: data.path: {exc}", field="data.path") from None
        return recipe
    if (data is None or not Path(data).exists()) and recipe.data.source:
        fetched = find_or_fetch_data(recipe.data.source, progress=progress)
        if fetched.exists():
            data = str(fetched.resolve())
            recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, path=data))
    if data is None or not Path(data).exists():
        where = f"data.path {recipe.data.source!r}" if recipe.data.source else "$EDGESLIM_DATA"
        raise DataError(f"{recipe.source}: {where}: no dataset at {str(data)!r}", field="data.path")
    return recipe


def _stored_steps(
    db_path: Path, recipe: Recipe, nodes: list[Node], *, requeue: bool
) -> dict[str, TrialRecord | None]:
    """Each step's record in the store (None: not there). A first run creates nothing before its
    checks pass; a sweep of the same name is refused before anything is written. ``requeue``: steps
    left ``running`` by a process that is gone go back to the queue (a real run; a dry run writes
    nothing)."""
    before: dict[str, TrialRecord | None] = {n.key: None for n in nodes}
    if not db_path.is_file():
        return before
    with Store.open(db_path) as store:
        found = store.get_experiment(recipe.name)
        if found is not None and found.kind != "recipe":
            raise ConfigError(
                f"{db_path}: experiment {recipe.name!r} is a {found.kind}, not a recipe; "
                "give the recipe another 'name'"
            )
        if found is not None:
            if requeue:
                store.requeue_stale(found.id)
            before = {n.key: store.trial(n.key, experiment_id=found.id) for n in nodes}
    return before


def dry_run_recipe(
    recipe_file: Path | Recipe,
    *,
    db: Path | None = None,
    num_threads: int | None = None,
    throughput: Throughput | None = None,
) -> PlanEstimate:
    """Validate the recipe file (its dataset and every model file it reads included) and price its
    steps, running nothing and writing nothing: which steps the store already holds (they would be
    skipped) and about how long the rest would take (``throughput`` default: a short probe). A
    recipe parsed already (a study's seeded copy) is priced as given."""
    recipe = recipe_file if isinstance(recipe_file, Recipe) else load_recipe(recipe_file)
    threads = num_threads if num_threads is not None else recipe.threads
    check_execution(None, threads)
    recipe = _with_data(recipe, progress=True)
    nodes = plan_recipe(recipe)
    db_path = Path(db) if db is not None else DEFAULT_DB
    held = _stored_steps(db_path, recipe, nodes, requeue=False)
    _check_models(recipe, nodes, held)
    n_threads = threads_per_worker(1, threads)
    return estimate_plan(
        nodes,
        throughput=throughput or probe_throughput(n_threads),
        rate_of=None if throughput is not None else model_probe(n_threads),
        workers=1,
        threads=n_threads,
        stored={k: (r.status, r.timings.get("step_s")) for k, r in held.items() if r is not None},
    )


def run_recipe(
    recipe: Recipe,
    *,
    db: str | Path = DEFAULT_DB,
    out_dir: str | Path | None = None,
    num_threads: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> RecipeOutcome:
    """Run ``recipe``'s unfinished steps and record every step in the store at ``db``.

    ``out_dir`` (default: ``recipes/<name>`` beside the store) keeps every artifact;
    ``num_threads`` overrides the recipe's ``threads``. ``log`` receives one line per step
    (default: stderr when ``progress``). A failing step is recorded as failed with its error and
    the error is raised; running again resumes at that step.
    """
    started = time.perf_counter()
    db_path = Path(db)
    out = (Path(out_dir) if out_dir is not None else db_path.parent / "recipes" / recipe.name).resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"run.out_dir {str(out)!r} is a file; give a folder for the run's artifacts", field="run.out_dir"
        )
    say = log or (_log_to_stderr if progress else (lambda _: None))
    threads = num_threads if num_threads is not None else recipe.threads
    check_execution(None, threads)  # before anything is written, like every other check
    recipe = _with_data(recipe, progress)
    nodes = plan_recipe(recipe)
    before = _stored_steps(db_path, recipe, nodes, requeue=True)
    _check_models(recipe, nodes, before)
    for i, node in enumerate(nodes):
        held = before[node.key]
        if held is not None and held.status == "running":
            raise ConfigError(
                f"recipe step {i} ({node.name}) is being run by process {held.owner}; wait for it to finish "
                "(or stop it) and run again"
            )
    total = len(nodes) - 1
    for i, node in enumerate(nodes[1:], start=1):
        record = before[node.key]
        state = "done before" if record is not None and record.status == "done" else "to run"
        say(f"[{i}/{total}] {node.name}: {state}")
    out.mkdir(parents=True, exist_ok=True)
    summary = run_plan(
        recipe.name,
        "recipe",
        {"recipe": recipe.to_dict(), "chain": [n.key for n in nodes], "out_dir": str(out)},
        nodes,
        db=db_path,
        artifacts=out,
        workdir=lambda _record: out,
        executor="inline",
        threads=threads,
        retry_failed=True,  # a failed step is fixed by the user and run again
        progress=progress,
        strict=False,
    )
    outcomes: list[StepOutcome] = []
    with Store.open(db_path) as store:
        exp = store.get_experiment(recipe.name)
        assert exp is not None
        records = {n.key: store.trial(n.key, experiment_id=exp.id) for n in nodes}
    for i, node in enumerate(nodes):
        record = records[node.key]
        assert record is not None
        if record.status != "done":
            exc = summary.exceptions.get(node.key)
            if exc is not None:
                wrapped = _step_error(i, node.name, exc)
                if wrapped is exc:
                    raise exc
                raise wrapped from exc
            raise EdgeslimError(
                f"recipe step {i} ({node.name}) failed: {record.error or record.status} - fix it and run the "
                "recipe again; finished steps are kept"
            )
        was = before[node.key]
        status = (
            "cached"
            if was is not None and was.status == "done" and record.attempts == was.attempts
            else "ran"
        )
        if i == 0:  # the start (the model the recipe names): recorded, not one of the recipe's steps
            continue
        say(f"[{i}/{total}] {node.name}: {status} ({summary_line(record.metrics)})")
        outcomes.append(
            StepOutcome(
                index=i,
                name=node.name,
                type=node.kind,
                key=node.key,
                status=status,
                artifact=str(record.artifact),
                metrics=dict(record.metrics),
                measurements=list(record.measurements),
                seconds=record.timings.get("step_s"),
                record_id=record.id,
            )
        )
    outcome = RecipeOutcome(
        recipe=recipe.name,
        source=recipe.source,
        db=db_path,
        out_dir=out,
        experiment_id=exp.id,
        steps=tuple(outcomes),
        seconds=time.perf_counter() - started,
    )
    atomic_write_text(out / "summary.json", json.dumps(outcome.to_dict(), indent=2, default=str) + "\n")
    return outcome


def recipe_task(
    recipe: Path,
    *,
    db: Path | None = None,
    out_dir: Path | None = None,
    num_threads: int | None = None,
    progress: bool = True,
) -> RecipeOutcome:
    """Validate the recipe file, then run its unfinished steps, one store record per step (``edgeslim
    run``). ``db`` defaults to the sweeps' store (runs/sweeps.db); ``out_dir`` to ``recipes/<name>``
    beside it. Running again resumes at the first unfinished step (see docs/recipes.md)."""
    parsed = load_recipe(recipe)
    return run_recipe(
        parsed,
        db=db if db is not None else DEFAULT_DB,
        out_dir=out_dir,
        num_threads=num_threads,
        progress=progress,
    )
