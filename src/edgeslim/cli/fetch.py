"""``edgeslim fetch``: download published weights and datasets (resumable, verified, cached)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeslim.cli.console import err_console, out_console, print_json, user_errors
from edgeslim.cli.options import JsonOpt


def fetch_cmd(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="What to fetch: cifar10, resnet20..resnet56 (CIFAR weights), resnet50.tv_in1k ... "
            "(torchvision ImageNet weights). See --list.",
            show_default=False,
        ),
    ] = None,
    dest: Annotated[
        Path | None,
        typer.Option(
            "--dest",
            help="cifar10: the folder to extract into (default $EDGESLIM_DATA/cifar10 when that folder exists, else "
            "$EDGESLIM_CACHE/data/cifar10); weights: the folder to download into (default "
            "$EDGESLIM_CACHE/downloads).",
        ),
    ] = None,
    list_sources: Annotated[bool, typer.Option("--list", help="List what can be fetched.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Download weights or CIFAR-10 into the cache, verified against the published hashes."""
    from edgeslim import fetch

    if list_sources or not names:
        rows = [
            {
                "name": s.name,
                "kind": s.kind,
                "url": s.url,
                "hash": f"sha256 {s.sha256}" if s.sha256 else f"md5 {s.md5}",
                "description": s.description,
            }
            for s in fetch.SOURCES.values()
        ]
        if json_out:
            print_json({"sources": rows})
            return
        from rich.table import Table

        table = Table(title=f"{len(rows)} sources", title_justify="left")
        for col in ("name", "kind", "hash", "description"):
            table.add_column(col, no_wrap=col != "description")
        for r in rows:
            table.add_row(r["name"], r["kind"], r["hash"], r["description"])
        out_console.print(table)
        return
    paths: dict[str, str] = {}
    with user_errors():
        for name in names:
            src = fetch.source(name)
            if src.kind == "dataset":
                root = dest or fetch.dataset_root(name)
                folder = fetch.fetch_cifar10(root, progress=not json_out)
                paths[name] = str(folder.parent)
                if not json_out:
                    err_console.print(f"{name}: [bold]{folder.parent}[/] (use it as --data)")
            else:
                path = fetch.fetch(name, dest_dir=dest, progress=not json_out)
                paths[name] = str(path)
                if not json_out:
                    err_console.print(f"{name}: [bold]{path}[/]")
    if json_out:
        print_json({"fetched": paths})


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("fetch")(fetch_cmd)
