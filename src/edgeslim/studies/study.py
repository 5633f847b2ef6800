"""Reproductions of published studies: a folder per study, run through the normal engine.

A study folder holds ``study.yaml`` (what the study claimed, how each claim is checked, which
experiment or recipe files make up each scale) and those files. ``ci`` is the tiny scale the test
suite runs; ``full`` is the reported scale (CPU-feasible: what was scaled down is in its ``note``).
:func:`run_study` runs a scale's files (sweeps through :func:`~edgeslim.sweep.api.sweep_task`,
recipes through :func:`~edgeslim.recipe.recipe_task`, all into one store), and :func:`judge_study`
checks every claim on the stored measurements and writes the claims table and the HTML report.

.. code-block:: yaml

    name: dynamic-int8-small-cnn
    title: Dynamic int8 on a small CNN's linear layers
    source: a course project (CIFAR-10)
    scales:
      ci: {files: [ci.yaml], note: "1 epoch on 1,000 images"}
      full: {files: [full.yaml], note: "15 epochs on all 50,000 images", seeds: [0, 1, 2]}
    claims:
      - id: accuracy
        claim: accuracy 0.748 -> 0.747
        check: {type: drop_at_most, trial: cnn/dynamic bits=8 engine=torch, points: 0.5}

A scale with ``seeds`` runs each file once per seed (every file for one seed, then the next, so a
recipe can compare with a trial of another file of the same seed): a copy with ``data.seed`` and the
``seed`` of every ``train`` and ``finetune`` block set to it, stored as its own experiment
(``<name>-seed<N>``). Each claim is then judged on the seeds' mean figures, and says in how many
seeds it held and the spread of the figure it checks.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from edgeslim.engine.estimate import PlanEstimate
from edgeslim.engine.runner import DEFAULT_DB, RunSummary
from edgeslim.engine.store import Store
from edgeslim.errors import ConfigError
from edgeslim.io import atomic_write_text
from edgeslim.recipe import Recipe, RecipeOutcome, dry_run_recipe, load_recipe, parse_recipe, run_recipe
from edgeslim.report import write_report
from edgeslim.studies.claims import Check, Row, Verdict, evaluate_over_seeds, parse_check
from edgeslim.sweep import api as sweep_api
from edgeslim.sweep.experiment import Experiment, load_experiment, parse_experiment
from edgeslim.yaml_schema import Checker, parse_yaml

STUDY_FILE = "study.yaml"
#: The scales every study has; a study may add its own (e.g. ``imagenet``: a GPU-scale variant).
SCALES = ("ci", "full")
_SCALE_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
#: Where ``edgeslim study`` looks for study folders by default (the checkout's ``studies/``).
DEFAULT_ROOT = Path("studies")


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of the study: its words, the study's figure, and the check that tests it."""

    id: str
    claim: str
    paper: str
    check: Check


@dataclasses.dataclass(frozen=True)
class StudyRun:
    """One file run once: at the file's own seeds (``seed`` None) or at ``seed`` (a seeded copy)."""

    file: Path
    kind: str  # "sweep" | "recipe"
    experiment: str  # its name in the store
    seed: int | None


@dataclasses.dataclass(frozen=True)
class Scale:
    """A scale's files (experiments or recipes, in run order), what it scaled down and the seeds it
    repeats over (none: each file once, as written); each file's kind (``sweep`` or ``recipe``) and
    experiment name are read once, when first asked for."""

    name: str
    files: tuple[Path, ...]
    note: str
    seeds: tuple[int, ...] = ()

    @functools.cached_property
    def _kinds_and_names(self) -> tuple[tuple[str, str], ...]:
        return tuple(_kind_and_name(p) for p in self.files)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, _ in self._kinds_and_names)

    @property
    def runs(self) -> tuple[StudyRun, ...]:
        """Every run in order: each file once, or with ``seeds`` each file per seed, seed by seed."""
        pairs = tuple(zip(self.files, self._kinds_and_names, strict=True))
        if not self.seeds:
            return tuple(StudyRun(f, kind, name, None) for f, (kind, name) in pairs)
        return tuple(
            StudyRun(f, kind, seeded_name(name, seed), seed)
            for seed in self.seeds
            for f, (kind, name) in pairs
        )

    @property
    def experiments(self) -> tuple[str, ...]:
        return tuple(run.experiment for run in self.runs)


def seeded_name(name: str, seed: int) -> str:
    return f"{name}-seed{seed}"


