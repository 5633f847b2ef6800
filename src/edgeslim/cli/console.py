"""Terminal output: rich tables on stderr, one JSON object on stdout, and error mapping."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from edgeslim.errors import EdgeslimError
from edgeslim.methods import methods

#: Human-readable output goes to stderr so that stdout carries only ``--json`` output.
err_console = Console(stderr=True)
out_console = Console()


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit with ``code``; never a traceback for user errors."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


#: Library field -> flag for the options several commands share (:mod:`edgeslim.cli.options`).
COMMON_FLAGS: dict[str, str] = {
    "ModelSource.name": "--model",
    "ModelSource.weights": "--weights",
    "ModelSource.checkpoint": "--checkpoint",
    "ModelSource.num_classes": "--num-classes",
    "DataSource.path": "--data",
    "DataSource.val_fraction": "--val-fraction",
    "TrainConfig.epochs": "--epochs",
    "TrainConfig.batch_size": "--batch-size",
    "TrainConfig.lr": "--lr",
    "TrainConfig.grad_clip": "--grad-clip",
}


def cli_message(exc: EdgeslimError, flags: Mapping[str, str] | None = None) -> str:
    """``exc``'s message in the CLI's words: each field it names is shown with the flag that sets it.

    Library errors name config fields and function parameters (``FilterPruning.ratio must be in
    [0, 1)``) and carry the field they are about in ``exc.field``; ``flags`` maps fields to this
    command's flags (merged over :data:`COMMON_FLAGS`), giving ``--ratio (FilterPruning.ratio) must
    be in [0, 1)``. An ``exc.field`` the message does not spell out is put in front (``--data:
    ...``); fields the command has no flag for are left as the library wrote them.
    """
    message = str(exc)
    table = {**COMMON_FLAGS, **(flags or {})}
    field = getattr(exc, "field", None)
    named = False
    for name in sorted(table, key=len, reverse=True):
        pattern = re.compile(rf"(?<![\w.]){re.escape(name)}(?![\w])")
        shown = f"{table[name]} ({name})"
        if pattern.search(message):
            message = pattern.sub(shown.replace("\\", "\\\\"), message)
            named = named or name == field
    if field in table and not named:
        message = f"{table[field]}: {message}"
    return message


def method_flags(family: str, param_flags: Mapping[str, str]) -> dict[str, str]:
    """Field -> flag for every registered method of ``family``: ``{"ratio": "--ratio"}`` gives
    ``FilterPruning.ratio``, ``MagnitudePruning.sparsity`` (its alias) ... -> ``--ratio``, and
    ``prune.method`` -> ``--method``."""
    table = {f"{family}.method": "--method"}
    for spec in methods():
        if spec.family != family:
            continue
        for param, flag in param_flags.items():
            table[f"{spec.config_cls.__name__}.{spec.aliases.get(param, param)}"] = flag
    return table


@contextmanager
def user_errors(flags: Mapping[str, str] | None = None) -> Iterator[None]:
    """Turn domain errors into a one-line message (fields named by ``flags``) and their exit code."""
    try:
        yield
    except EdgeslimError as exc:
        fail(cli_message(exc, flags), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)


def print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def key_value_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for key, value in rows:
        table.add_row(key, value)
    return table


def fmt_int(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{n} B"


def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}%"


Formatter = Callable[[Any], str]
