"""The ``edgeslim`` program: ``--help``, ``--version`` and ``models`` answer without importing torch.

Importing the whole CLI costs seconds (torch, onnx, matplotlib, the techniques), which every call
used to pay before doing anything. The root here knows each command's name and one-line help from
:data:`COMMANDS` and imports the module that defines a command only when that command is run or
its own help is asked for (click's lazy-subcommand pattern). ``models`` lives in the light
:mod:`edgeslim.cli.zoo`; the other commands come from :mod:`edgeslim.cli.app`, the complete
command tree (which tests and ``python -m edgeslim.cli.app`` use directly). A test keeps the table
equal to the commands' own help, so it cannot drift.
"""

from __future__ import annotations

import functools
import importlib
from typing import Annotated

import typer
from typer._click.core import Command, Context  # typer 0.29 vendors click as typer._click
from typer._click.formatting import HelpFormatter
from typer.core import TyperCommand, TyperGroup

import edgeslim
from edgeslim.cli.console import OneLineErrors, out_console

HELP = "Make CNN image classifiers small and fast for edge devices, and prove it with measurements."

_FULL = "edgeslim.cli.app"
#: Command -> (the module whose ``app`` defines it, its one-line help), in the order help lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("edgeslim.cli.zoo", "List the model zoo."),
    "eval": (_FULL, "Top-1/top-5 accuracy of a model or an exported artifact on a dataset split."),
    "train": (_FULL, "Train or fine-tune a model with a checkpoint every epoch (resumable)."),
    "bench": (
        _FULL,
        "Measure latency (median/p90), throughput, peak memory and size, on one runtime or all of them.",
    ),
    "prune": (
        _FULL,
        "Prune a model (unstructured, gradual or filter pruning), optionally fine-tune, and measure it.",
    ),
    "quantize": (
        _FULL,
        "Quantize a model, write real low-bit artifacts, and compare simulated with deployed accuracy.",
    ),
    "distill": (
        _FULL,
        "Train a student from a frozen teacher (Hinton KD, activation boundaries or FitNets hints).",
    ),
    "export": (_FULL, "Export a model to a deployable artifact and check it computes what PyTorch computes."),
    "run": (
        _FULL,
        "Run a recipe (train/distill -> prune -> quantize -> export -> measure); resumes where it stopped.",
    ),
    "sweep": (_FULL, "Run every combination of an experiment file (resumable: finished trials are skipped)."),
    "results": (
        _FULL,
        "All trial records of an experiment (config, status, metrics, timings, environment, errors).",
    ),
    "report": (
        _FULL,
        "Write one self-contained HTML report (works offline) and a PNG of each plot; with a budget "
        "(--max-latency-ms/--max-size-mb/--max-accuracy-drop) the page opens with its recommendation.",
    ),
    "recommend": (_FULL, "The best trials that fit the limits, and why; exit code 1 if none fits."),
    "profile": (
        _FULL,
        "Measure this machine's per-layer latency table for a model on a runtime, and its predictor.",
    ),
    "compress": (
        _FULL,
        "Search, fine-tune and measure the most accurate compressed model that fits a device budget.",
    ),
    "nas": (
        _FULL,
        "Hardware-aware architecture search: train a weight-sharing supernet, then search it for a device "
        "budget on measured latency.",
    ),
    "study": (
        _FULL,
        "Reproduce the published studies edgeslim follows (studies/): run a scale, then check each claim "
        "on the measurements.",
    ),
    "fetch": (_FULL, "Download weights or CIFAR-10 into the cache, verified against the published hashes."),
}


class LazyCommands(OneLineErrors):
    """Lists :data:`COMMANDS` from the table; imports a command's module only to run it."""

    _describing = False

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, short = COMMANDS[cmd_name]
        if self._describing:  # the root's help lists names and one-liners: nothing to import
            return TyperCommand(cmd_name, help=short)
        loaded = _load(module)
        if isinstance(loaded, TyperGroup):
            return loaded.get_command(ctx, cmd_name)
        return loaded

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        self._describing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._describing = False


@functools.cache
def _load(module: str) -> Command:
    """The click command tree of ``module``'s ``app`` (imported here, on first use, on purpose)."""
    return typer.main.get_command(importlib.import_module(module).app)


def _version(value: bool) -> None:
    if value:
        out_console.print(f"edgeslim {edgeslim.__version__}")
        raise typer.Exit()


def root_app(cls: type[OneLineErrors]) -> typer.Typer:
    """The root command (help, ``--version``); ``cls`` decides how it finds its commands."""
    app = typer.Typer(
        name="edgeslim",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        cls=cls,
    )

    @app.callback()
    def _root(
        version: Annotated[
            bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
        ] = False,
    ) -> None:
        """edgeslim: prune, quantize, distill and deploy CNNs, measured on real artifacts."""

    return app


app = root_app(LazyCommands)


def main() -> None:
    app()
