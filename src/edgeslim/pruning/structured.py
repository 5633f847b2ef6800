"""Structured (filter) pruning that physically removes channels.

:func:`prune_filters` removes the lowest-scoring output channels of the selected conv/Linear
layers together with everything coupled to them (BN entries, the next layers' input channels,
residual partners, concatenation slices, depthwise convs, SE gates, option-A shortcut maps), so
the result has smaller weight tensors and fewer MACs, not zeros. Saving a pruned model is
:func:`edgeslim.models.channels.channel_spec` plus its state_dict.

How many channels go (per coupled group of ``size`` channels):

- ``scope="layer"``: ``floor(size * ratio)``; every group loses the same share, except groups
  matching a ``layer_ratios`` glob (``"layer1.*.conv1=0.4"``, against the group's first layer),
  whose ratio is the last matching entry's (a per-layer width plan as plain config).
- ``scope="global"``: ``floor(total * ratio)`` over all prunable groups, lowest scores first,
  where each group's scores are divided by the group's mean score so layers of different fan-in
  compete fairly (a raw L1 norm grows with fan-in and would empty the early layers).
- ``round_to``: the kept count is rounded to the nearest multiple (halves keep more); a group whose
  share rounds to nothing is left alone.
- ``max_layer_ratio``: at most ``floor(size * max_layer_ratio)`` channels of a group go (lower for
  groups matching a ``layer_max_ratios`` glob), and at least ``min_channels`` (at least one) stay.
- ``iterative_steps``: step ``k`` of ``n`` prunes up to ``ratio * (1 - (1 - k/n)**3)`` (``schedule``
  cubic) or ``ratio * k / n`` (linear) of the original counts (a group's own ``layer_ratios`` ratio
  in place of ``ratio``), with ``finetune(model, k - 1)`` between steps; scores are recomputed every
  step.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch_pruning as tp
from torch import Tensor, nn

from edgeslim.bench.counting import count_macs, count_params
from edgeslim.errors import ConfigError, ModelError
from edgeslim.pruning.configs import FilterPruning
from edgeslim.pruning.dependency import (
    ChannelGroup,
    build_dependency_graph,
    channel_groups,
    group_members,
    is_depthwise,
    out_channels_of,
)
from edgeslim.pruning.importance import make_importance

__all__ = [
    "ChannelChange",
    "FilterPruningResult",
    "channels_to_keep",
    "prune_filters",
]

FinetuneFn = Callable[[nn.Module, int], None]
_EPS = 1e-9  # so that 0.3 * 10 counts as 3, not 2.9999999999999996


@dataclasses.dataclass(frozen=True)
class ChannelChange:
    """Output channels of one module before and after, and the original indices removed."""

    before: int
    after: int
    removed: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class FilterPruningResult:
    """What :func:`prune_filters` did.

    ``channels`` has an entry for every module whose output channels shrank (convs, Linears, BN,
    shortcuts); ``skipped`` maps selected layers that were kept whole to the reason.
    """

    config: FilterPruning
    channels: dict[str, ChannelChange]
    skipped: dict[str, str]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int

    @property
    def params_ratio(self) -> float:
        """Parameters after / before (0.5: half the parameters left)."""
        return self.params_after / self.params_before if self.params_before else 1.0

    @property
    def macs_ratio(self) -> float:
        """MACs after / before; ``1 / macs_ratio`` is the "x fewer MACs" factor."""
        return self.macs_after / self.macs_before if self.macs_before else 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON/YAML safe)."""
        return {
            "config": self.config.to_dict(),
            "channels": {
                name: {"before": c.before, "after": c.after, "removed": list(c.removed)}
                for name, c in self.channels.items()
            },
            "skipped": dict(self.skipped),
            "params_before": self.params_before,
            "params_after": self.params_after,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
        }


def channels_to_keep(
    size: int, ratio: float, *, round_to: int = 1, max_layer_ratio: float = 0.9, min_channels: int = 1
) -> int:
    """Layer scope: how many of ``size`` coupled channels remain when the ``ratio`` share goes."""
    removed = math.floor(size * ratio + _EPS)
    if removed <= 0:
        return size
    return _legal_keep(size - removed, size, round_to, _min_keep(size, max_layer_ratio, min_channels))


