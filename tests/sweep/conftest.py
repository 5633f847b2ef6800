"""Helpers for sweep tests: small experiment files over the tiny CIFAR fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_helpers import experiment_yaml


@pytest.fixture
def write_experiment(tmp_path: Path, tiny_cifar: Path):  # type: ignore[no-untyped-def]
    def write(name: str = "exp.yaml", **overrides: object) -> Path:
        path = tmp_path / name
        path.write_text(experiment_yaml(tiny_cifar, **overrides))
        return path

    return write
