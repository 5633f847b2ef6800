"""Planning: recipes become nodes (one per step), shared prefixes merged by key.

A node is what the runner schedules and the store records: its key, the step, the key of the node
whose artifact it reads (``depends_on``), the data and labels for people (names, model label,
trial name). Two recipes that start the same way (a sweep's trials of one model all start from the
same pretrained weights) produce the same first nodes, which run once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from edgeslim.engine.keys import step_key
from edgeslim.engine.steps import DataSpec, Recipe, Step


@dataclasses.dataclass(frozen=True)
class Node:
    """One step of one or more recipes, ready to be recorded and run."""

    key: str
    name: str
    step: Step
    data: DataSpec
    depends_on: str | None
    labels: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.step.type

    def config(self) -> dict[str, Any]:
        """What the store keeps and a worker receives (plain data)."""
        return {"step": self.step.to_dict(), "data": self.data.to_dict(), "labels": dict(self.labels)}


def plan_recipe(
    recipe: Recipe, *, names: Iterable[str] | None = None, labels: dict[str, Any] | None = None
) -> list[Node]:
    """The nodes of one recipe in order. ``names`` labels each step's record (start first);
    ``labels`` (e.g. the sweep trial a chain belongs to) go with the last node."""
    steps: list[Step] = [recipe.start, *recipe.steps]
    given = list(names) if names is not None else [s.name or f"{i:02d}-{s.type}" for i, s in enumerate(steps)]
    nodes: list[Node] = []
    parent: str | None = None  # the last step that wrote an artifact: what the next step reads
    for i, (step, name) in enumerate(zip(steps, given, strict=True)):
        key = step_key(step, recipe.data, parent)
        last = i == len(steps) - 1
        node_labels = {"recipe": recipe.name, "position": i, **((labels or {}) if last else {})}
        nodes.append(Node(key, name, step, recipe.data, parent, node_labels))
        if step.WRITES_ARTIFACT:  # a measure step hands its input on: changing it reruns nothing after it
            parent = key
    return nodes


def merge(plans: Iterable[list[Node]]) -> list[Node]:
    """All nodes of several recipes, each key once (the first plan that made it names it), parents
    before children."""
    seen: dict[str, Node] = {}
    for nodes in plans:
        for node in nodes:
            if node.key not in seen:
                seen[node.key] = node
            elif node.labels.get("trial") and not seen[node.key].labels.get("trial"):
                seen[node.key] = dataclasses.replace(seen[node.key], labels={**node.labels})
    return list(seen.values())


__all__ = ["Node", "merge", "plan_recipe"]
