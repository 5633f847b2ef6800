"""CLI commands ``edgeslim nas spaces|train|search``: hardware-aware architecture search."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from edgeslim import tasks
from edgeslim.cli.console import err_console, fmt_bytes, key_value_table, out_console, print_json, user_errors
from edgeslim.cli.options import (
    AddressOpt,
    DataOpt,
    JsonOpt,
    RecordDbOpt,
    ScoringExecutorOpt,
    ScoringWorkersOpt,
    SeedOpt,
    ThreadsOpt,
)
from edgeslim.engine.runner import DEFAULT_DB
from edgeslim.errors import ConfigError
from edgeslim.nas import SPACES, get_space
from edgeslim.nas.search import NAS_STRATEGIES, NasOptions, search_subnet
from edgeslim.nas.train import SupernetTraining, train_supernet
from edgeslim.report.plots import search_plane
from edgeslim.search import PROFILE_RUNTIMES, Budget
from edgeslim.yaml_schema import MAX_BATCH_SIZE, MAX_IMAGES

NAS_FLAGS = {
    "nas.space": "--space",
    "nas.out": "--out",
    "nas.init_weights": "--init-weights",
    "nas.plot": "--plot",
    "NasOptions.db": "--db",
    "SupernetTraining.budget_minutes": "--budget-minutes",
    "SupernetTraining.batch_size": "--batch-size",
    "SupernetTraining.lr": "--lr",
    "SupernetTraining.random_subnets": "--random-subnets",
    "SupernetTraining.checkpoint_minutes": "--checkpoint-minutes",
    "Budget.max_latency_ms": "--max-latency-ms",
    "Budget.min_speedup": "--min-speedup",
    "Budget.runtime": "--runtime",
    "Budget.batch_size": "--batch",
    "Budget.threads": "--threads",
    "NasOptions.strategy": "--strategy",
    "NasOptions.executor": "--executor",
    "NasOptions.workers": "--workers",
    "NasOptions.address": "--address",
    "NasOptions.max_evals": "--max-evals",
    "NasOptions.budget_minutes": "--budget-minutes",
    "NasOptions.val_images": "--val-images",
    "NasOptions.finetune_minutes": "--finetune-minutes",
    "NasOptions.passes": "--passes",
    "DataSource.path": "--data",
}

nas_app = typer.Typer(
    help="Hardware-aware architecture search: train a weight-sharing supernet, then search it for a "
    "device budget on measured latency.",
    no_args_is_help=True,
)


def _say(json_out: bool) -> Callable[[str], None] | None:
    if json_out:
        return None
    return lambda message: err_console.print(message, highlight=False)


@nas_app.command("spaces")
def spaces_cmd(json_out: JsonOpt = False) -> None:
    """List the search spaces (CIFAR ResNets from a pretrained net; MobileNetV2 blocks from scratch)."""
    spaces = [SPACES.get(name) for name in SPACES.names()]
    if json_out:
        print_json(
            {"spaces": [{**s.to_dict(), "subnets": s.size(), "description": s.description} for s in spaces]}
        )
        return
    rows = [(s.name, f"{s.description} ({s.size():,} subnets)") for s in spaces]
    out_console.print(key_value_table("search spaces", rows))


@nas_app.command("train")
def train_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="The supernet file to write (must not exist).")],
    space: Annotated[
        str,
        typer.Option(
            "--space", help=f"Search space: {' | '.join(SPACES.names())} (see `edgeslim nas spaces`)."
        ),
    ] = "resnet_cifar",
    init_weights: Annotated[
        Path | None,
        typer.Option(
            "--init-weights",
            help="Pretrained weights of the space's largest net (resnet_cifar: resnet56); the mbv2 "
            "spaces train from scratch and take none.",
        ),
    ] = None,
    data: DataOpt = None,
    budget_minutes: Annotated[
        float, typer.Option("--budget-minutes", help="Wall-clock training budget (sizes the steps).")
    ] = 120.0,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=MAX_BATCH_SIZE, help="Images per step.")
    ] = 128,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (cosine over the budget).")] = 0.02,
    random_subnets: Annotated[
        int, typer.Option("--random-subnets", help="Random subnets per step besides largest and smallest.")
    ] = 2,
    checkpoint_minutes: Annotated[
        float, typer.Option("--checkpoint-minutes", help="Save OUT.partial this often (resume after a kill).")
    ] = 2.0,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Use at most N training images.")
    ] = None,
    bf16: Annotated[
        bool,
        typer.Option(
            "--bf16/--fp32", help="bf16 autocast in the forward passes (fp32 on CPUs without BF16)."
        ),
    ] = True,
    threads: ThreadsOpt = None,
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Train a weight-sharing supernet (sandwich rule, in-place distillation); resumes OUT.partial."""
    with user_errors(NAS_FLAGS):
        get_space(space)
        if data is None:
            raise ConfigError(
                "--data is required: the dataset to train the supernet on", field="DataSource.path"
            )
        options = SupernetTraining(
            budget_minutes=budget_minutes,
            batch_size=batch_size,
            lr=lr,
            random_subnets=random_subnets,
            checkpoint_minutes=checkpoint_minutes,
            threads=threads,
            seed=seed,
            bf16=bf16,
        )
        source = tasks.DataSource(path=data, train_limit=limit, seed=seed)
        result = train_supernet(
            space, source, out, init_weights=init_weights, options=options, progress=_say(json_out)
        )
    if json_out:
        print_json(result.to_dict())
        return
    rows = [
        ("supernet", f"{result.path} (space {result.space})"),
        (
            "steps",
            f"{result.steps} ({result.epochs:.2f} epochs), resumed from step {result.resumed_from_step}",
        ),
        ("time", f"{result.minutes:.1f} min, {result.images_per_second:.0f} images/s"),
    ]
    out_console.print(key_value_table("nas train", rows))