def seeded_yaml(path: Path, seed: int) -> str:
    """``path``'s YAML with its randomness set to ``seed``: ``data.seed`` (the subset and the
    shuffles) and ``seed`` in every ``train`` and ``finetune`` block (initialization, batch order,
    augmentation), named ``<name>-seed<N>`` so each seed is its own experiment in the store."""
    seeded, _ = parse_yaml(path.read_text(encoding="utf-8"), str(path))  # a fresh copy to change
    seeded["name"] = seeded_name(str(seeded.get("name") or path.stem), seed)
    if isinstance(seeded.get("data"), dict):
        seeded["data"]["seed"] = seed
    _seed_training(seeded, seed)
    return yaml.safe_dump(seeded, sort_keys=False)


def _seed_training(node: Any, seed: int) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("train", "finetune") and isinstance(value, dict):
                value["seed"] = seed
            _seed_training(value, seed)
    elif isinstance(node, list):
        for item in node:
            _seed_training(item, seed)


@dataclasses.dataclass(frozen=True)
class Study:
    name: str
    title: str
    source: str
    folder: Path
    scales: dict[str, Scale]
    claims: tuple[Claim, ...]

    def scale(self, name: str) -> Scale:
        if name not in self.scales:
            raise ConfigError(
                f"scale {name!r} is not one of study {self.name!r}'s scales: {', '.join(self.scales)}",
                field="scale",
            )
        return self.scales[name]


def _kind_and_name(path: Path) -> tuple[str, str]:
    """(``sweep`` for an experiment file (``models``) or ``recipe`` (``model`` + ``steps``), its name)."""
    data, _ = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    name = str(data.get("name") or "") if isinstance(data, dict) else ""
    if isinstance(data, dict) and "models" in data:
        return "sweep", name
    if isinstance(data, dict) and "steps" in data:
        return "recipe", name or path.stem  # a recipe without a name is named after its file
    raise ConfigError(f"{path}: neither an experiment file (models: ...) nor a recipe (steps: ...)")


def load_study(folder: str | Path) -> Study:
    """Read and validate ``folder/study.yaml``; errors name the file, line and field."""
    root = Path(folder)
    path = root / STUDY_FILE
    if not path.is_file():
        raise ConfigError(f"{root}: no {STUDY_FILE} here; give a study folder (see `edgeslim study list`)")
    data, lines = parse_yaml(path.read_text(encoding="utf-8"), str(path), document="study file")
    c = Checker(lines)
    top = c.mapping(data, (), ("name", "title", "source", "scales", "claims"))
    for required in ("name", "title", "scales", "claims"):
        if required not in top:
            raise c.fail((required,), "required")
    scales: dict[str, Scale] = {}
    given = top["scales"]
    if not isinstance(given, dict):
        raise c.fail(
            ("scales",), f"expected a mapping of scale name -> {{files, note}} with {', '.join(SCALES)}"
        )
    for required in SCALES:
        if required not in given:
            raise c.fail(("scales", required), f"required (every study has the scales {', '.join(SCALES)})")
    for name, spec in given.items():
        if not isinstance(name, str) or not _SCALE_NAME.fullmatch(name):
            raise c.fail(("scales", str(name)), "a scale name is lower-case letters, digits and '-'")
        entry = c.mapping(spec, ("scales", name), ("files", "note", "seeds"))
        files = c.string_list(entry.get("files"), ("scales", name, "files"))
        if not files:
            raise c.fail(("scales", name, "files"), "list at least one experiment or recipe file")
        for i, file in enumerate(files):
            if not (root / file).is_file():
                raise c.fail(("scales", name, "files", i), f"{root / file} does not exist")
        note = c.string(entry["note"], ("scales", name, "note")) if "note" in entry else ""
        scales[name] = Scale(name, tuple(root / f for f in files), note, _seeds(c, entry.get("seeds"), name))
    claims = []
    if not isinstance(top["claims"], list) or not top["claims"]:
        raise c.fail(("claims",), "list the study's claims")
    for i, item in enumerate(top["claims"]):
        entry = c.mapping(item, ("claims", i), ("id", "claim", "paper", "check"))
        for required in ("id", "claim", "check"):
            if required not in entry:
                raise c.fail(("claims", i, required), "required")
        try:
            check = parse_check(entry["check"])
        except ConfigError as exc:
            field = (exc.field or "type").rsplit(".", 1)[-1]  # "DropAtMost.points" -> "points"
            raise c.fail(("claims", i, "check", field), str(exc)) from None
        claims.append(
            Claim(
                c.string(entry["id"], ("claims", i, "id")),
                c.string(entry["claim"], ("claims", i, "claim")),
                c.string(entry["paper"], ("claims", i, "paper")) if "paper" in entry else "",
                check,
            )
        )
    return Study(
        name=c.string(top["name"], ("name",)),
        title=c.string(top["title"], ("title",)),
        source=c.string(top["source"], ("source",)) if "source" in top else "",
        folder=root,
        scales=scales,
        claims=tuple(claims),
    )


