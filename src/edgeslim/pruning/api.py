"""``prune(model, config, example_inputs=..., select=...)``: the one entry point for every method.

It looks the config's handler up by type (:data:`PRUNE_HANDLERS`; a new method registers one), then
measures what changed (parameters, non-zero parameters,
MACs, per-layer channels and sparsity), so every caller gets the same honest report. Gradual pruning
happens during training: ``prune`` returns the callback to pass to :func:`edgeslim.train.train`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from edgeslim.bench import count_macs, count_nonzero_params, count_params
from edgeslim.errors import ConfigError
from edgeslim.methods import HandlerTable
from edgeslim.pruning.configs import (
    Criterion,
    FilterPruning,
    GradualPruning,
    MagnitudePruning,
    PruningConfig,
    Scope,
)
from edgeslim.pruning.schedule import GradualPruningCallback
from edgeslim.pruning.structured import prune_filters
from edgeslim.pruning.unstructured import MaskCallback, PruningMasks, magnitude_prune
from edgeslim.select import LayerSelection, select_layers
from edgeslim.train import Callback


@dataclasses.dataclass(frozen=True)
class LayerChange:
    """One selected layer before and after pruning."""

    name: str
    kind: str
    shape_before: tuple[int, ...]
    shape_after: tuple[int, ...]
    sparsity_before: float
    sparsity_after: float

    @property
    def out_channels_before(self) -> int:
        return self.shape_before[0]

    @property
    def out_channels_after(self) -> int:
        return self.shape_after[0]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["shape_before"], data["shape_after"] = list(self.shape_before), list(self.shape_after)
        return data


@dataclasses.dataclass(frozen=True)
class PruneReport:
    """What pruning changed, counted on the model itself (never estimated)."""

    method: str
    config: dict[str, Any]
    params_before: int
    params_after: int
    nonzero_before: int
    nonzero_after: int
    macs_before: int
    macs_after: int
    layers: tuple[LayerChange, ...]

    @property
    def sparsity(self) -> float:
        """Share of zeros among the selected layers' weights after pruning."""
        total = sum(_numel(c.shape_after) for c in self.layers)
        zeros = sum(c.sparsity_after * _numel(c.shape_after) for c in self.layers)
        return zeros / total if total else 0.0

    @property
    def param_reduction_ratio(self) -> float:
        """Share of the non-zero parameters that pruning removed (structured) or zeroed (unstructured)."""
        return 1.0 - self.nonzero_after / self.nonzero_before if self.nonzero_before else 0.0

    @property
    def mac_reduction(self) -> float:
        """MACs before / MACs after on a dense runtime (1.0 for unstructured sparsity)."""
        return self.macs_before / self.macs_after if self.macs_after else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "config": self.config,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "nonzero_before": self.nonzero_before,
            "nonzero_after": self.nonzero_after,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "sparsity": self.sparsity,
            "param_reduction_ratio": self.param_reduction_ratio,
            "mac_reduction": self.mac_reduction,
            "layers": [c.to_dict() for c in self.layers],
        }


@dataclasses.dataclass(frozen=True)
class ModelSnapshot:
    """Counts taken from the model at one moment (before or after pruning/fine-tuning)."""

    params: int
    nonzero: int
    macs: int
    layers: dict[str, tuple[str, tuple[int, ...], float]]

    @classmethod
    def take(cls, model: nn.Module, layer_names: list[str], input_size: tuple[int, ...]) -> ModelSnapshot:
        layers: dict[str, tuple[str, tuple[int, ...], float]] = {}
        for name in layer_names:
            module = model.get_submodule(name)
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor):
                zeros = int((weight == 0).sum())
                sparsity = zeros / weight.numel() if weight.numel() else 0.0
                layers[name] = (type(module).__name__, tuple(weight.shape), sparsity)
        return cls(
            count_params(model), count_nonzero_params(model), count_macs(model, (1, *input_size)), layers
        )


@dataclasses.dataclass
class PruneResult:
    """The pruned model, its report, and the callbacks that keep it pruned while fine-tuning.

    Gradual pruning only starts during training: call :meth:`remeasure` after fine-tuning to get
    the report of the final model.
    """

    model: nn.Module
    report: PruneReport
    before: ModelSnapshot
    input_size: tuple[int, ...]
    masks: PruningMasks | None = None
    callbacks: tuple[Callback, ...] = ()

    def __iter__(self) -> Iterator[Any]:
        """Allow ``model, report = prune(...)``."""
        return iter((self.model, self.report))

    def remeasure(self) -> PruneReport:
        """Recount the model now (e.g. after fine-tuning) against the same 'before' snapshot."""
        after = ModelSnapshot.take(self.model, list(self.before.layers), self.input_size)
        self.report = _report(self.report.method, self.report.config, self.before, after)
        return self.report


#: What a pruning handler gives back: masks to keep (unstructured) and training callbacks.
PruneOutput = tuple[PruningMasks | None, tuple[Callback, ...]]

#: ``fn(model, config, example_inputs, layers, finetune) -> (masks, callbacks)`` by config type;
#: the handler prunes ``model`` in place (or returns the callback that will, during training).
PRUNE_HANDLERS: HandlerTable[Callable[..., PruneOutput]] = HandlerTable("prune")


