"""Issue 17: every ``edgeslim`` line in the README can be pasted as it stands - each parses through the
real command tree (existing commands and flags, valid choices and ranges, no ``[--flag]`` or ``a|b``
placeholders). ``benchmarks/readme_tour.py`` runs the tour blocks for real in a fresh clone."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer._click.core import Command, Context
from typer._click.exceptions import UsageError

from edgeslim.cli.app import app

README = Path(__file__).resolve().parents[2] / "README.md"


def bash_commands(markdown: str) -> list[list[str]]:
    """The ``edgeslim`` command lines of every bash block, continuations joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "edgeslim":
                commands.append(words[1:])
    return commands


def parse(args: list[str]) -> None:
    """Parse ``args`` the way ``edgeslim ARGS`` would, down to the leaf command, without running it;
    a placeholder (``[--flag]``, ``onnx|openvino``) is refused even where the option takes any text."""
    for word in args:
        if word.startswith("[") or "|" in word:
            raise UsageError(f"{word!r} is a placeholder, not something to paste")
    command: Command = typer.main.get_command(app)
    ctx: Context = command.make_context("edgeslim", list(args))
    while hasattr(command, "resolve_command"):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            return
        name, found, rest = command.resolve_command(ctx, rest)
        assert name is not None and found is not None
        command = found
        ctx = command.make_context(name, rest, parent=ctx)


def test_the_readme_has_commands() -> None:
    commands = bash_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= 25
    assert {c[0] for c in commands} >= {"models", "eval", "train", "prune", "quantize", "export", "sweep"}


@pytest.mark.parametrize("args", bash_commands(README.read_text(encoding="utf-8")), ids=" ".join)
def test_every_readme_command_parses(args: list[str]) -> None:
    parse(args)


@pytest.mark.parametrize(
    "line",
    [
        "edgeslim prune --model resnet20 --ratio 0.3 [--no-distill] --out x.pt",
        "edgeslim export --model resnet20 --format onnx|openvino --out x.onnx",
        "edgeslim bench x.onnx --runtime all -b 0",
        "edgeslim train --model resnet20 --epochz 1",
        "edgeslim nas serch runs/supernet.pt",
    ],
)
def test_placeholders_and_stale_flags_are_caught(line: str) -> None:
    (args,) = bash_commands(f"```bash\n{line}\n```")
    with pytest.raises(UsageError):
        parse(args)
