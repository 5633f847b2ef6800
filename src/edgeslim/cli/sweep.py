"""CLI commands: sweep, results, report, recommend."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from edgeslim.cli.console import (
    err_console,
    fmt_pct,
    fmt_seconds,
    key_value_table,
    out_console,
    plan_table,
    print_json,
    user_errors,
)
from edgeslim.cli.options import JsonOpt
from edgeslim.engine.runner import DEFAULT_DB
from edgeslim.sweep import api as sweep_api
from edgeslim.yaml_schema import MAX_THREADS, max_workers

DbOpt = Annotated[
    Path,
    typer.Option("--db", help="The SQLite result store (created if missing by `sweep`)."),
]
ExpArg = Annotated[str, typer.Argument(help="Experiment name (or its YAML file).")]

#: Library field -> this module's flags (errors name fields; the CLI user sees the flag).
SWEEP_FLAGS = {
    "db": "--db",
    "executor": "--executor",
    "executor.address": "--address",
    "executor.ship_files": "--ship-files",
    "workers": "--workers",
    "executor.threads": "--threads",
}
RECOMMEND_FLAGS = {
    "db": "--db",
    "Constraints.max_latency_ms": "--max-latency-ms",
    "Constraints.max_size_mb": "--max-size-mb",
    "Constraints.max_accuracy_drop": "--max-accuracy-drop",
    "Constraints.min_speedup": "--min-speedup",
    "recommend_task.top": "--top",
}


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.3f} MB"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f} ms"


def _latency(row: dict[str, Any]) -> str:
    """The row's latency; ``~`` marks a noisy one (its timing passes disagreed: see the legend)."""
    text = _ms(row.get("latency_ms"))
    return f"{text} ~" if row.get("latency_noisy") and row.get("latency_ms") is not None else text


#: The legend under tables that mark noisy latencies with ``~``.
NOISY_LEGEND = (
    "~ noisy latency: its timing passes differed by more than the measure step's noise_threshold "
    "(spread = (max - min) / median of the pass medians); re-measure before relying on it"
)


def show_plan(title: str, plan: dict[str, Any], json_out: bool) -> None:
    """Print a dry run: the node table on stdout, the totals and the estimate's basis on stderr."""
    if json_out:
        print_json(plan)
        return
    out_console.print(plan_table(title, plan))
    rate = plan["throughput"]
    err_console.print(
        f"{plan['to_run']} step(s) to run, {plan['done']} done before"
        + (f" ({plan['trials']} trials)" if plan["trials"] else "")
        + f"; about {fmt_seconds(plan['wall_s'])} with {plan['workers']} worker(s) x {plan['threads']} "
        f"thread(s) ({fmt_seconds(plan['work_s'])} of work)"
    )
    models = plan.get("rates") or {}
    rates = (
        "each model at its own probed rate ("
        + "; ".join(
            f"{escape(name)} {r['train_gmacs_s']:.2g} GMAC/s training, {r['infer_gmacs_s']:.2g} inference"
            for name, r in models.items()
        )
        + f"; machine: {rate['train_gmacs_s']:.1f} / {rate['infer_gmacs_s']:.1f} GMAC/s, {escape(rate['source'])})"
        if models
        else f"{rate['train_gmacs_s']:.1f} GMAC/s training, {rate['infer_gmacs_s']:.1f} GMAC/s inference "
        f"({escape(rate['source'])})"
    )
    err_console.print(
        f"estimated at {rates}, {rate['step_overhead_s']:.0f} s per step; each step is priced with the "
        "MACs of the model it starts from, so steps after structured pruning cost less. "
        "Nothing was run or written."
    )


