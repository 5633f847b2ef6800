"""Terminal output: rich tables on stderr, one JSON object on stdout, and error mapping."""

from __future__ import annotations

import json
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer._click import exceptions as click_errors  # typer 0.29 vendors click as typer._click
from typer.core import TyperGroup

from edgeslim.errors import EdgeslimError
from edgeslim.methods import methods


def _console(stderr: bool) -> Console:
    """A terminal gets rich's usual output; a pipe or log file gets plain, complete tables: no
    colour codes, no width limit (rich would wrap or cut columns at 80), every row."""
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return probe
    return Console(stderr=stderr, width=10_000, no_color=True, highlight=False, emoji=False)


#: ``--json`` on every command that prints figures (here, not in :mod:`edgeslim.cli.options`,
#: so that the light commands of :mod:`edgeslim.cli.entry` need not import the library).
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")]

#: Human-readable output goes to stderr so that stdout carries only ``--json`` output.
err_console = _console(stderr=True)
out_console = _console(stderr=False)


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit with ``code``; never a traceback for user errors."""
    _error_line(message)
    raise typer.Exit(code)


def _error_line(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _warning_note(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """A Python warning in the CLI (``train --resume`` with changed settings) as a one-line note,
    not ``path:line: UserWarning:`` plus a source line."""
    del filename, lineno, file, line
    kind = "" if issubclass(category, UserWarning) else f"{category.__name__}: "
    err_console.print(
        f"[yellow]note:[/] {kind}{escape(' '.join(str(message).split()))}", highlight=False, soft_wrap=True
    )


class OneLineErrors(TyperGroup):
    """The root command group: a usage error (``train --epochs -1``) is one line, not a box.

    typer/click print bad options in a 5-6 line panel; here the group runs click in non-standalone
    mode and shows ``error: <click's message> (see edgeslim CMD --help)`` on one line, exit 2, like
    every other user error. Help screens, ``--version`` and exit codes are unchanged.
    """

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        warnings.showwarning = _warning_note
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click_errors.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "edgeslim"
            text = " ".join(exc.format_message().split())
            _error_line(f"{text} (see {where} --help)")
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            _error_line(" ".join(exc.format_message().split()))
            sys.exit(exc.exit_code)
        except typer.Abort:
            err_console.print("[bold red]error:[/] aborted", highlight=False)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


#: Library field -> flag for the options several commands share (:mod:`edgeslim.cli.options`).
COMMON_FLAGS: dict[str, str] = {
    "ModelSource.name": "--model",
    "ModelSource.weights": "--weights",
    "ModelSource.checkpoint": "--checkpoint",
    "ModelSource.num_classes": "--num-classes",
    "DataSource.path": "--data",
    "DataSource.val_fraction": "--val-fraction",
    "InputSize.image_size": "--image-size",
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
    except (MemoryError, RuntimeError) as exc:
        # sizes within the bounds can still not fit together (a batch of 4,096 at 1,024 px): the
        # allocator's refusal is one line, exit 1 (a run that failed, not a bad flag); bugs still raise
        if not _out_of_memory(exc):
            raise
        detail = f": {_one_line(exc)}" if str(exc).strip() else ""
        fail(f"out of memory{detail}; use a smaller --batch-size, --image-size or model", 1)


#: How torch's allocators word a refused allocation (CPU, CUDA, MPS).
_OOM_TEXT = ("can't allocate memory", "out of memory", "not enough memory")


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or any(t in str(exc).lower() for t in _OOM_TEXT)


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of ``exc``'s message (torch's allocator adds a traceback-like tail), shortened."""
    text = str(exc).strip().splitlines()[0]
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*(err == 0\.\s*)?", "", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    """Sizes in one unit system everywhere (CLI and report): kB, MB, GB are powers of 10 (1 MB =
    10^6 bytes), as budgets like ``--max-size-mb`` are."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1000
    return f"{n} B"


def fmt_seconds(seconds: float | None) -> str:
    """``42 s``, ``12.5 min``, ``3.2 h``: the unit a person reads a duration in."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def plan_table(title: str, plan: dict[str, Any]) -> Table:
    """A dry run's plan (``PlanEstimate.to_dict()``): every node, whether it would run, its estimate."""
    table = Table(title=title, title_justify="left")
    for name, justify in (("#", "right"), ("step", "left"), ("kind", "left"), ("state", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("estimate", justify="right")
    table.add_column("what it does", overflow="fold")
    for i, node in enumerate(plan["nodes"]):
        done = node["state"] == "done"
        took = f"took {fmt_seconds(node['took_s'])}" if node.get("took_s") is not None else "skipped"
        table.add_row(
            str(i),
            escape(node["name"]),
            node["kind"] + (" (alone)" if node.get("exclusive") else ""),
            node["state"],
            took if done else "~" + fmt_seconds(node["seconds"]),
            escape(node["basis"]),
        )
    return table


def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}%"


Formatter = Callable[[Any], str]