@PRUNE_HANDLERS.register(FilterPruning)
def _prune_filters(
    model: nn.Module,
    config: FilterPruning,
    example_inputs: torch.Tensor,
    layers: dict[str, nn.Module],
    finetune: Callable[[nn.Module, int], None] | None,
) -> PruneOutput:
    prune_filters(model, config, example_inputs, layers, finetune=finetune)
    return None, ()


@PRUNE_HANDLERS.register(MagnitudePruning)
def _prune_magnitude(
    model: nn.Module,
    config: MagnitudePruning,
    example_inputs: torch.Tensor,
    layers: dict[str, nn.Module],
    finetune: Callable[[nn.Module, int], None] | None,
) -> PruneOutput:
    masks = magnitude_prune(model, config, layers)
    return masks, (MaskCallback(masks),)


@PRUNE_HANDLERS.register(GradualPruning)
def _prune_gradual(
    model: nn.Module,
    config: GradualPruning,
    example_inputs: torch.Tensor,
    layers: dict[str, nn.Module],
    finetune: Callable[[nn.Module, int], None] | None,
) -> PruneOutput:
    return None, (GradualPruningCallback(config, layers),)


def prune(
    model: nn.Module,
    config: PruningConfig,
    *,
    example_inputs: torch.Tensor,
    select: LayerSelection | None = None,
    finetune: Callable[[nn.Module, int], None] | None = None,
) -> PruneResult:
    """Prune ``model`` in place by ``config`` over the selected layers and report the effect.

    ``example_inputs`` (e.g. ``torch.randn(1, 3, 32, 32)``) is used to trace channel dependencies
    and count MACs. ``finetune(model, step)`` runs between steps of iterative filter pruning.
    """
    if not isinstance(example_inputs, torch.Tensor):
        raise ConfigError("prune: example_inputs must be a tensor such as torch.randn(1, 3, 32, 32)")
    layers = select_layers(model, select)
    input_size = tuple(example_inputs.shape[1:])
    before = ModelSnapshot.take(model, list(layers), input_size)

    masks, callbacks = PRUNE_HANDLERS.get(config)(model, config, example_inputs, layers, finetune)

    after = ModelSnapshot.take(model, list(layers), input_size)
    report = _report(type(config).__name__, config.to_dict(), before, after)
    return PruneResult(model, report, before, input_size, masks=masks, callbacks=callbacks)


def ratio_for_mac_reduction(
    model: nn.Module,
    target: float,
    *,
    example_inputs: torch.Tensor,
    select: LayerSelection | None = None,
    criterion: Criterion = "l1",
    scope: Scope = "layer",
    tolerance: float = 0.02,
    max_iterations: int = 14,
    config: FilterPruning | None = None,
) -> tuple[float, float]:
    """The filter-pruning ratio giving ``target`` times fewer MACs, and the reduction it gives.

    Users budget compute, not ratios: the MACs a ratio removes depend on the architecture, on
    which layers are selected and on the pruning settings. Bisection; when channel counts are too
    coarse to land within ``tolerance``, the smallest ratio found that reaches the target is
    returned. ``model`` is not modified (each try prunes a copy). ``config``: the settings the ratio
    will be used with (``round_to``, ``max_layer_ratio``, ``min_channels``...; its ``ratio`` is what
    is searched, ``iterative_steps`` do not change the channel counts): channels rounded up to a
    multiple of 8 remove fewer MACs than at 1, so a ratio found without them falls short (a
    resnet56 ratio for 2x at ``round_to`` 1 gave 1.64x at the measured multiple). Default:
    ``criterion``, ``scope`` and ``max_layer_ratio=0.95``.
    """
    if target < 1.0:
        raise ConfigError(f"target MAC reduction must be >= 1 (e.g. 2 for half the MACs), got {target}")
    if config is not None and config.round_to == "auto":
        raise ConfigError(
            "ratio_for_mac_reduction.config: round_to 'auto' is measured, not known here: pass "
            "config.replace(round_to=edgeslim.tasks.choose_round_to(...).round_to)",
            field="FilterPruning.round_to",
        )
    template = config or FilterPruning(0.0, criterion=criterion, scope=scope, max_layer_ratio=0.95)
    lo, hi = 0.0, 0.95
    best: tuple[float, float] | None = None
    for _ in range(max_iterations):
        mid = (lo + hi) / 2
        trial = prune(
            copy.deepcopy(model),
            template.replace(ratio=mid, iterative_steps=1),
            example_inputs=example_inputs,
            select=select,
        )
        reduction = trial.report.mac_reduction
        if abs(reduction - target) / target <= tolerance:
            return mid, reduction
        if reduction < target:
            lo = mid
        else:
            hi, best = mid, (mid, reduction)
    if best is None:
        raise ConfigError(
            f"no ratio up to 0.95 gives {target}x fewer MACs with this layer selection"
            + (
                f" and these settings (round_to {template.round_to}, residual {template.residual!r}): "
                "try a smaller round_to, or residual='prune'"
                if config is not None
                else ""
            )
        )
    return best


def _report(method: str, config: dict[str, Any], before: ModelSnapshot, after: ModelSnapshot) -> PruneReport:
    changes = tuple(
        LayerChange(name, kind, shape, after.layers[name][1], sparsity, after.layers[name][2])
        for name, (kind, shape, sparsity) in before.layers.items()
    )
    return PruneReport(
        method=method,
        config=config,
        params_before=before.params,
        params_after=after.params,
        nonzero_before=before.nonzero,
        nonzero_after=after.nonzero,
        macs_before=before.macs,
        macs_after=after.macs,
        layers=changes,
    )


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