def _min_keep(size: int, max_layer_ratio: float, min_channels: int = 1) -> int:
    return min(size, max(1, min_channels, size - math.floor(size * max_layer_ratio + _EPS)))


def step_progress(config: FilterPruning, step: int) -> float:
    """How far step ``step`` (1-based) of ``iterative_steps`` goes towards the final ratios (0..1]."""
    t = step / config.iterative_steps
    if config.schedule == "linear":
        return t
    return 1.0 - (1.0 - t) ** 3


def step_fraction(config: FilterPruning, step: int) -> float:
    """The share of the original channels pruned after step ``step`` (1-based) of ``iterative_steps``
    (``ratio``'s schedule; a group with a ``layer_ratios`` entry follows :func:`group_ratio` instead)."""
    return config.ratio * step_progress(config, step)


def group_ratio(config: FilterPruning, root_name: str) -> float:
    """``ratio``, replaced by the last ``layer_ratios`` entry whose glob matches ``root_name``."""
    ratio = config.ratio
    for entry in config.layer_ratios:
        pattern, _, value = entry.partition("=")
        if fnmatch.fnmatchcase(root_name, pattern.strip()):
            ratio = float(value)
    return ratio


KEPT_STREAM = "a residual stream, kept whole (FilterPruning.residual='keep')"


def keeps_whole(residual: str, group: ChannelGroup) -> bool:
    """Whether ``residual="keep"`` (of a FilterPruning config or a width search) leaves ``group``
    whole: it is a residual stream."""
    return residual == "keep" and group.residual


def group_max_ratio(config: FilterPruning, root_name: str) -> float:
    """``max_layer_ratio``, lowered by every ``layer_max_ratios`` glob that matches ``root_name``."""
    cap = config.max_layer_ratio
    for entry in config.layer_max_ratios:
        pattern, _, value = entry.partition("=")
        if fnmatch.fnmatchcase(root_name, pattern.strip()):
            cap = min(cap, float(value))
    return cap


def _group_min_keep(g: ChannelGroup, original: dict[tuple[str, ...], int], config: FilterPruning) -> int:
    return _min_keep(original[g.key], group_max_ratio(config, g.root_name), config.min_channels)


def _legal_keep(keep: int, size: int, round_to: int, min_keep: int) -> int:
    """Clamp to [min_keep, size] and round to a multiple of ``round_to`` (nearest, halves up)."""
    keep = max(keep, min_keep)
    if round_to > 1:
        keep = math.floor(keep / round_to + 0.5) * round_to
        keep = max(keep, math.ceil(min_keep / round_to) * round_to)
    return min(keep, size)


