"""``edgeslim models``: the zoo, answered from an on-disk catalog so that listing it needs no torch.

Building the rows means importing every model (torch, 1-3 s) and, for ``--details``, building each
one to count parameters and MACs (a minute with the ImageNet-size models). The rows only change
when the zoo's code, edgeslim or torch changes, so they are kept in
``$EDGESLIM_CACHE/catalog/models-<key>.json``, the key hashing those versions and the size and
modification time of every source file that defines or counts a model. A miss (first call, or
any of those changed) computes the rows through :func:`edgeslim.tasks.list_models_task`; that
import is inside the functions on purpose, because avoiding it is this module's reason to exist.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import importlib.metadata
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

import edgeslim
from edgeslim.cli.console import JsonOpt, fmt_int, out_console, print_json, user_errors
from edgeslim.errors import ConfigError
from edgeslim.fetch import cache_dir

#: Packages whose code decides the rows: the zoo itself and the parameter/MAC counting.
_SOURCES = ("models", "bench")
#: Bumped when the row layout changes.
_FORMAT = 1


def catalog_key() -> str:
    """A hash of what the rows depend on; statting ~40 files costs about a millisecond."""
    root = Path(edgeslim.__file__).parent
    parts = [f"format={_FORMAT}", f"edgeslim={edgeslim.__version__}", f"torch={_torch_version()}"]
    for package in _SOURCES:
        for path in sorted((root / package).rglob("*.py")):
            stat = path.stat()
            parts.append(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _torch_version() -> str:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def catalog_path() -> Path:
    return cache_dir() / "catalog" / f"models-{catalog_key()}.json"


def _read_catalog(path: Path) -> dict[str, dict[str, Any]] | None:
    """The cached rows by name, or None when missing or unreadable (a damaged file is a miss)."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
        return {row["name"]: row for row in rows}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_catalog(path: Path, rows: dict[str, dict[str, Any]]) -> None:
    """Atomically (a reader never sees half a file); stale catalogs of older keys are removed.
    A cache that cannot be written (read-only home) only costs speed, never the listing."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".models-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"rows": list(rows.values())}, handle)
        os.replace(tmp, path)
        for old in path.parent.glob("models-*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def zoo_rows(
    *, pattern: str | None = None, include_tiny: bool = False, details: bool = False
) -> list[dict[str, Any]]:
    """The same rows as :func:`edgeslim.tasks.list_models_task`, from the catalog when it is valid.

    ``details`` rows missing from the catalog are counted now and added to it, so the first
    ``models --details`` pays for them once.
    """
    path = catalog_path()
    catalog = _read_catalog(path)
    if catalog is None:
        from edgeslim import tasks  # the slow path: the whole zoo and torch

        catalog = {row["name"]: row for row in tasks.list_models_task(include_tiny=True)}
        _write_catalog(path, catalog)
    names = [
        name
        for name in sorted(catalog)
        if (not pattern or fnmatch.fnmatch(name, pattern)) and (include_tiny or not catalog[name]["tiny"])
    ]
    if pattern and not names:
        raise ConfigError(f"no model matches {pattern!r}; run `edgeslim models` for the list")
    if details and any("macs" not in catalog[name] for name in names):
        from edgeslim import tasks

        for name in names:
            if "macs" not in catalog[name]:
                (counted,) = tasks.list_models_task(pattern=name, include_tiny=True, details=True)
                catalog[name] = counted
        _write_catalog(path, catalog)
    keep = ("params", "macs") if details else ()
    return [
        {key: value for key, value in catalog[name].items() if key not in ("params", "macs") or key in keep}
        for name in names
    ]


def models_cmd(
    pattern: Annotated[str | None, typer.Argument(help="Glob filter, e.g. 'resnet*'.")] = None,
    tiny: Annotated[bool, typer.Option("--tiny/--no-tiny", help="Include the tiny test variants.")] = False,
    details: Annotated[
        bool, typer.Option("--details", help="Also build each model to count parameters and MACs (cached).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """List the model zoo."""
    with user_errors():
        rows = zoo_rows(pattern=pattern, include_tiny=tiny, details=details)
    if json_out:
        print_json({"models": rows})
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} models", title_justify="left")
    columns = ("name", "family", "input") + (("params", "MACs") if details else ("description",))
    for col in columns:
        table.add_column(
            col, justify="right" if col in ("params", "MACs") else "left", no_wrap=col != "description"
        )
    for r in rows:
        cells = [r["name"], r["family"], "x".join(str(s) for s in r["input_size"])]
        cells += [fmt_int(r["params"]), fmt_int(r["macs"])] if details else [r["description"]]
        table.add_row(*cells)
    out_console.print(table)


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)


#: ``models`` alone, for the light root of :mod:`edgeslim.cli.entry`.
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
register(app)