@nas_app.command("search")
def search_cmd(
    supernet: Annotated[Path, typer.Argument(help="A supernet from `edgeslim nas train`.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The subnet checkpoint to write (must not exist).")
    ],
    max_latency_ms: Annotated[
        float | None, typer.Option("--max-latency-ms", help="Latency budget of one call on the runtime (ms).")
    ] = None,
    min_speedup: Annotated[
        float | None,
        typer.Option("--min-speedup", help="At least N times faster than the largest net, timed alongside."),
    ] = None,
    data: DataOpt = None,
    runtime: Annotated[str, typer.Option("--runtime", help=" | ".join(PROFILE_RUNTIMES))] = "ort",
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=MAX_BATCH_SIZE, help="Batch size of one deployed call.")
    ] = 1,
    threads: ThreadsOpt = None,
    strategy: Annotated[str, typer.Option("--strategy", help=" | ".join(NAS_STRATEGIES))] = "evolution",
    max_evals: Annotated[int, typer.Option("--max-evals", help="Subnets scored at most.")] = 200,
    budget_minutes: Annotated[
        float, typer.Option("--budget-minutes", help="Wall clock of the search.")
    ] = 20.0,
    val_images: Annotated[
        int, typer.Option("--val-images", help="Validation images of the accuracy proxy.")
    ] = 1000,
    finetune_minutes: Annotated[
        float, typer.Option("--finetune-minutes", help="Distil the winner from the largest net (0: off).")
    ] = 0.0,
    passes: Annotated[int, typer.Option("--passes", help="Timing passes per measured subnet.")] = 3,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, max=MAX_IMAGES, help="Use at most N test images.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Also draw every scored subnet (.svg, .png or .pdf).")
    ] = None,
    seed: SeedOpt = 0,
    executor: ScoringExecutorOpt = "local",
    workers: ScoringWorkersOpt = None,
    address: AddressOpt = None,
    db: RecordDbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """Search a supernet for the most accurate subnet within a measured latency budget."""
    with user_errors(NAS_FLAGS):
        if plot is not None and plot.suffix.lower() not in (".svg", ".png", ".pdf"):
            raise ConfigError(f"--plot must end in .svg, .png or .pdf, got {str(plot)!r}", field="nas.plot")
        budget = Budget(
            max_latency_ms=max_latency_ms,
            min_speedup=min_speedup,
            runtime=runtime,
            batch_size=batch,
            threads=threads,
        )
        options = NasOptions(
            strategy=strategy,  # type: ignore[arg-type]  # validated by NasOptions
            max_evals=max_evals,
            budget_minutes=budget_minutes,
            val_images=val_images,
            finetune_minutes=finetune_minutes,
            passes=passes,
            seed=seed,
            executor=executor,
            workers=workers,
            address=address,
            db=str(db),
        )
        if data is None:
            raise ConfigError("--data is required: the dataset to score subnets on", field="DataSource.path")
        source = tasks.DataSource(path=data, limit=limit, seed=seed)
        result = search_subnet(supernet, source, budget, out=out, options=options, progress=_say(json_out))
    if plot is not None:
        figure = search_plane(result.candidates, result.max_latency_ms, result.subnet.label())
        figure.savefig(plot)
    if json_out:
        print_json(result.to_dict())
    else:
        top1 = "-" if result.top1 is None else f"{result.top1:.2f}%"
        rows = [
            ("subnet", f"{result.subnet.label()} -> {result.path} ({fmt_bytes(result.size_bytes)})"),
            (
                "latency",
                f"{result.latency_ms:.3f} ms measured (predicted {result.latency_ms_predicted:.3f}; budget "
                f"{result.max_latency_ms:.3f}; largest {result.latency_ms_largest:.3f}) on {runtime} batch {batch}",
            ),
            ("top-1", f"{top1} (proxy {result.top1_proxy:.2f}%)"),
            ("size", f"{result.params:,} params, {result.macs / 1e6:.1f} MMAC"),
            ("search", f"{result.strategy}, {result.candidates_evaluated} subnets, {result.minutes:.1f} min"),
        ]
        for ref in result.references:
            ms = "-" if ref["latency_ms"] is None else f"{ref['latency_ms']:.3f} ms"
            rows.append((ref["reference"], f"{ref['top1_proxy']:.2f}% proxy, {ms} (hand-designed)"))
        out_console.print(key_value_table("nas search", rows))
        if result.experiment is not None:
            err_console.print(
                f"next: [bold]edgeslim report {result.experiment} --db {db} --out {result.experiment}.html[/]",
                highlight=False,
            )
    if not result.fits:
        err_console.print("[bold red]error:[/] no finalist met the budget when measured", highlight=False)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``edgeslim nas ...`` to ``app``."""
    app.add_typer(nas_app, name="nas")
