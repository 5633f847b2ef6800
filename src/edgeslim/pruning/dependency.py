"""Which channels must be removed together: torch-pruning's DependencyGraph, plus what it lacks.

Removing output channel ``i`` of a conv also removes channel ``i`` of the BN after it, input
channel ``i`` of every layer that reads it, the matching channel of everything it is added to
(residual streams), the matching slice of concatenations (DenseNet, GoogLeNet) and the channel of
depthwise convs and SE gates it passes through. torch-pruning (TP) traces these couplings; this
module wraps its graph in :class:`ChannelGroup` objects that say which layers own a set of coupled
channels and whether edgeslim can prune it.

TP treats unknown ops as element-wise, which silently breaks the option-A shortcut of CIFAR
ResNets: its zero padding shifts channels, so input channel ``j`` is output channel
``j + pad_front`` and the stage before and after it are independent channel spaces. TP would
couple channel ``j`` on both sides. :class:`PadShortcutPruner` registers :class:`PadShortcut` as a
leaf with independent in/out channels: pruning its inputs turns the carried channel into a zero
channel, pruning its outputs drops entries of its index map.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.pruner.function import BasePruningFunc

from edgeslim.models.resnet_cifar import PadShortcut

__all__ = [
    "ChannelGroup",
    "GroupMember",
    "PadShortcutPruner",
    "build_dependency_graph",
    "channel_groups",
    "customized_pruners",
    "group_members",
    "is_depthwise",
    "is_producer",
    "out_channels_of",
]


class PadShortcutPruner(BasePruningFunc):
    """TP pruning functions for :class:`PadShortcut`: in and out channels are independent."""

    TARGET_MODULES = (PadShortcut,)

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        if not isinstance(layer, PadShortcut):
            raise TypeError(f"PadShortcutPruner got a {type(layer).__name__}")
        drop = set(idxs)
        layer.set_index_map([c for i, c in enumerate(layer.index_map) if i not in drop])
        return layer

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        if not isinstance(layer, PadShortcut):
            raise TypeError(f"PadShortcutPruner got a {type(layer).__name__}")
        drop = set(idxs)
        kept = [c for c in range(layer.in_planes) if c not in drop]
        new_position = {old: new for new, old in enumerate(kept)}
        # a carried channel whose input is gone becomes a zero channel (-1); the rest shift down
        index_map = [new_position.get(c, -1) if c >= 0 else -1 for c in layer.index_map]
        layer.set_index_map(index_map, len(kept))
        return layer

    def get_out_channels(self, layer: nn.Module) -> int:
        return int(layer.planes)  # type: ignore[arg-type]

    def get_in_channels(self, layer: nn.Module) -> int:
        return int(layer.in_planes)  # type: ignore[arg-type]


def customized_pruners() -> dict[Any, BasePruningFunc]:
    """The TP ``customized_pruners`` edgeslim needs (one fresh instance per graph)."""
    return {PadShortcut: PadShortcutPruner()}


def build_dependency_graph(
    model: nn.Module, example_inputs: torch.Tensor | tuple[Any, ...]
) -> tp.DependencyGraph:
    """Trace ``model`` once and return TP's dependency graph (the model's train/eval mode is kept)."""
    was_training = model.training
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    try:
        with torch.enable_grad():  # TP traces through autograd's graph
            graph = tp.DependencyGraph().build_dependency(
                model,
                example_inputs=inputs,
                forward_fn=lambda m, x: m(*x),
                customized_pruners=customized_pruners(),
                verbose=False,
            )
    finally:
        model.train(was_training)
    return graph


def is_depthwise(module: nn.Module) -> bool:
    """A conv whose every output channel reads only its own input channel (groups == in == out)."""
    return (
        isinstance(module, nn.modules.conv._ConvNd)
        and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
    )


def is_producer(module: nn.Module) -> bool:
    """A layer with filters of its own: a dense (groups=1) conv or a Linear.

    Producers own channels: selection and importance are about their filters. Depthwise convs, BN
    and shortcuts merely carry the channels they receive ("followers").
    """
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.modules.conv._ConvNd) and not module.transposed and module.groups == 1


def out_channels_of(module: nn.Module) -> int | None:
    """Output channel count of the module types that pruning reshapes, else None."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return int(module.out_channels)
    if isinstance(module, nn.Linear):
        return int(module.out_features)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return int(module.num_features)
    if isinstance(module, PadShortcut):
        return int(module.planes)
    if isinstance(module, nn.PReLU):
        return int(module.num_parameters)
    return None