def sweep_cmd(
    experiment_file: Annotated[Path, typer.Argument(help="Experiment YAML (see docs/sweeps.md).")],
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            max=max_workers(),
            help="Trials in parallel (default: the file's, else half the CPUs).",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            "-t",
            min=1,
            max=MAX_THREADS,
            help="Torch threads per trial (default: CPUs / workers).",
        ),
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", help="local | ray | inline (this process)")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option("--address", help="Ray cluster address (default: start a local Ray instance)."),
    ] = None,
    ship_files: Annotated[
        bool | None,
        typer.Option(
            "--ship-files/--no-ship-files",
            help="Ray: send each trial's data, weights and input artifact through Ray's object store "
            "and bring its files back, for nodes without a shared file system (default: the file's "
            "execution.ship_files, else on exactly with --address).",
        ),
    ] = None,
    db: DbOpt = DEFAULT_DB,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Also rerun trials that failed before.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Validate and print the planned steps with an estimated time; run and write nothing.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run every combination of an experiment file (resumable: finished trials are skipped).

    Exit code 1 when some trial failed (the others still ran), 2 for a bad experiment file.
    """
    if dry_run:
        with user_errors(SWEEP_FLAGS):
            plan = sweep_api.dry_run_sweep(experiment_file, db=db, workers=workers, threads=threads)
        show_plan(f"sweep {experiment_file} (dry run)", plan.to_dict(), json_out)
        return
    with user_errors(SWEEP_FLAGS):
        summary = sweep_api.sweep_task(
            experiment_file,
            db=db,
            executor=executor,
            workers=workers,
            threads=threads,
            address=address,
            ship_files=ship_files,
            retry_failed=retry_failed,
            progress=not json_out,
        )
    if json_out:
        print_json(summary.to_dict())
    else:
        err_console.print(
            key_value_table(
                f"sweep {summary.experiment}",
                [
                    ("trials", f"{summary.total} ({summary.done} done, {summary.failed} failed)"),
                    ("this run", f"{summary.ran} finished, {summary.skipped} skipped (done before)"),
                    (
                        "executor",
                        f"{summary.executor}: {summary.workers} worker(s) x {summary.threads} thread(s)",
                    ),
                    ("wall time", f"{summary.wall_s:.1f} s"),
                    ("store", summary.db),
                    ("artifacts", summary.artifacts),
                ],
            )
        )
        err_console.print(
            f"next: [bold]edgeslim report {summary.experiment} --db {summary.db} --out report.html[/]"
        )
    if summary.failed:
        raise typer.Exit(1)


def results_cmd(experiment: ExpArg, db: DbOpt = DEFAULT_DB, json_out: JsonOpt = False) -> None:
    """All trial records of an experiment (config, status, metrics, timings, environment, errors)."""
    with user_errors(SWEEP_FLAGS):
        data = sweep_api.results_task(experiment, db=db)
    if json_out:
        print_json(data)
        return
    if "candidates" in data:
        out_console.print(_candidates_table(data["experiment"], data["candidates"]))
        return
    table = Table(title=f"{data['experiment']['name']}: {len(data['trials'])} trials", title_justify="left")
    for col in ("trial", "status", "top-1", "drop pp", "param red.", "size", "latency", "error"):
        table.add_column(
            col, justify="left" if col in ("trial", "status", "error") else "right", no_wrap=col != "error"
        )
    for m in data["trials"]:
        red = m.get("param_reduction_ratio")
        drop = m.get("top1_drop")
        table.add_row(
            m["name"],
            m["status"],
            fmt_pct(m.get("top1")) + (" (simulated)" if m.get("simulated") else ""),
            "-" if drop is None else f"{drop:.2f}",
            "-" if red is None else f"{100 * red:.1f}%",
            _mb(m.get("size_bytes")),
            _latency(m),
            (m["error"] or "")[:80],
        )
    if any(m.get("latency_noisy") and m.get("latency_ms") is not None for m in data["trials"]):
        table.caption = NOISY_LEGEND
        table.caption_justify = "left"
    out_console.print(table)


def _candidates_table(experiment: dict[str, Any], candidates: list[dict[str, Any]]) -> Table:
    """A search's scored candidates (``edgeslim compress`` / ``nas search``), in scoring order."""
    title = f"{experiment['name']} ({experiment['kind']} search): {len(candidates)} candidates"
    table = Table(title=title, title_justify="left")
    for col in ("candidate", "role", "proxy top-1", "predicted", "measured", "top-1", "params"):
        table.add_column(col, justify="left" if col in ("candidate", "role") else "right")
    for c in candidates:
        table.add_row(
            c["label"],
            c["role"],
            fmt_pct(c.get("top1_proxy")),
            _ms(c.get("latency_ms_predicted")),
            _ms(c.get("latency_ms")),
            fmt_pct(c.get("top1")),
            "-" if c.get("params") is None else f"{c['params']:,}",
        )
    return table


