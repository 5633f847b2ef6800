"""CLI commands ``edgeslim study list|run|report``: reproduce the published studies edgeslim follows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from edgeslim.cli.console import err_console, out_console, print_json, user_errors
from edgeslim.cli.options import JsonOpt
from edgeslim.cli.sweep import DbOpt, show_plan
from edgeslim.engine.runner import DEFAULT_DB
from edgeslim.studies import (
    DEFAULT_ROOT,
    SCALES,
    dry_run_study,
    find_studies,
    judge_study,
    load_study,
    run_study,
)
from edgeslim.yaml_schema import MAX_THREADS, max_workers

STUDY_FLAGS = {
    "scale": "--scale",
    "root": "ROOT",
    "db": "--db",
    "workers": "--workers",
    "executor.threads": "--threads",
}

study_app = typer.Typer(
    help="Reproduce the published studies edgeslim follows (studies/): run a scale, then check each "
    "claim on the measurements.",
    no_args_is_help=True,
)

FolderArg = Annotated[
    Path, typer.Argument(help="A study folder (holding study.yaml), e.g. studies/qat-vgg16.")
]
ScaleOpt = Annotated[
    str,
    typer.Option(
        "--scale",
        help=f"{' | '.join(SCALES)} (or a study's own, e.g. imagenet): ci is minutes (tests), full the reported scale.",
    ),
]
_VERDICT_STYLE = {
    "reproduced": "green",
    "not reproduced": "red",
    "not measured": "yellow",
    "partly": "yellow",
}


@study_app.command("list")
def list_cmd(
    root: Annotated[Path, typer.Argument(help="The folder holding the study folders.")] = DEFAULT_ROOT,
    json_out: JsonOpt = False,
) -> None:
    """The studies, their scales and how many claims each checks."""
    with user_errors(STUDY_FLAGS):
        studies = find_studies(root)
    if json_out:
        print_json(
            {
                "studies": [
                    {
                        "name": s.name,
                        "title": s.title,
                        "folder": str(s.folder),
                        "scales": {k: v.note for k, v in s.scales.items()},
                        "seeds": {k: list(v.seeds) for k, v in s.scales.items() if v.seeds},
                        "claims": [c.id for c in s.claims],
                    }
                    for s in studies
                ]
            }
        )
        return
    table = Table(title=f"{len(studies)} studies in {root}", title_justify="left")
    for column in ("folder", "title", "scales", "claims"):
        table.add_column(column)
    for s in studies:
        table.add_row(escape(str(s.folder)), escape(s.title), ", ".join(s.scales), str(len(s.claims)))
    out_console.print(table)


@study_app.command("run")
def run_cmd(
    folder: FolderArg,
    scale: ScaleOpt = "ci",
    db: DbOpt = DEFAULT_DB,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", min=1, max=max_workers(), help="Trials in parallel.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", "-t", min=1, max=MAX_THREADS, help="Torch threads per trial.")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Validate and print the plan with an estimated time; run nothing."),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run a study's files at one scale into the store (resumable), then print its claims' verdicts."""
    with user_errors(STUDY_FLAGS):
        study = load_study(folder)
        if dry_run:
            for run, plan in dry_run_study(study, scale, db=db, workers=workers, threads=threads):
                seed = "" if run.seed is None else f", seed {run.seed}"
                show_plan(f"{study.name} {scale}: {run.file.name}{seed} (dry run)", plan.to_dict(), json_out)
            return
        run_study(study, scale, db=db, workers=workers, threads=threads, progress=not json_out)
        report = judge_study(study, scale, db=db)
    _show(report.to_dict(), json_out)


@study_app.command("report")
def report_cmd(
    folder: FolderArg,
    scale: ScaleOpt = "ci",
    db: DbOpt = DEFAULT_DB,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for claims.md, claims.json and each sweep's HTML report + PNGs."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check every claim of a study on what the store holds for that scale (runs nothing)."""
    with user_errors(STUDY_FLAGS):
        study = load_study(folder)
        report = judge_study(study, scale, db=db, out=out)
    _show(report.to_dict(), json_out)
    if out is not None and not json_out:
        err_console.print(f"wrote {', '.join(str(f) for f in report.files)}")


def _show(report: dict[str, object], json_out: bool) -> None:
    if json_out:
        print_json(report)
        return
    verdict = str(report["verdict"])
    table = Table(
        title=f"{report['study']} ({report['scale']} scale): [{_VERDICT_STYLE[verdict]}]{verdict}[/]",
        title_justify="left",
    )
    for column in ("claim", "study", "measured", "verdict"):
        table.add_column(column, overflow="fold")
    claims = report["claims"]
    assert isinstance(claims, list)
    for c in claims:
        style = _VERDICT_STYLE[c["status"]]
        table.add_row(
            escape(c["claim"]), escape(c["paper"] or "-"), escape(c["measured"]), f"[{style}]{c['status']}[/]"
        )
    out_console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``edgeslim study ...`` to ``app``."""
    app.add_typer(study_app, name="study")
