"""Hostile YAML documents shared by the loader and CLI robustness tests."""

from __future__ import annotations

import itertools


def laughs(levels: int = 9, width: int = 9) -> str:
    """The alias "billion laughs": ``width ** levels`` values (9^9: 387 million) in a few hundred bytes."""
    names = [f"l{i}" for i in range(levels)]
    out = [f"{names[0]}: &{names[0]} [{', '.join(['lol'] * width)}]"]
    for prev, name in itertools.pairwise(names):
        out.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * width)}]")
    return "\n".join(out) + "\n"
