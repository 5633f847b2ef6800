"""Recipes: chained compression pipelines (train/distill -> prune -> quantize -> export -> measure).

``load_recipe(path)`` validates a recipe YAML (:mod:`edgeslim.recipe.schema`); ``run_recipe(recipe,
db=..., out_dir=...)`` runs its unfinished steps, each through an existing task function
(:mod:`edgeslim.recipe.steps`), and records one store record per step (:mod:`edgeslim.recipe.runner`).
The command is ``edgeslim run RECIPE.yaml``; see docs/recipes.md.
"""

from edgeslim.recipe.runner import RecipeOutcome, StepOutcome, run_recipe, step_key
from edgeslim.recipe.schema import (
    QUANTIZE_LAST,
    STEP_TYPES,
    DataSpec,
    DistillStep,
    ExportStep,
    MeasureStep,
    ModelRef,
    PruneStep,
    QuantizeStep,
    Recipe,
    Step,
    TrainStep,
    load_recipe,
    parse_recipe,
)
from edgeslim.recipe.steps import StepContext, StepInput, StepResult, onnx_weight_stats, run_step

__all__ = [
    "QUANTIZE_LAST",
    "STEP_TYPES",
    "DataSpec",
    "DistillStep",
    "ExportStep",
    "MeasureStep",
    "ModelRef",
    "PruneStep",
    "QuantizeStep",
    "Recipe",
    "RecipeOutcome",
    "Step",
    "StepContext",
    "StepInput",
    "StepOutcome",
    "StepResult",
    "TrainStep",
    "load_recipe",
    "onnx_weight_stats",
    "parse_recipe",
    "run_recipe",
    "run_step",
    "step_key",
]
