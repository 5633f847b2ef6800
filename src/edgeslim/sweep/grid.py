"""Grid expansion: an experiment becomes recipes, and the recipes become nodes for the one runner.

Per model: a **baseline** recipe ``[start, measure]`` and, per grid point, a **trial** recipe
``[start, prune|quantize, measure]``. All of a model's recipes begin with the same start step, so
they share its node (the pretrained model is materialized, or trained from scratch, once). Keys come
from :mod:`edgeslim.engine.keys`, so the same settings written as a recipe file for ``edgeslim run``
give the same keys (and reuse the same results in the same store).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeslim.engine.plan import Node, merge, plan_recipe
from edgeslim.engine.steps import PruneStep, QuantizeStep, Recipe, StartStep, Step
from edgeslim.sweep.experiment import Experiment, MethodBlock, ModelEntry, method_config, trains
from edgeslim.tasks.recovery import Recovery, split_finetune
from edgeslim.train import TrainConfig


def _value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def start_step(entry: ModelEntry) -> StartStep:
    return StartStep(
        name=f"{entry.label}/start",
        model=entry.name,
        weights=Path(entry.weights) if entry.weights else None,
        num_classes=entry.num_classes,
        train=TrainConfig.from_dict(entry.train) if entry.train else None,
        init=entry.init,
        pretrained=entry.pretrained,
    )


def compress_step(experiment: Experiment, block: MethodBlock, combo: dict[str, Any], name: str) -> Step:
    """The prune or quantize step of one grid point (the same step types recipes use)."""
    config = method_config(block, combo)
    method = str(combo["method"])
    finetune = recovery = None
    if block.finetune and trains(block, method):
        train_part, rec_part = split_finetune(block.finetune)
        finetune = TrainConfig.from_dict(train_part)
        recovery = Recovery.from_dict(rec_part) if rec_part else Recovery()
    if block.family == "prune":
        layout = str(combo.get("format", "dense"))
        return PruneStep(
            name=name,
            config=config,
            select=experiment.layers,
            train=finetune,
            layout=layout,
            recovery=recovery,
        )
    return QuantizeStep(name=name, config=config, train=finetune, recovery=recovery)


def recipes(experiment: Experiment) -> list[tuple[Recipe, dict[str, Any]]]:
    """Every recipe of the sweep with its labels (model, trial name): baselines first per model."""
    out: list[tuple[Recipe, dict[str, Any]]] = []
    measure = experiment.measure
    for entry in experiment.models:
        start = start_step(entry)
        base_name = f"{entry.label}/baseline"
        out.append(
            (
                Recipe(name=base_name, start=start, data=experiment.data, steps=(measure,)),
                {"model": entry.label, "trial": base_name},
            )
        )
        names: dict[str, int] = {}
        for block in experiment.methods:
            for combo in block.combinations():
                method = str(combo["method"])
                label = " ".join(f"{k}={_value(v)}" for k, v in combo.items() if k != "method")
                name = f"{entry.label}/{method}" + (f" {label}" if label else "")
                names[name] = names.get(name, 0) + 1
                if names[name] > 1:
                    name = f"{name} #{names[name]}"
                step = compress_step(experiment, block, combo, f"{name} [{block.family}]")
                recipe = Recipe(name=name, start=start, data=experiment.data, steps=(step, measure))
                out.append((recipe, {"model": entry.label, "trial": name}))
    return out


def expand(experiment: Experiment) -> list[Node]:
    """The nodes of every recipe of the sweep, shared prefixes merged (one start node per model).

    A grid point that gives the same trial as another (two blocks with the same settings) is kept
    once.
    """
    plans = []
    for recipe, labels in recipes(experiment):
        steps = [recipe.start, *recipe.steps]
        names = [s.name for s in steps[:-1]] + [labels["trial"]]
        plans.append(plan_recipe(recipe, names=names, labels=labels))
    return merge(plans)


def trials(nodes: list[Node]) -> list[Node]:
    """The nodes that are trials (a measured chain; what reports show)."""
    return [n for n in nodes if n.labels.get("trial")]


__all__ = ["compress_step", "expand", "recipes", "start_step", "trials"]
