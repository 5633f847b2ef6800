"""Helpers shared by the benchmark scripts: data location, markdown tables, docs/benchmarks.md."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from edgeslim.errors import ConfigError
from edgeslim.io import atomic_write_text
from edgeslim.pruning import FilterPruning, ratio_for_mac_reduction

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"


def data_root() -> Path:
    """EDGESLIM_DATA, else ../shared/data beside the checkout."""
    env = os.environ.get("EDGESLIM_DATA")
    root = Path(env) if env else REPO.parent / "shared" / "data"
    if not root.is_dir():
        raise SystemExit(f"data folder {root} not found: set EDGESLIM_DATA")
    return root.resolve()


def limits(value: str) -> tuple[int | None, int | None]:
    """``--limit`` of the training benchmarks: (train images, test images); ``small`` proves a script."""
    if value == "full":
        return None, None
    if value == "small":
        return 2000, 1000
    return int(value), None


def ratio_for(model: torch.nn.Module, target: float, settings: FilterPruning) -> tuple[FilterPruning, str]:
    """``settings`` with the ratio for ``target`` x fewer MACs, and how its ``round_to`` was chosen.

    A multiple that cannot reach the target (16 keeps resnet56's 16-channel blocks whole, so 2x is
    out of reach with its residual streams kept) is halved until one can."""
    measured = multiple = int(settings.round_to)
    while True:
        try:
            ratio, _ = ratio_for_mac_reduction(
                model,
                target,
                example_inputs=torch.zeros(1, 3, 32, 32),
                config=settings.replace(round_to=multiple),
            )
            break
        except ConfigError:
            if multiple == 1:
                raise
            multiple //= 2
    note = (
        f"round_to {multiple} (measured)"
        if multiple == measured
        else (f"round_to {multiple} (the measured {measured} cannot reach {target:g}x)")
    )
    return settings.replace(ratio=ratio, round_to=multiple), note


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.2f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, body: str, doc: Path = DOC) -> Path:
    """Replace (or append) the section between this benchmark's markers in ``doc`` (docs/benchmarks.md)."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    text = (
        doc.read_text()
        if doc.exists()
        else "# Benchmarks\n\nEvery table here is written by a script in `benchmarks/`; rerun it to refresh.\n"
    )
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    atomic_write_text(doc, text)
    return doc
