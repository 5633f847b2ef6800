"""Filter importance criteria: which channels of a coupled group to remove (lowest score first).

A channel's score comes only from the filters that produce it, as in the papers: the output
filters (rows of the weight) of the group's dense convs and Linears. BatchNorm scales, the next
layer's input weights and depthwise kernels are *not* counted; they are consequences of the
channel, not evidence about it. When several producers share a channel (a residual stream: the
stem conv and every block's last conv), each producer's per-layer score is added.

- ``l1`` / ``l2``: the filter's L1 / L2 norm (Li et al. 2017, "Pruning Filters for Efficient
  ConvNets"); the weakest filters go.
- ``fpgm``: the sum of Euclidean distances from a filter to every other filter of the same layer
  (He et al. 2019, "Filter Pruning via Geometric Median"); filters nearest the geometric median are
  the most replaceable and go first, whatever their norm.
- ``random``: uniform scores from a seeded generator, the control baseline.

Criteria are ``torch_pruning.importance.Importance`` subclasses, so they also score TP groups
directly. TP's own ``FPGMImportance`` is not used because it measures distances between
``|w|**p`` (absolute values) and adds input-channel and BN terms, which is not the paper's
criterion; its ``RandomImportance`` is unseeded.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch_pruning as tp
from torch import Tensor, nn

from edgeslim.errors import ConfigError

__all__ = [
    "CRITERIA",
    "FPGMImportance",
    "FilterImportance",
    "L1Importance",
    "L2Importance",
    "RandomImportance",
    "make_importance",
    "producer_filters",
]

FilterBlock = tuple[Tensor, Sequence[int], Sequence[int]]
"""(the layer's weight, the group's filter indices in that layer, the group channels they produce)."""


def producer_filters(group: Any) -> list[FilterBlock]:
    """The filters a TP group removes from dense convs and Linears (not depthwise, not BN)."""
    blocks: list[FilterBlock] = []
    for item in group:
        layer, handler = item.dep.target.module, item.dep.handler
        linear = isinstance(layer, nn.Linear) and handler == tp.prune_linear_out_channels
        conv = (
            isinstance(layer, nn.modules.conv._ConvNd)
            and not layer.transposed
            and layer.groups == 1
            and handler == tp.prune_conv_out_channels
        )
        if linear or conv:
            blocks.append((layer.weight, list(item.idxs), list(item.root_idxs)))
    return blocks


class FilterImportance(tp.importance.Importance):
    """Score group channels from their producers' filters; higher means keep."""

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def layer_scores(self, filters: Tensor) -> Tensor:
        """One score per row of ``filters`` ([num_filters, fan_in], float64, all filters of a layer)."""

    def channel_scores(self, blocks: Sequence[FilterBlock], num_channels: int) -> Tensor:
        """Scores for channels ``0..num_channels-1`` of a group, summed over its producers."""
        scores = torch.zeros(num_channels, dtype=torch.float64)
        for weight, idxs, root_idxs in blocks:
            per_filter = self.layer_scores(weight.detach().flatten(1).to("cpu", torch.float64))
            scores[list(root_idxs)] += per_filter[list(idxs)]
        return scores

    @torch.no_grad()
    def __call__(self, group: Any) -> Tensor:
        """TP interface: one score per channel of ``group[0].idxs`` (the root's channels)."""
        root = list(group[0].root_idxs) if group[0].root_idxs is not None else list(group[0].idxs)
        position = {c: i for i, c in enumerate(root)}
        blocks = [
            (
                w,
                [i for i, r in zip(idxs, roots, strict=True) if r in position],
                [position[r] for r in roots if r in position],
            )
            for w, idxs, roots in producer_filters(group)
        ]
        return self.channel_scores(blocks, len(root))


class L1Importance(FilterImportance):
    """Sum of absolute filter weights."""

    name = "l1"

    def layer_scores(self, filters: Tensor) -> Tensor:
        return filters.abs().sum(dim=1)


class L2Importance(FilterImportance):
    """Euclidean norm of the filter."""

    name = "l2"

    def layer_scores(self, filters: Tensor) -> Tensor:
        return torch.linalg.vector_norm(filters, ord=2, dim=1)


class FPGMImportance(FilterImportance):
    """Sum of Euclidean distances to the layer's other filters; the smallest sum is nearest the
    geometric median and is removed first."""

    name = "fpgm"

    def layer_scores(self, filters: Tensor) -> Tensor:
        return torch.cdist(filters.unsqueeze(0), filters.unsqueeze(0), p=2).squeeze(0).sum(dim=1)


class RandomImportance(FilterImportance):
    """Uniform random scores from a private generator: the same seed gives the same channels."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

    def layer_scores(self, filters: Tensor) -> Tensor:
        return torch.rand(filters.shape[0], generator=self._generator, dtype=torch.float64)

    def channel_scores(self, blocks: Sequence[FilterBlock], num_channels: int) -> Tensor:
        # one draw per channel, not per producer: a shared channel is not "more random"
        return torch.rand(num_channels, generator=self._generator, dtype=torch.float64)


CRITERIA: dict[str, type[FilterImportance]] = {
    cls.name: cls for cls in (L1Importance, L2Importance, FPGMImportance, RandomImportance)
}


def make_importance(criterion: str, *, seed: int = 0) -> FilterImportance:
    """The criterion a :class:`~edgeslim.pruning.configs.FilterPruning` config names."""
    if criterion not in CRITERIA:
        raise ConfigError(f"unknown filter criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
    if criterion == "random":
        return RandomImportance(seed)
    return CRITERIA[criterion]()