def prune_filters(
    model: nn.Module,
    config: FilterPruning,
    example_inputs: Tensor,
    layers: Mapping[str, nn.Module],
    *,
    finetune: FinetuneFn | None = None,
    importance: tp.importance.Importance | None = None,
    seed: int = 0,
) -> FilterPruningResult:
    """Remove output channels of ``layers`` (from :func:`edgeslim.select.select_layers`) in place.

    ``example_inputs`` is a batch the model accepts (e.g. ``torch.zeros(1, 3, 32, 32)``); it is
    used to trace the channel couplings and to count MACs. ``importance`` overrides
    ``config.criterion`` with any ``torch_pruning`` Importance (higher score = keep); ``seed``
    seeds the random criterion. Parameters are replaced by smaller tensors, so build optimizers
    after pruning (``finetune`` receives the model at each intermediate step).
    """
    if not isinstance(config, FilterPruning):
        raise ConfigError(f"prune_filters needs a FilterPruning config, got {type(config).__name__}")
    if config.round_to == "auto":
        raise ConfigError(
            "FilterPruning.round_to 'auto' is chosen by measurement before pruning: pass "
            "config.replace(round_to=edgeslim.tasks.choose_round_to(...).round_to)",
            field="FilterPruning.round_to",
        )
    if not isinstance(example_inputs, Tensor):
        raise ConfigError(f"example_inputs must be a tensor batch, got {type(example_inputs).__name__}")
    selected = _check_layers(model, layers)
    scorer = importance if importance is not None else make_importance(config.criterion, seed=seed)
    input_size = tuple(example_inputs.shape)
    params_before, macs_before = count_params(model), count_macs(model, input_size)
    reference_shape = _output_shape(model, example_inputs)

    tracker = _Tracker()
    skipped: dict[str, str] = {}
    if config.ratio > 0 or any(float(e.partition("=")[2]) > 0 for e in config.layer_ratios):
        original: dict[tuple[str, ...], int] = {}
        steps = config.iterative_steps
        for step in range(steps):
            progress = step_progress(config, step + 1)
            graph = build_dependency_graph(model, example_inputs)
            groups = channel_groups(graph, model, selected.values())
            if step == 0:
                skipped = _skipped(model, graph, groups, selected)
                for g in groups:
                    if g.problem is None and keeps_whole(config.residual, g):
                        skipped.update({n: KEPT_STREAM for n in g.key if n in selected})
            prunable = [g for g in groups if g.problem is None and not keeps_whole(config.residual, g)]
            for g in prunable:
                original.setdefault(g.key, g.size)
            scores = {g.key: _scores(scorer, g) for g in prunable}
            if config.scope == "global":
                plan = _global_plan(prunable, scores, original, config.ratio * progress, config)
            else:
                plan = _layer_plan(prunable, scores, original, progress, config)
            for g in prunable:
                if plan[g.key]:
                    _remove(graph, model, g, plan[g.key], tracker)
            if finetune is not None and step < steps - 1:
                finetune(model, step)

    shape = _output_shape(model, example_inputs)
    if shape != reference_shape:  # a coupling nobody modelled: refuse to hand back a broken model
        raise ModelError(
            f"filter pruning changed the model's output shape {reference_shape} -> {shape}; the model is "
            "now unusable (reload it) and this is a bug in edgeslim's dependency handling"
        )
    return FilterPruningResult(
        config=config,
        channels=tracker.changes(model),
        skipped=skipped,
        params_before=params_before,
        params_after=count_params(model),
        macs_before=macs_before,
        macs_after=count_macs(model, input_size),
    )


def _round(config: FilterPruning) -> int:
    return config.round_to if isinstance(config.round_to, int) else 1


def _check_layers(model: nn.Module, layers: Mapping[str, nn.Module]) -> dict[str, nn.Module]:
    if not layers:
        raise ConfigError("prune_filters: no layers selected")
    owned = {id(m): n for n, m in model.named_modules()}
    out: dict[str, nn.Module] = {}
    for name, module in layers.items():
        if id(module) not in owned:
            raise ConfigError(f"prune_filters: layer {name!r} is not part of this model")
        conv = isinstance(module, nn.modules.conv._ConvNd) and not module.transposed
        if not (conv or isinstance(module, nn.Linear)):
            raise ConfigError(
                f"prune_filters: {name!r} is a {type(module).__name__}; filter pruning removes output "
                "channels of Conv and Linear layers (select types conv/linear)"
            )
        out[owned[id(module)]] = module
    return out


def _output_shape(model: nn.Module, example_inputs: Tensor) -> tuple[int, ...]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(example_inputs)
    finally:
        model.train(was_training)
    return tuple(out.shape) if isinstance(out, Tensor) else ()


def _scores(scorer: Any, group: ChannelGroup) -> list[float]:
    with torch.no_grad():
        scores = scorer(group.tp_group)
    if not isinstance(scores, Tensor) or scores.numel() != group.size:
        raise ConfigError(
            f"importance {type(scorer).__name__} returned {getattr(scores, 'shape', scores)!r} for a group of "
            f"{group.size} channels ({group.root_name})"
        )
    return [float(s) for s in scores.flatten().tolist()]


def _lowest(scores: list[float], count: int) -> list[int]:
    """The ``count`` lowest-scoring channels; ties go to the lower index (deterministic)."""
    return sorted(sorted(range(len(scores)), key=lambda i: (scores[i], i))[:count])


