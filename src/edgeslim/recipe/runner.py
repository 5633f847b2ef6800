"""The recipe runner: run the steps in order, record each in the result store, resume where it stopped.

Each step is one record of the store experiment named after the recipe (kind ``"recipe"``; record
kind ``"step"``, ``depends_on`` the previous step's key). A step's **key** hashes its position, its
settings, the data (path, limits, seed), the files it reads besides its input (a teacher's weights)
and the sha256 of its input: the starting model's file for the first step, the artifact the
previous step wrote for every other. So a step whose settings or input changed gets a new key and
runs again, and so does everything after it (their inputs change with it); a step whose key is
already done, and whose artifact is still on disk with the recorded sha256, is skipped. Failed or
interrupted steps (a killed process leaves its record "running" with a dead owner) run again.

Artifacts go to the run folder as ``NN-<type>-<key prefix>.<ext>``, so the intermediate models of
every variant that was run are kept side by side; ``summary.json`` there lists the current chain.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeslim.bench import env_fingerprint
from edgeslim.errors import ConfigError, DataError, EdgeslimError
from edgeslim.io import atomic_write_text
from edgeslim.recipe.schema import DistillStep, ModelRef, Recipe, Step
from edgeslim.recipe.steps import (
    StepContext,
    StepInput,
    StepResult,
    artifact_files,
    run_step,
    sha256_files,
)
from edgeslim.sweep.runner import DEFAULT_DB
from edgeslim.sweep.store import Store, TrialRecord
from edgeslim.tasks.common import ModelSource

KEY_VERSION = 1


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


def _digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _file_fingerprint(path: Path | None) -> str | None:
    return None if path is None else sha256_files([path])


def _model_fingerprint(ref: ModelRef) -> dict[str, Any]:
    """The starting model (or a teacher): zoo name and the sha256 of its file."""
    return {
        "name": ref.name,
        "num_classes": ref.num_classes,
        "weights_sha256": _file_fingerprint(ref.weights),
        "checkpoint_sha256": _file_fingerprint(ref.checkpoint),
    }


def _data_fingerprint(recipe: Recipe) -> dict[str, Any]:
    from edgeslim.data import resolve_data_path

    root = resolve_data_path(recipe.data.path)
    if not root.exists():
        where = f"data.path {recipe.data.path!r}" if recipe.data.path else "$EDGESLIM_DATA"
        raise DataError(f"{recipe.source}: {where}: no dataset at {str(root)!r}")
    return {**recipe.data.to_dict(), "path": str(root.resolve())}


def _step_files(step: Step) -> dict[str, Any]:
    """Files a step reads besides its input (they are part of its key)."""
    if isinstance(step, DistillStep):
        return {"teacher": _model_fingerprint(step.teacher)}
    return {}


def step_key(step: Step, input_fingerprint: dict[str, Any], data_fingerprint: dict[str, Any]) -> str:
    """The record key of ``step`` given what it starts from (see the module docstring)."""
    params = step.params()
    return _digest(
        {
            "key_version": KEY_VERSION,
            "position": step.index,
            "type": step.type,
            "params": params,
            "files": _step_files(step),
            "input": input_fingerprint,
            "data": data_fingerprint,
        }
    )


def _intact(record: TrialRecord) -> bool:
    """A done record whose artifact is still on disk, byte for byte."""
    if record.status != "done" or not record.artifact:
        return False
    path = Path(record.artifact)
    files = artifact_files(path)
    if not all(f.is_file() for f in files):
        return False
    return sha256_files(files) == record.metrics.get("artifact_sha256")


def _step_error(step: Step, exc: BaseException) -> BaseException:
    """The same error with the step named (domain errors only; bugs keep their traceback)."""
    if not isinstance(exc, EdgeslimError):
        return exc
    try:
        wrapped = type(exc)(
            f"recipe step {step.index} ({step.name}) failed: {exc} - fix it and run the recipe again; "
            "finished steps are kept"
        )
    except TypeError:
        return exc
    return wrapped


def _materialize_start(recipe: Recipe, data: Any, out_dir: Path, fingerprint: str) -> Path:
    """Save the starting zoo model as a checkpoint, for steps that read a file (measure)."""
    from edgeslim.checkpoint import save_checkpoint

    model, spec = recipe.model.source().build(default_num_classes=data.load("test").num_classes)
    path = out_dir / f"00-start-{fingerprint[:10]}.pt"
    if not path.is_file():
        save_checkpoint(path, model, model_name=spec["name"], model_kwargs=spec["kwargs"])
    return path


def _log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _summary(metrics: dict[str, Any]) -> str:
    parts = []
    if metrics.get("top1") is not None:
        parts.append(f"top-1 {metrics['top1']:.2f}%")
    if metrics.get("sparsity"):
        parts.append(f"sparsity {100 * metrics['sparsity']:.1f}%")
    if metrics.get("size_bytes") is not None:
        parts.append(f"{metrics['size_bytes'] / 1e6:.3f} MB")
    if metrics.get("latency_ms") is not None:
        parts.append(f"{metrics['latency_ms']:.3f} ms (batch {metrics.get('latency_batch_size')})")
    return ", ".join(parts)


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
        raise ConfigError(f"--out-dir {str(out)!r} is a file; give a folder for the run's artifacts")
    say = log or (_log_to_stderr if progress else (lambda _: None))
    threads = num_threads if num_threads is not None else recipe.threads
    data_fp = _data_fingerprint(recipe)
    data = recipe.data.source()
    start_fp = _model_fingerprint(recipe.model)
    out.mkdir(parents=True, exist_ok=True)
    outcomes: list[StepOutcome] = []
    with Store.open(db_path) as store:
        experiment = store.create_experiment(recipe.name, {"recipe": recipe.to_dict()}, kind="recipe")
        if experiment.kind != "recipe":
            raise ConfigError(
                f"{db_path}: experiment {recipe.name!r} is a {experiment.kind}, not a recipe; give the recipe "
                "another 'name'"
            )
        store.requeue_stale(experiment.id)
        current = StepInput(source=recipe.model.source(), path=None, kind="start")
        input_fp: dict[str, Any] = {"start": start_fp}
        previous_key: str | None = None
        total = len(recipe.steps)
        try:
            for step in recipe.steps:
                key = step_key(step, input_fp, data_fp)
                tag = f"[{step.index}/{total}] {step.name}"
                config = {
                    "step": step.to_dict(),
                    "position": step.index,
                    "input": {
                        "fingerprint": input_fp,
                        "path": None if current.path is None else str(current.path),
                    },
                    "data": data_fp,
                    "recipe": recipe.name,
                }
                record = store.add_trial(
                    experiment.id, key, step.name, config, kind="step", depends_on=previous_key
                )
                if _intact(record):
                    result = StepResult(
                        artifact=Path(str(record.artifact)),
                        kind=str(record.metrics.get("artifact_kind")),
                        files=tuple(Path(f) for f in record.metrics.get("files", [])),
                        metrics=record.metrics,
                    )
                    seconds = record.timings.get("seconds")
                    status = "cached"
                    say(f"{tag}: done before, kept ({_summary(record.metrics)})")
                else:
                    if record.status == "running":
                        raise ConfigError(
                            f"recipe step {step.index} ({step.name}) is being run by process {record.owner}; "
                            "wait for it to finish (or stop it) and run again"
                        )
                    resume = record.status in ("failed", "queued") and record.attempts > 0
                    if record.status != "queued":
                        store.requeue(record.id)
                    if not store.claim_trial(record.id):
                        raise ConfigError(
                            f"recipe step {step.index} ({step.name}) was taken by another process; run again later"
                        )
                    if step.type == "measure" and current.path is None:
                        path = _materialize_start(recipe, data, out, _digest(start_fp))
                        current = dataclasses.replace(current, path=path, kind="checkpoint")
                    say(f"{tag}: running")
                    ctx = StepContext(
                        input=current,
                        data=data,
                        out=out / f"{step.index:02d}-{step.type}-{key[:10]}",
                        threads=threads,
                        progress=progress,
                        resume=resume,
                    )
                    t0 = time.perf_counter()
                    try:
                        result = run_step(step, ctx)
                        digest = sha256_files(artifact_files(result.artifact))
                    except BaseException as exc:
                        store.fail_trial(
                            record.id,
                            f"{type(exc).__name__}: {exc}",
                            timings={"seconds": time.perf_counter() - t0},
                            env=env_fingerprint(),
                            traceback=traceback.format_exc(),
                        )
                        wrapped = _step_error(step, exc)
                        if wrapped is exc:
                            raise
                        raise wrapped from exc
                    seconds = time.perf_counter() - t0
                    metrics = {
                        **result.metrics,
                        "artifact_sha256": digest,
                        "artifact_kind": result.kind,
                        "files": [str(f) for f in result.files],
                    }
                    store.finish_trial(
                        record.id,
                        metrics=metrics,
                        measurements=result.measurements,
                        timings={"seconds": seconds},
                        env=env_fingerprint(),
                        artifact=str(result.artifact),
                    )
                    result = dataclasses.replace(result, metrics=metrics)
                    status = "ran"
                    say(f"{tag}: done in {seconds:.0f} s ({_summary(metrics)})")
                outcomes.append(
                    StepOutcome(
                        index=step.index,
                        name=step.name,
                        type=step.type,
                        key=key,
                        status=status,
                        artifact=str(result.artifact),
                        metrics=dict(result.metrics),
                        seconds=seconds,
                        record_id=record.id,
                    )
                )
                current = StepInput(
                    source=ModelSource(checkpoint=result.artifact), path=result.artifact, kind=result.kind
                )
                input_fp = {"sha256": result.metrics["artifact_sha256"], "kind": result.kind}
                previous_key = key
        finally:
            store.update_experiment(
                experiment.id,
                {"recipe": recipe.to_dict(), "chain": [s.key for s in outcomes], "out_dir": str(out)},
            )
    outcome = RecipeOutcome(
        recipe=recipe.name,
        source=recipe.source,
        db=db_path,
        out_dir=out,
        experiment_id=experiment.id,
        steps=tuple(outcomes),
        seconds=time.perf_counter() - started,
    )
    atomic_write_text(out / "summary.json", json.dumps(outcome.to_dict(), indent=2, default=str) + "\n")
    return outcome
