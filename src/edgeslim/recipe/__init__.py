"""Recipes: chained compression pipelines (train/distill -> prune -> quantize -> export -> measure).

``load_recipe(path)`` validates a recipe YAML (:mod:`edgeslim.recipe.schema`) into an engine
:class:`~edgeslim.engine.steps.Recipe`; ``run_recipe(recipe, db=..., out_dir=...)`` runs its unfinished
steps on the one runner (:mod:`edgeslim.engine`), one store record per step. The command is
``edgeslim run RECIPE.yaml``; see docs/recipes.md.
"""

from edgeslim.engine.steps import (
    DataSpec,
    DistillStep,
    ExportStep,
    MeasureStep,
    PruneStep,
    QuantizeStep,
    Recipe,
    StartStep,
    Step,
    TrainStep,
)
from edgeslim.recipe.runner import RecipeOutcome, StepOutcome, dry_run_recipe, recipe_task, run_recipe
from edgeslim.recipe.schema import QUANTIZE_LAST, RECIPE_STEPS, load_recipe, parse_recipe

__all__ = [
    "QUANTIZE_LAST",
    "RECIPE_STEPS",
    "DataSpec",
    "DistillStep",
    "ExportStep",
    "MeasureStep",
    "PruneStep",
    "QuantizeStep",
    "Recipe",
    "RecipeOutcome",
    "StartStep",
    "Step",
    "StepOutcome",
    "TrainStep",
    "dry_run_recipe",
    "load_recipe",
    "parse_recipe",
    "recipe_task",
    "run_recipe",
]