def _seeds(c: Checker, value: Any, scale: str) -> tuple[int, ...]:
    if value is None:
        return ()
    path: tuple[str | int, ...] = ("scales", scale, "seeds")
    if not isinstance(value, list) or len(value) < 2:
        raise c.fail(
            path, "list two or more seeds (e.g. [0, 1, 2]), or leave seeds out to run each file once"
        )
    seeds = tuple(c.integer(v, (*path, i), minimum=0) for i, v in enumerate(value))
    if len(set(seeds)) != len(seeds):
        raise c.fail(path, f"the seeds must differ, got {list(seeds)}")
    return seeds


def find_studies(root: str | Path = DEFAULT_ROOT) -> list[Study]:
    """Every study folder directly under ``root``, by name."""
    base = Path(root)
    if not base.is_dir():
        raise ConfigError(
            f"no studies folder at {str(base)!r}; pass the folder that holds them", field="root"
        )
    return sorted((load_study(p.parent) for p in base.glob(f"*/{STUDY_FILE}")), key=lambda s: s.name)


def run_study(
    study: Study,
    scale: str,
    *,
    db: Path = DEFAULT_DB,
    workers: int | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> list[RunSummary | RecipeOutcome]:
    """Run every file of ``scale`` in order into the store at ``db`` (resumable like any sweep or
    recipe: finished steps are skipped)."""
    done: list[RunSummary | RecipeOutcome] = []
    for _run, config in _parsed_runs(study.scale(scale).runs):  # all validated before anything runs
        if isinstance(config, Experiment):
            done.append(
                sweep_api.run_sweep(config, db=db, workers=workers, threads=threads, progress=progress)
            )
        else:
            done.append(run_recipe(config, db=db, num_threads=threads, progress=progress))
    return done


def _parsed_runs(runs: Sequence[StudyRun]) -> list[tuple[StudyRun, Experiment | Recipe]]:
    """Each run's experiment or recipe: the file as written, or its seeded copy. Each file is
    validated once, first, so that errors name its own lines; a seeded copy differs from it only in
    seeds and name (its models were checked with the file's), and its relative paths still resolve
    beside the file."""
    originals: dict[Path, Experiment | Recipe] = {}
    for run in runs:
        if run.file not in originals:
            originals[run.file] = load_experiment(run.file) if run.kind == "sweep" else load_recipe(run.file)
    parsed: list[tuple[StudyRun, Experiment | Recipe]] = []
    for run in runs:
        if run.seed is None:
            parsed.append((run, originals[run.file]))
            continue
        text, source, base = (
            seeded_yaml(run.file, run.seed),
            f"{run.file} (seed {run.seed})",
            run.file.resolve().parent,
        )
        if run.kind == "sweep":
            parsed.append((run, parse_experiment(text, source=source, base_dir=base, check_models=False)))
        else:
            parsed.append((run, parse_recipe(text, source=source, base_dir=base, default_name=run.file.stem)))
    return parsed


def dry_run_study(
    study: Study, scale: str, *, db: Path = DEFAULT_DB, workers: int | None = None, threads: int | None = None
) -> list[tuple[StudyRun, PlanEstimate]]:
    """Each run's dry run (validated, planned, priced; nothing run or written): per file, or per
    file and seed."""
    plans = []
    for run, config in _parsed_runs(study.scale(scale).runs):
        if isinstance(config, Experiment):
            plans.append((run, sweep_api.dry_run_sweep(config, db=db, workers=workers, threads=threads)))
        else:
            plans.append((run, dry_run_recipe(config, db=db, num_threads=threads)))
    return plans


@dataclasses.dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.claim.id,
            "claim": self.claim.claim,
            "paper": self.claim.paper,
            "check": self.claim.check.to_dict(),
            **self.verdict.to_dict(),
        }


@dataclasses.dataclass(frozen=True)
class StudyReport:
    study: str
    scale: str
    note: str
    claims: tuple[ClaimResult, ...]
    files: tuple[Path, ...] = ()

    @property
    def verdict(self) -> str:
        """``reproduced`` (every measured claim held), ``partly``, ``not reproduced`` or ``not measured``."""
        measured = [c.verdict.status for c in self.claims if c.verdict.status != "not measured"]
        if not measured:
            return "not measured"
        held = sum(s == "reproduced" for s in measured)
        return "reproduced" if held == len(measured) else ("partly" if held else "not reproduced")

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "scale": self.scale,
            "note": self.note,
            "verdict": self.verdict,
            "claims": [c.to_dict() for c in self.claims],
            "files": [str(f) for f in self.files],
        }

    def markdown(self) -> str:
        """The claims table docs/studies.md embeds."""
        out = [
            "| claim | study | edgeslim (measured) | verdict |",
            "|---|---|---|---|",
        ]
        for c in self.claims:
            cells = (c.claim.claim, c.claim.paper or "-", c.verdict.measured, f"**{c.verdict.status}**")
            out.append("| " + " | ".join(s.replace("|", "\\|") for s in cells) + " |")
        return "\n".join(out) + "\n"