def report_cmd(
    experiment: ExpArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file (PNGs go beside it).")] = Path(
        "report.html"
    ),
    max_latency_ms: Annotated[
        float | None, typer.Option("--max-latency-ms", help="Budget: latency limit (recommendation on top).")
    ] = None,
    max_size_mb: Annotated[
        float | None, typer.Option("--max-size-mb", help="Budget: size limit (MB = 10^6 bytes).")
    ] = None,
    max_accuracy_drop: Annotated[
        float | None, typer.Option("--max-accuracy-drop", help="Budget: top-1 drop, percentage points.")
    ] = None,
    min_speedup: Annotated[
        float | None,
        typer.Option("--min-speedup", help="Budget: at least N times the speed of the model's baseline."),
    ] = None,
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """Write one self-contained HTML report (works offline) and a PNG of each plot; with a budget
    (--max-latency-ms/--max-size-mb/--max-accuracy-drop) the page opens with its recommendation."""
    with user_errors(RECOMMEND_FLAGS):
        files = sweep_api.report_task(
            experiment,
            db=db,
            out=out,
            max_latency_ms=max_latency_ms,
            max_size_mb=max_size_mb,
            max_accuracy_drop=max_accuracy_drop,
            min_speedup=min_speedup,
        )
    if json_out:
        print_json(files.to_dict())
        return
    err_console.print(
        f"report: [bold]{files.html}[/] ({files.trials} trials: {files.done} done, {files.failed} failed)"
    )
    for png in files.pngs.values():
        err_console.print(f"  {png}")


def recommend_cmd(
    experiment: ExpArg,
    max_latency_ms: Annotated[
        float | None,
        typer.Option("--max-latency-ms", help="Latency limit, > 0 (primary runtime, smallest batch)."),
    ] = None,
    max_size_mb: Annotated[
        float | None, typer.Option("--max-size-mb", help="Size limit on disk, > 0 (MB = 10^6 bytes).")
    ] = None,
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(
            "--max-accuracy-drop", help="Largest top-1 drop from the baseline, in percentage points."
        ),
    ] = None,
    min_speedup: Annotated[
        float | None,
        typer.Option(
            "--min-speedup",
            help="At least N times the speed of the model's baseline (same runtime and batch): a budget "
            "that means the same on any machine.",
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="How many trials to show.")] = 3,
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """The best trials that fit the limits, and why; exit code 1 if none fits."""
    with user_errors(RECOMMEND_FLAGS):
        rec = sweep_api.recommend_task(
            experiment,
            db=db,
            max_latency_ms=max_latency_ms,
            max_size_mb=max_size_mb,
            max_accuracy_drop=max_accuracy_drop,
            min_speedup=min_speedup,
            top=top,
        )
    if json_out:
        print_json(rec.to_dict())
    elif rec.found:
        for rank, choice in enumerate(rec.fitting, start=1):
            r = choice.row
            err_console.print(
                f"[bold green]#{rank}[/] [bold]{r['name']}[/]  top-1 {fmt_pct(r['top1'])}"
                f"{' (simulated)' if r.get('simulated') else ''}  "
                f"{_latency(r)}  {_mb(r['size_bytes'])}"
            )
            for reason in choice.reasons:
                err_console.print(f"    - {reason}")
        if any(c.row.get("latency_noisy") and c.row.get("latency_ms") is not None for c in rec.fitting):
            err_console.print(NOISY_LEGEND, markup=False)
    else:
        err_console.print(
            f"[bold red]no trial fits[/] ({rec.num_candidates} finished trial(s) checked); closest:"
        )
        for choice in rec.near_misses:
            err_console.print(f"  [bold]{choice.row['name']}[/]: {'; '.join(choice.reasons)}")
    if not rec.found:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("sweep")(sweep_cmd)
    app.command("results")(results_cmd)
    app.command("report")(report_cmd)
    app.command("recommend")(recommend_cmd)