def _supported(module: nn.Module) -> bool:
    """Module types whose shape changes :mod:`edgeslim.models.channels` can save and rebuild."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return not module.transposed and (module.groups == 1 or is_depthwise(module))
    return isinstance(module, nn.Linear | nn.modules.batchnorm._BatchNorm | PadShortcut | nn.PReLU)


@dataclasses.dataclass(frozen=True)
class GroupMember:
    """One module touched when the group's channels go.

    ``kind`` is "out" when the module loses output channels (producers, BN, depthwise convs,
    shortcuts) and "in" when it loses input channels (the layers that read the channels).
    ``idxs`` are in the module's own numbering, ``root_idxs`` the group channels they belong to.
    """

    name: str
    module: nn.Module
    kind: str
    idxs: tuple[int, ...]
    root_idxs: tuple[int, ...]


@dataclasses.dataclass
class ChannelGroup:
    """A set of coupled channels: removing channel ``i`` removes it from every member at once.

    ``key`` names the producers (their output channels are the group's channels), in model order;
    the group's channel numbers are those of ``root``'s outputs (its first producer in model order);
    ``size`` is the current channel count; ``tp_group`` is TP's group over all channels, which the
    importance criteria score. ``problem`` says why edgeslim will not prune it (None: prunable).
    """

    key: tuple[str, ...]
    root_name: str
    root: nn.Module
    size: int
    members: list[GroupMember]
    tp_group: Any
    problem: str | None = None
    residual: bool = False  # several producers whose outputs are added (a residual stream)

    @property
    def producers(self) -> list[GroupMember]:
        return [m for m in self.members if m.kind == "out" and is_producer(m.module)]


def channel_groups(
    graph: tp.DependencyGraph, model: nn.Module, selected: Collection[nn.Module]
) -> list[ChannelGroup]:
    """Every group rooted at a producer layer, in model order, each checked for prunability.

    A group is prunable when all its producers are in ``selected`` (a selected layer never drags an
    unselected layer's filters along), it does not reach the model's outputs, and every module it
    touches is a type edgeslim can reshape and save. Groups whose producers are all unselected are
    left out; the others carry a ``problem`` so callers can say why a selected layer was kept.
    """
    names = {m: n for n, m in model.named_modules()}
    selected_ids = {id(m) for m in selected}
    order = {name: i for i, name in enumerate(names.values())}
    seen: set[int] = set()
    groups: list[ChannelGroup] = []
    for module, name in names.items():
        if id(module) in seen or not is_producer(module) or module not in graph.module2node:
            continue
        pruner = graph.get_pruner_of_module(module)
        size = int(pruner.get_out_channels(module))
        tp_group = graph.get_pruning_group(module, pruner.prune_out_channels, list(range(size)))
        members, problems = group_members(graph, tp_group, names)
        producers = [m for m in members if m.kind == "out" and is_producer(m.module)]
        seen.update(id(m.module) for m in producers)
        if not any(id(m.module) in selected_ids for m in producers):
            continue
        unselected = [m.name for m in producers if id(m.module) not in selected_ids]
        if unselected:
            problems.insert(
                0, f"its channels are shared with unselected layer(s) {', '.join(unselected[:4])}"
            )
        group = ChannelGroup(
            key=tuple(sorted((m.name for m in producers), key=order.__getitem__)),
            root_name=name,
            root=module,
            size=size,
            members=members,
            tp_group=tp_group,
            problem="; ".join(problems) if problems else None,
            residual=len(producers) > 1 and _adds(tp_group),
        )
        groups.append(group)
    return groups


def _adds(tp_group: Any) -> bool:
    """Whether the group passes through an addition of two traced tensors (TP's stand-in for
    ``a + b``), as a residual stream does. A multiplication (an SE gate) couples producers without
    summing them; ``x + 3`` (hard-sigmoid) has one traced input; ``addmm`` is a functional Linear."""
    for item in tp_group:
        for node in (item.dep.source, item.dep.target):
            op = node.module
            if not isinstance(op, tp.ops._ElementWiseOp):
                continue
            # TP 1.6 stores the autograd node's name, e.g. "AddBackward0"
            if str(op._grad_fn).startswith("AddBackward") and len(node.inputs) >= 2:
                return True
    return False


def group_members(
    graph: tp.DependencyGraph, tp_group: Any, names: dict[nn.Module, str]
) -> tuple[list[GroupMember], list[str]]:
    """The named modules a TP group touches, and the reasons (if any) edgeslim must not prune it."""
    members: list[GroupMember] = []
    problems: list[str] = []
    for item in tp_group:
        dep, idxs = item.dep, item.idxs
        target = dep.target.module
        if isinstance(target, tp.ops._OutputOp):
            problems.append("its channels are the model's outputs")
            continue
        if isinstance(target, nn.Parameter):
            problems.append("its channels reach a bare nn.Parameter")
            continue
        name = names.get(target)
        if name is None:  # TP's stand-ins for functional ops (add, cat, relu, slicing): nothing to save
            continue
        pruner = graph.get_pruner_of_module(target)
        kind = "out" if pruner is not None and dep.handler == pruner.prune_out_channels else "in"
        if kind == "out" and not dep.target.outputs:  # nothing reads it: it is what the model returns
            problems.append(f"its channels are the model's outputs ({name})")
        if not _supported(target):
            problems.append(
                f"its channels reach {name} ({type(target).__name__}), which edgeslim cannot reshape"
            )
        members.append(
            GroupMember(
                name, target, kind, tuple(int(i) for i in idxs), tuple(int(i) for i in item.root_idxs)
            )
        )
    return members, problems
