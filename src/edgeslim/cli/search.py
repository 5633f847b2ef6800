"""CLI commands: ``profile`` (a device's per-layer latency table and predictor) and ``compress``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from edgeslim import tasks
from edgeslim.bench.latency import threads as torch_threads
from edgeslim.cli.console import (
    err_console,
    fail,
    fmt_bytes,
    key_value_table,
    out_console,
    print_json,
    user_errors,
)
from edgeslim.cli.options import (
    AddressOpt,
    CheckpointOpt,
    DataOpt,
    JsonOpt,
    ModelOpt,
    NumClassesOpt,
    PretrainedOpt,
    RecordDbOpt,
    ScoringExecutorOpt,
    ScoringWorkersOpt,
    SeedOpt,
    ThreadsOpt,
    WeightsOpt,
)
from edgeslim.engine.runner import DEFAULT_DB
from edgeslim.errors import ConfigError
from edgeslim.search import STRATEGIES, Budget, CompressOptions, NoPlanFits, compress
from edgeslim.search.calibrate import build_predictor, validate_predictor
from edgeslim.search.profile import PROFILE_RUNTIMES
from edgeslim.yaml_schema import MAX_BATCH_SIZE, MAX_IMAGE_SIZE, MAX_IMAGES

SEARCH_FLAGS = {
    "Budget.max_latency_ms": "--max-latency-ms",
    "Budget.min_speedup": "--min-speedup",
    "Budget.runtime": "--runtime",
    "Budget.batch_size": "--batch",
    "Budget.threads": "--threads",
    "Budget.max_size_mb": "--max-size-mb",
    "Budget.max_accuracy_drop": "--max-accuracy-drop",
    "CompressOptions.budget_minutes": "--budget-minutes",
    "CompressOptions.strategy": "--strategy",
    "CompressOptions.executor": "--executor",
    "CompressOptions.workers": "--workers",
    "CompressOptions.address": "--address",
    "CompressOptions.search_share": "--search-share",
    "CompressOptions.val_images": "--val-images",
    "CompressOptions.proxy_steps": "--proxy-steps",
    "CompressOptions.round_to": "--round-to",
    "CompressOptions.residual": "--residual",
    "CompressOptions.db": "--db",
    "compress.out": "--out",
    "compress.model": "--model",
    "profile.runtime": "--runtime",
    "profile.batch_size": "--batch",
    "profile.threads": "--threads",
}

RuntimeOpt = Annotated[str, typer.Option("--runtime", help=f"{' | '.join(PROFILE_RUNTIMES)}")]
BatchOpt = Annotated[
    int, typer.Option("--batch", min=1, max=MAX_BATCH_SIZE, help="Batch size of one deployed call.")
]


def _parse_round_to(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"--round-to must be a positive integer or 'auto', got {value!r}",
            field="CompressOptions.round_to",
        ) from None


def _check_runtime(runtime: str, field: str) -> None:
    if runtime not in PROFILE_RUNTIMES:
        raise ConfigError(
            f"{field} must be one of {', '.join(PROFILE_RUNTIMES)}, not {runtime!r}", field=field
        )


def profile_cmd(
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    pretrained: PretrainedOpt = False,
    checkpoint: CheckpointOpt = None,
    num_classes: NumClassesOpt = None,
    runtime: RuntimeOpt = "ort",
    batch: BatchOpt = 1,
    threads: ThreadsOpt = None,
    image_size: Annotated[
        int, typer.Option("--image-size", min=8, max=MAX_IMAGE_SIZE, help="Square input size.")
    ] = 32,
    round_to: Annotated[str, typer.Option("--round-to", help="Channel multiple, or auto.")] = "auto",
    validate: Annotated[
        int, typer.Option("--validate", min=0, help="Also measure N random pruned variants against it.")
    ] = 0,
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Measure this machine's per-layer latency table for a model on a runtime, and its predictor."""
    with user_errors(SEARCH_FLAGS):
        _check_runtime(runtime, "profile.runtime")
        multiple = _parse_round_to(round_to)
        source = tasks.ModelSource(
            name=model, weights=weights, checkpoint=checkpoint, num_classes=num_classes, pretrained=pretrained
        )
        dense, _ = source.build()
        say = None if json_out else (lambda m: err_console.print(m, highlight=False))
        with torch_threads(threads), tempfile.TemporaryDirectory() as tmp:
            if multiple == "auto":
                multiple = tasks.choose_round_to(runtime).round_to
            layout, predictor, timed, timer = build_predictor(
                dense,
                (3, image_size, image_size),
                runtime,
                batch,
                threads,
                Path(tmp),
                round_to=int(multiple),
                progress=say,
            )
            check = (
                validate_predictor(dense, layout, predictor, timer, Path(tmp), variants=validate, seed=seed)
                if validate
                else None
            )
    data = {
        **predictor.to_dict(),
        "cpu_model": predictor.table.cpu_model,
        "table": str(predictor.table.path),
        "entries": len(predictor.table.entries),
        "measured_now": timed,
        "round_to": multiple,
        "knobs": [{"name": k.name, "groups": list(k.groups), "size": k.size} for k in layout.knobs],
        "validation": check.to_dict() if check is not None else None,
    }
    if json_out:
        print_json(data)
        return
    rows = [
        ("profile", f"{data['profile_id']} ({data['cpu_model']})"),
        ("table", f"{data['table']} ({data['entries']} layer widths, {timed} measured now)"),
        ("predictor", f"{predictor.a:.3f} x layer sum + {predictor.b:.3f} ms"),
        ("dense", f"{predictor.points[0][1]:.3f} ms measured"),
        ("knobs", str(len(layout.knobs))),
    ]
    if check is not None:
        rows.append(
            (
                "validation",
                f"median error {check.median_error:.1%}, max {max(check.errors):.1%} on {validate} random variants",
            )
        )
    out_console.print(key_value_table(f"profile {runtime} batch {batch}", rows))