def _layer_plan(
    groups: list[ChannelGroup],
    scores: dict[tuple[str, ...], list[float]],
    original: dict[tuple[str, ...], int],
    progress: float,
    config: FilterPruning,
) -> dict[tuple[str, ...], list[int]]:
    """Each group loses ``floor(size * group_ratio * progress)`` (then the caps and rounding)."""
    plan = {}
    for g in groups:
        fraction = group_ratio(config, g.root_name) * progress
        removed = math.floor(original[g.key] * fraction + _EPS)
        keep = original[g.key]
        if removed > 0:
            keep = _legal_keep(
                original[g.key] - removed,
                original[g.key],
                _round(config),
                _group_min_keep(g, original, config),
            )
        plan[g.key] = _lowest(scores[g.key], max(0, g.size - keep))
    return plan


def _global_plan(
    groups: list[ChannelGroup],
    scores: dict[tuple[str, ...], list[float]],
    original: dict[tuple[str, ...], int],
    fraction: float,
    config: FilterPruning,
) -> dict[tuple[str, ...], list[int]]:
    total = sum(original[g.key] for g in groups)
    budget = math.floor(total * fraction + _EPS) - sum(original[g.key] - g.size for g in groups)
    candidates: list[tuple[float, int, int]] = []
    caps: list[int] = []
    for gi, g in enumerate(groups):
        caps.append(max(0, g.size - _group_min_keep(g, original, config)))
        s = scores[g.key]
        mean = sum(s) / len(s)
        candidates += [(v / mean if mean > 0 else v, gi, i) for i, v in enumerate(s)]
    taken = [0] * len(groups)
    for _, gi, _ in sorted(candidates):
        if budget <= 0:
            break
        if taken[gi] < caps[gi]:
            taken[gi] += 1
            budget -= 1
    plan = {}
    for gi, g in enumerate(groups):
        keep = g.size
        if taken[gi]:
            min_keep = _group_min_keep(g, original, config)
            keep = _legal_keep(g.size - taken[gi], g.size, _round(config), min_keep)
        plan[g.key] = _lowest(scores[g.key], g.size - keep)
    return plan


class _Tracker:
    """Maps each module's current output channels back to the original indices."""

    def __init__(self) -> None:
        self.before: dict[str, int] = {}
        self.origin: dict[str, list[int]] = {}
        self.removed: dict[str, list[int]] = {}

    def record(self, name: str, size: int, idxs: tuple[int, ...]) -> None:
        origin = self.origin.setdefault(name, list(range(size)))
        self.before.setdefault(name, size)
        drop = set(idxs)
        self.removed.setdefault(name, []).extend(origin[i] for i in drop)
        self.origin[name] = [o for i, o in enumerate(origin) if i not in drop]

    def changes(self, model: nn.Module) -> dict[str, ChannelChange]:
        modules = dict(model.named_modules())
        out = {}
        for name, before in self.before.items():
            after = out_channels_of(modules[name])
            out[name] = ChannelChange(
                before, before if after is None else after, tuple(sorted(self.removed[name]))
            )
        return out


def _remove(graph: Any, model: nn.Module, group: ChannelGroup, idxs: list[int], tracker: _Tracker) -> None:
    pruner = graph.get_pruner_of_module(group.root)
    tp_group = graph.get_pruning_group(group.root, pruner.prune_out_channels, idxs)
    if not graph.check_pruning_group(tp_group):
        raise ModelError(f"pruning {len(idxs)} channels of {group.root_name} would empty a coupled layer")
    names = {m: n for n, m in model.named_modules()}
    members, _ = group_members(graph, tp_group, names)
    for member in members:
        if member.kind == "out":
            size = out_channels_of(member.module)
            if size is not None:
                tracker.record(member.name, size, member.idxs)
    tp_group.prune()


def _skipped(
    model: nn.Module, graph: Any, groups: list[ChannelGroup], selected: dict[str, nn.Module]
) -> dict[str, str]:
    """Selected layers whose channels stay, with the reason (depthwise convs simply follow)."""
    reasons: dict[str, str] = {}
    for g in groups:
        if g.problem is not None:
            for name in g.key:
                if name in selected:
                    reasons[name] = g.problem
    covered = {name for g in groups for name in g.key}
    for name, module in selected.items():
        if name in covered or name in reasons or is_depthwise(module):
            continue
        if module not in graph.module2node:
            reasons[name] = "it is not used in the forward pass"
    return reasons
