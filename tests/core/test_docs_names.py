"""Every Python name the docs give (`edgeslim.x.y` in backticks) resolves: a renamed or unexported
function must not leave the docs pointing at an AttributeError."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"`(edgeslim(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`")


def _names() -> list[str]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return sorted({m for f in files for m in NAME.findall(f.read_text(encoding="utf-8"))})


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_the_docs_name_python_objects() -> None:
    assert len(_names()) > 20


@pytest.mark.parametrize("dotted", _names())
def test_a_name_in_the_docs_resolves(dotted: str) -> None:
    assert _resolve(dotted) is not None