def compress_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the model, artifact and trials.")],
    max_latency_ms: Annotated[
        float | None, typer.Option("--max-latency-ms", help="Latency budget of one call on the runtime (ms).")
    ] = None,
    min_speedup: Annotated[
        float | None,
        typer.Option(
            "--min-speedup", help="At least N times faster than the uncompressed model, timed alongside."
        ),
    ] = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    pretrained: PretrainedOpt = False,
    checkpoint: CheckpointOpt = None,
    num_classes: NumClassesOpt = None,
    data: DataOpt = None,
    runtime: RuntimeOpt = "ort",
    batch: BatchOpt = 1,
    threads: ThreadsOpt = None,
    max_size_mb: Annotated[
        float | None, typer.Option("--max-size-mb", help="Artifact size limit (MB).")
    ] = None,
    max_accuracy_drop: Annotated[
        float | None, typer.Option("--max-accuracy-drop", help="Top-1 points the model may lose.")
    ] = None,
    int8: Annotated[
        bool, typer.Option("--int8/--no-int8", help="Also quantize to int8 (static PTQ).")
    ] = False,
    budget_minutes: Annotated[
        float, typer.Option("--budget-minutes", help="Wall-clock budget of the whole run.")
    ] = 30.0,
    strategy: Annotated[str, typer.Option("--strategy", help=" | ".join(STRATEGIES))] = "greedy",
    search_share: Annotated[
        float, typer.Option("--search-share", help="Share of the budget for the search (rest: fine-tune).")
    ] = 0.3,
    val_images: Annotated[
        int, typer.Option("--val-images", min=1, help="Validation images of the accuracy proxy.")
    ] = 1000,
    proxy_steps: Annotated[
        int,
        typer.Option(
            "--proxy-steps",
            help="Distillation steps each candidate trains before it is scored (0: BN re-estimation only).",
        ),
    ] = 16,
    round_to: Annotated[str, typer.Option("--round-to", help="Channel multiple, or auto.")] = "auto",
    residual: Annotated[
        str,
        typer.Option(
            "--residual", help="keep: search only widths inside blocks; prune: residual streams too."
        ),
    ] = "prune",
    finetune: Annotated[
        bool,
        typer.Option("--finetune/--no-finetune", help="Fine-tune the winner for the rest of the budget."),
    ] = True,
    distill: Annotated[
        bool, typer.Option("--distill/--no-distill", help="Distill from the dense model when fine-tuning.")
    ] = True,
    bf16: Annotated[
        bool,
        typer.Option("--bf16/--fp32", help="bf16 autocast while fine-tuning (fp32 on CPUs without BF16)."),
    ] = True,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, max=MAX_IMAGES, help="Use at most N test images (and N x 5 train)."),
    ] = None,
    seed: SeedOpt = 0,
    executor: ScoringExecutorOpt = "local",
    workers: ScoringWorkersOpt = None,
    address: AddressOpt = None,
    db: RecordDbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """Search, fine-tune and measure the most accurate compressed model that fits a device budget."""
    with user_errors(SEARCH_FLAGS):
        if data is None:
            raise ConfigError(
                "--data is required: the dataset to search and fine-tune on", field="DataSource.path"
            )
        the_budget = Budget(
            max_latency_ms=max_latency_ms,
            min_speedup=min_speedup,
            runtime=runtime,
            batch_size=batch,
            threads=threads,
            max_size_mb=max_size_mb,
            max_accuracy_drop=max_accuracy_drop,
        )
        options = CompressOptions(
            int8=int8,
            budget_minutes=budget_minutes,
            strategy=strategy,  # type: ignore[arg-type]  # validated by CompressOptions
            search_share=search_share,
            val_images=val_images,
            proxy_steps=proxy_steps,
            round_to=_parse_round_to(round_to),  # type: ignore[arg-type]
            residual=residual,  # type: ignore[arg-type]  # validated by CompressOptions
            finetune=finetune,
            distill=distill,
            bf16=bf16,
            seed=seed,
            executor=executor,
            workers=workers,
            address=address,
            db=str(db),
        )
        source = tasks.ModelSource(
            name=model, weights=weights, checkpoint=checkpoint, num_classes=num_classes, pretrained=pretrained
        )
        data_source = tasks.DataSource(
            path=data, limit=limit, train_limit=None if limit is None else 5 * limit, seed=seed
        )
        say = None if json_out else (lambda m: err_console.print(m, highlight=False))
        try:
            result = compress(source, data_source, the_budget, out=out, options=options, progress=say)
        except NoPlanFits as exc:
            if json_out:
                print_json({"error": str(exc), "closest": exc.closest})
            fail(str(exc), 1)
    if json_out:
        print_json(result.to_dict())
        return
    d = result.to_dict()
    top1 = "-" if result.top1 is None else f"{result.top1:.2f}%"
    base = "-" if result.top1_baseline is None else f"{result.top1_baseline:.2f}%"
    rows = [
        ("artifact", f"{d['artifact']} ({fmt_bytes(result.size_bytes)})"),
        (
            "latency",
            f"{result.latency_ms:.3f} ms measured (predicted {result.latency_ms_predicted:.3f}; dense "
            f"{result.latency_ms_dense:.3f} timed alongside: {result.speedup:.2f}x) on {runtime} batch {batch}",
        ),
        ("top-1", f"{top1} (uncompressed {base})"),
        ("MACs", f"{result.macs / 1e6:.1f} M of {result.macs_dense / 1e6:.1f} M"),
        ("params", f"{result.params:,} of {result.params_dense:,}"),
        ("fits", ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in result.fits.items())),
        (
            "search",
            f"{result.strategy}, {result.trials} candidates, {result.budget_minutes_used:.1f} min in all",
        ),
    ]
    out_console.print(key_value_table("compress", rows))
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    if result.experiment is not None:
        err_console.print(
            f"next: [bold]edgeslim report {result.experiment} --db {db} --out {result.experiment}.html[/] "
            "(every scored plan against the uniform-ratio ones)",
            highlight=False,
        )
    if not all(result.fits.values()):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("profile")(profile_cmd)
    app.command("compress")(compress_cmd)
