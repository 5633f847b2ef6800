"""What a width search can change in a model: coupled channel groups, knobs, and layer widths.

A :class:`ModelLayout` traces the model once: its prunable channel groups (a residual stream's
channels are one group across all blocks that add to it, so residual channels are searched too),
each conv/Linear's shape as the runtime sees it, and which group sets each layer's input and output
widths. A **plan** maps every group to the channels it keeps; :meth:`ModelLayout.widths` turns a
plan into per-layer (in, out) widths without pruning anything, which is what makes predicting the
latency of thousands of plans cheap. ``residual="keep"`` leaves residual streams out (only the widths
inside blocks are searched; see :class:`~edgeslim.pruning.FilterPruning`). Groups of the same role in
one stage (same width, same input resolution, same kind: a residual stream or a block's inner width)
form one **knob**, so a search over ResNet-56 moves 9 knobs rather than 30 groups; :func:`plan_config`
expresses a plan as an ordinary :class:`~edgeslim.pruning.FilterPruning` config (``layer_ratios``)
that the engine, recipes and ``edgeslim prune`` understand.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from edgeslim.pruning import FilterPruning
from edgeslim.pruning.configs import Criterion
from edgeslim.pruning.dependency import build_dependency_graph, channel_groups, is_depthwise
from edgeslim.pruning.structured import keeps_whole
from edgeslim.search.profile import LayerShape
from edgeslim.select import LayerSelection, select_layers

__all__ = ["Knob", "ModelLayout", "Plan", "plan_config"]

Plan = dict[str, int]  # group root name -> channels kept


@dataclasses.dataclass(frozen=True)
class Knob:
    """Groups that a search moves together (same size, resolution and role)."""

    name: str
    groups: tuple[str, ...]
    size: int
    min_keep: int


def _shape_of(module: nn.Module, x: torch.Tensor) -> LayerShape | None:
    if isinstance(module, nn.Linear):
        return LayerShape("linear", module.in_features, module.out_features)
    if isinstance(module, nn.Conv2d) and (module.groups == 1 or is_depthwise(module)):
        pad = module.padding if isinstance(module.padding, tuple) else (0, 0)
        return LayerShape(
            "depthwise" if is_depthwise(module) else "conv",
            module.in_channels,
            module.out_channels,
            (int(module.kernel_size[0]), int(module.kernel_size[1])),
            (int(module.stride[0]), int(module.stride[1])),
            (int(pad[0]), int(pad[1])),
            int(x.shape[-2]),
            int(x.shape[-1]),
        )
    return None


class ModelLayout:
    """The searchable structure of ``model`` for inputs shaped ``input_shape`` (C, H, W)."""

    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, ...],
        *,
        select: LayerSelection | None = None,
        round_to: int = 1,
        max_layer_ratio: float = 0.9,
        min_channels: int = 1,
        residual: Literal["prune", "keep"] = "prune",
    ) -> None:
        self.input_shape = tuple(input_shape)
        self.round_to = max(1, round_to)
        example = torch.zeros(1, *input_shape)
        self.layers: dict[str, LayerShape] = {}
        hooks = []
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear | nn.Conv2d):

                def hook(m: nn.Module, args: tuple[Any, ...], _out: Any, name: str = name) -> None:
                    shape = _shape_of(m, args[0])
                    if shape is not None:
                        self.layers[name] = shape

                hooks.append(module.register_forward_hook(hook))
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(example)
        finally:
            for h in hooks:
                h.remove()
            model.train(was_training)
        graph = build_dependency_graph(model, example)
        selected = select_layers(model, select)
        groups = [
            g
            for g in channel_groups(graph, model, selected.values())
            if g.problem is None and not keeps_whole(residual, g)
        ]
        self.sizes: dict[str, int] = {g.root_name: g.size for g in groups}
        self.min_keep: dict[str, int] = {}
        for g in groups:
            floor = max(1, min_channels, g.size - math.floor(g.size * max_layer_ratio + 1e-9))
            self.min_keep[g.root_name] = min(g.size, math.ceil(floor / self.round_to) * self.round_to)
        # which group sets each layer's output and input widths
        self.out_group: dict[str, str] = {}
        self.in_group: dict[str, str] = {}
        for g in groups:
            for m in g.members:
                if m.name not in self.layers:
                    continue
                if m.kind == "out":
                    self.out_group[m.name] = g.root_name
                    if self.layers[m.name].kind == "depthwise":
                        self.in_group[m.name] = g.root_name
                else:
                    self.in_group[m.name] = g.root_name
        self.knobs = self._knobs(groups)

    def _knobs(self, groups: list[Any]) -> list[Knob]:
        by_role: dict[tuple[Any, ...], list[str]] = {}
        for g in groups:
            root = self.layers.get(g.root_name)
            resolution = (root.height, root.width, root.stride) if root is not None else None
            role = "stream" if g.residual else "inner"
            by_role.setdefault((g.size, resolution, role), []).append(g.root_name)
        knobs = []
        for (size, _, role), names in by_role.items():
            label = names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} {role})"
            knobs.append(Knob(label, tuple(names), size, max(self.min_keep[n] for n in names)))
        return knobs

    def dense_plan(self) -> Plan:
        return dict(self.sizes)

    def floor_plan(self) -> Plan:
        """Every group at the fewest channels it may keep."""
        return dict(self.min_keep)

    def knob_plan(self, keeps: Mapping[str, int]) -> Plan:
        """A plan from per-knob kept channels (knob name -> count)."""
        plan = self.dense_plan()
        for knob in self.knobs:
            if knob.name in keeps:
                for g in knob.groups:
                    plan[g] = keeps[knob.name]
        return plan

    def knob_choices(self, knob: Knob) -> list[int]:
        """The kept counts a knob may take, largest first (multiples of ``round_to``)."""
        r = self.round_to
        values = {knob.size} | {
            k for k in range(knob.min_keep, knob.size + 1) if k % r == 0 and k >= knob.min_keep
        }
        return sorted(values, reverse=True)

    def widths(self, plan: Mapping[str, int]) -> dict[str, tuple[int, int]]:
        """(in, out) widths of every layer whose width the plan changes."""
        out: dict[str, tuple[int, int]] = {}
        for name, shape in self.layers.items():
            cin, cout = shape.in_channels, shape.out_channels
            og, ig = self.out_group.get(name), self.in_group.get(name)
            if og is not None:
                cout = plan.get(og, cout)
            if ig is not None:
                cin = plan.get(ig, cin)
            if (cin, cout) != (shape.in_channels, shape.out_channels):
                out[name] = (cin, cout)
        return out

    def ratios(self, plan: Mapping[str, int]) -> dict[str, float]:
        """Share of channels each pruned group loses."""
        return {g: (self.sizes[g] - k) / self.sizes[g] for g, k in plan.items() if k < self.sizes[g]}

    def uniform_plan(self, ratio: float) -> Plan:
        """Every group loses ``ratio`` of its channels (kept counts rounded, within the limits)."""
        plan = {}
        for g, size in self.sizes.items():
            keep = size - math.floor(size * ratio + 1e-9)
            keep = max(self.min_keep[g], math.floor(keep / self.round_to + 0.5) * self.round_to)
            plan[g] = min(size, keep)
        return plan


def plan_config(
    layout: ModelLayout, plan: Mapping[str, int], *, criterion: Criterion = "l1"
) -> FilterPruning:
    """A :class:`FilterPruning` config (layer scope, ``layer_ratios``) that prunes to exactly ``plan``."""
    entries = tuple(f"{g}={ratio!r}" for g, ratio in sorted(layout.ratios(plan).items()))
    return FilterPruning(
        ratio=0.0, criterion=criterion, layer_ratios=entries, max_layer_ratio=0.99, min_channels=1
    )
