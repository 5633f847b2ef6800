"""Shared pieces of the recipe tests: a teacher checkpoint and a recipe writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from edgeslim.checkpoint import save_checkpoint
from edgeslim.models import create_model


@pytest.fixture(scope="session")
def teacher_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet20_tiny checkpoint standing in for a trained teacher (weights fixed by the seed)."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(
        path, create_model("resnet20_tiny"), model_name="resnet20_tiny", model_kwargs={"num_classes": 10}
    )
    return path


WriteRecipe = Callable[..., Path]


@pytest.fixture
def write_recipe(tmp_path: Path, tiny_cifar: Path) -> WriteRecipe:
    """``write_recipe(steps_yaml, name=..., model=...)`` -> a recipe file reading ``tiny_cifar``."""

    def write(
        steps: str, *, name: str = "tiny", model: str = "{name: resnet20_tiny}", file: str = "r.yaml"
    ) -> Path:
        path = tmp_path / file
        path.write_text(
            f"name: {name}\nmodel: {model}\ndata: {{path: {tiny_cifar.parent}, seed: 0}}\nthreads: 1\n"
            f"steps:\n{steps}"
        )
        return path

    return write