def study_rows(study: Study, scale: str, *, db: Path = DEFAULT_DB) -> list[dict[str, Any]]:
    """The measured rows of every file of ``scale`` run so far: a sweep's trials, a recipe's measure
    steps (named by the step's ``name``; a claim compares them with ``reference``). With seeds,
    every seed's rows, under the same trial names: judge them per seed (:func:`judge_seeds`)."""
    rows: list[dict[str, Any]] = []
    stored = _stored_experiments(db)
    for name in study.scale(scale).experiments:
        if name in stored:  # a file not run yet (a study stopped part way) has no rows
            rows.extend(sweep_api.trial_rows(name, db=db))
    return rows


def judge(claims: Sequence[Claim], rows: Sequence[Row]) -> tuple[ClaimResult, ...]:
    return tuple(ClaimResult(c, c.check.evaluate(rows)) for c in claims)


def judge_seeds(claims: Sequence[Claim], rows_by_seed: Sequence[Sequence[Row]]) -> tuple[ClaimResult, ...]:
    """Each claim judged on the seeds' mean figures (with how many seeds it held in)."""
    return tuple(ClaimResult(c, evaluate_over_seeds(c.check, rows_by_seed)) for c in claims)


def _stored_experiments(db: Path) -> set[str]:
    """The experiment names the store at ``db`` holds (none when there is no store)."""
    if not Path(db).is_file():
        return set()
    with Store.open(db) as store:
        return {e.name for e in store.experiments()}


def judge_study(study: Study, scale: str, *, db: Path = DEFAULT_DB, out: Path | None = None) -> StudyReport:
    """Check every claim on the stored results of ``scale``; with ``out``, write there
    ``claims.md``, ``claims.json`` and each sweep's HTML report (with a PNG per plot)."""
    chosen = study.scale(scale)
    stored = _stored_experiments(db)
    missing = [name for name in chosen.experiments if name not in stored]
    # each experiment read once; one not run yet (a study stopped part way) leaves its claims unmeasured
    loaded = {name: sweep_api.load_results(name, db=db) for name in chosen.experiments if name in stored}
    note = chosen.note
    if missing:
        note = f"{note} Not run yet: {', '.join(missing)} (rerun the study to go on).".strip()
    if chosen.seeds:
        by_seed = [
            [
                r.row()
                for run in chosen.runs
                if run.seed == seed and run.experiment in loaded
                for r in loaded[run.experiment][1]
            ]
            for seed in chosen.seeds
        ]
        results = judge_seeds(study.claims, by_seed)
        note = f"{note} Figures: the mean of seeds {', '.join(map(str, chosen.seeds))}.".strip()
    else:
        results = judge(study.claims, [r.row() for _exp, rows in loaded.values() for r in rows])
    report = StudyReport(study.name, scale, note, results)
    if out is None:
        return report
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    # with seeds, the HTML reports and plots are the first seed's (the claims carry the mean)
    pictured = chosen.seeds[0] if chosen.seeds else None
    for run in chosen.runs:
        name = run.experiment
        if run.kind != "sweep" or name not in loaded or run.seed != pictured:
            continue
        exp, trials = loaded[name]
        files = write_report(exp.to_dict(), trials, out / f"{name}.html")
        written.extend([files.html, *files.pngs.values()])
    title = f"# {study.title} ({scale} scale): {report.verdict}\n\n"
    atomic_write_text(
        out / "claims.md", title + (report.note + "\n\n" if report.note else "") + report.markdown()
    )
    atomic_write_text(out / "claims.json", json.dumps(report.to_dict(), indent=2) + "\n")
    return dataclasses.replace(report, files=(out / "claims.md", out / "claims.json", *written))


__all__ = [
    "DEFAULT_ROOT",
    "SCALES",
    "Claim",
    "ClaimResult",
    "Scale",
    "Study",
    "StudyReport",
    "StudyRun",
    "dry_run_study",
    "find_studies",
    "judge",
    "judge_seeds",
    "judge_study",
    "load_study",
    "run_study",
    "seeded_yaml",
    "study_rows",
]
