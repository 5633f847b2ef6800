"""The recipe task behind ``edgeslim run``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgeslim.recipe import RecipeOutcome


def recipe_task(
    recipe: Path,
    *,
    db: Path | None = None,
    out_dir: Path | None = None,
    num_threads: int | None = None,
    progress: bool = True,
) -> RecipeOutcome:
    """Validate the recipe file, then run its unfinished steps, one store record per step.

    ``db`` defaults to the sweeps' store (runs/sweeps.db); ``out_dir`` to ``recipes/<name>``
    beside it. Running again resumes at the first unfinished step (see docs/recipes.md).
    """
    from edgeslim.recipe import load_recipe, run_recipe
    from edgeslim.sweep.runner import DEFAULT_DB

    parsed = load_recipe(recipe)
    return run_recipe(
        parsed,
        db=db if db is not None else DEFAULT_DB,
        out_dir=out_dir,
        num_threads=num_threads,
        progress=progress,
    )
