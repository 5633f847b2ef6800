"""Unstructured (element-wise) magnitude pruning with plain boolean masks.

Masks are ordinary ``{layer name: bool tensor}`` mappings (``True`` = keep), not
``torch.nn.utils.prune`` parametrizations: those rename state_dict keys (``weight_orig`` +
``weight_mask``), so a pruned model would no longer load into a plain one. Here the pruned weights
are simply zero; the masks only exist to keep them zero while training (:class:`MaskCallback`).

Counting rule (exact, testable): a layer pruned to sparsity ``s`` gets ``round(s * numel)`` zeros
(Python ``round``, halves to even), the entries with the smallest ``|w|``; ties are broken by
flattened index (lower index pruned first), via a stable sort. Global scope ranks every selected
weight together and prunes ``round(s * total)`` of them. Previously pruned entries always rank
first, so masks only ever grow (a layer already sparser than the target keeps its extra zeros).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from edgeslim.errors import ConfigError
from edgeslim.pruning.configs import MagnitudePruning
from edgeslim.select import LayerSelection, select_layers
from edgeslim.train.callbacks import Callback, TrainState

MASKS_FORMAT = "edgeslim.masks"
MASKS_VERSION = 1

Layers = Mapping[str, nn.Module] | Iterable[str] | LayerSelection | None
"""Which layers: a ``select_layers`` result or layer names, a selection to resolve, or None (default)."""


def resolve_layers(model: nn.Module, layers: Layers = None) -> dict[str, nn.Module]:
    """``{name: module}`` for ``layers``; given names must be layers of ``model`` with a weight."""
    if layers is None or isinstance(layers, LayerSelection):
        return select_layers(model, layers)
    out: dict[str, nn.Module] = {}
    for name in [layers] if isinstance(layers, str) else layers:
        out[name] = _submodule(model, name)
    if not out:
        raise ConfigError("layers is empty: select at least one layer to prune")
    return out


def _submodule(model: nn.Module, name: str) -> nn.Module:
    """The layer called ``name``; it must have a ``weight`` tensor."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ConfigError(f"layers: the model has no layer called {name!r}") from None
    if not isinstance(getattr(module, "weight", None), torch.Tensor):
        raise ConfigError(f"layers: {name!r} ({type(module).__name__}) has no weight tensor to prune")
    return module


def _weight(model: nn.Module, name: str) -> torch.Tensor:
    weight: torch.Tensor = getattr(_submodule(model, name), "weight")  # noqa: B009 (checked above)
    return weight


class PruningMasks:
    """``{layer name: bool tensor shaped like its weight}``; ``True`` keeps, ``False`` prunes."""

    def __init__(self, masks: Mapping[str, torch.Tensor]) -> None:
        self._masks: dict[str, torch.Tensor] = {}
        for name, mask in masks.items():
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
                kind = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
                raise ConfigError(f"PruningMasks[{name!r}]: a mask must be a bool tensor, got {kind}")
            self._masks[str(name)] = mask.detach().to("cpu", copy=True)

    # -- mapping-like access -------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __contains__(self, name: object) -> bool:
        return name in self._masks

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def names(self) -> list[str]:
        return list(self._masks)

    def items(self) -> list[tuple[str, torch.Tensor]]:
        return list(self._masks.items())

    def __repr__(self) -> str:
        return f"PruningMasks({len(self)} layers, sparsity={self.sparsity():.4f})"

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: nn.Module, layers: Layers = None) -> PruningMasks:
        """Masks from the zeros already in the weights, e.g. to fine-tune a loaded pruned model."""
        return cls({name: _weight(model, name).detach() != 0 for name in resolve_layers(model, layers)})

    @classmethod
    def dense(cls, model: nn.Module, layers: Layers = None) -> PruningMasks:
        """All-keep masks (sparsity 0) for the given layers."""
        return cls(
            {
                name: torch.ones_like(_weight(model, name), dtype=torch.bool, device="cpu")
                for name in resolve_layers(model, layers)
            }
        )

    # -- statistics ------------------------------------------------------------------------------
    def numel(self) -> int:
        return sum(m.numel() for m in self._masks.values())

    def num_pruned(self) -> int:
        return sum(int((~m).sum().item()) for m in self._masks.values())

    def layer_sparsity(self) -> dict[str, float]:
        """Share of pruned entries per layer (0.0 for an empty weight)."""
        return {n: (int((~m).sum().item()) / m.numel() if m.numel() else 0.0) for n, m in self._masks.items()}

    def sparsity(self) -> float:
        """Share of pruned entries over all masked layers together."""
        total = self.numel()
        return self.num_pruned() / total if total else 0.0

    # -- applying ----------------------------------------------------------------------------------
    def _check(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        mask = self._masks[name]
        if mask.shape != tensor.shape:
            raise ConfigError(
                f"PruningMasks[{name!r}]: mask shape {tuple(mask.shape)} does not fit the weight "
                f"{tuple(tensor.shape)} (masks from another model?)"
            )
        if mask.device != tensor.device:  # move once, not at every training step
            mask = self._masks[name] = mask.to(tensor.device)
        return mask

    def apply(self, model: nn.Module) -> None:
        """Zero the pruned weights in place (no autograd history, parameters stay the same objects)."""
        with torch.no_grad():
            for name in self._masks:
                weight = _weight(model, name)
                weight.masked_fill_(~self._check(name, weight), 0)

    def mask_grads(self, model: nn.Module) -> None:
        """Zero the gradients of pruned weights, so momentum and clipping never see them."""
        with torch.no_grad():
            for name in self._masks:
                weight = _weight(model, name)
                if weight.grad is not None:
                    weight.grad.masked_fill_(~self._check(name, weight.grad), 0)

    def combine(self, other: PruningMasks) -> PruningMasks:
        """Prune what either prunes (logical AND of the keep masks; layers of both are kept)."""
        merged = dict(self._masks)
        for name, mask in other._masks.items():
            merged[name] = merged[name].cpu() & mask.cpu() if name in merged else mask
        return PruningMasks(merged)

    # -- serialisation ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain data (bool tensors + strings), loadable with ``torch.load(weights_only=True)``."""
        return {
            "format": MASKS_FORMAT,
            "version": MASKS_VERSION,
            "masks": {name: mask.to("cpu", copy=True) for name, mask in self._masks.items()},
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> PruningMasks:
        if not isinstance(state, Mapping) or state.get("format") != MASKS_FORMAT:
            raise ConfigError(
                "PruningMasks.from_state_dict: not a masks state_dict (format is not edgeslim.masks)"
            )
        if state.get("version") != MASKS_VERSION:
            raise ConfigError(
                f"PruningMasks.from_state_dict: version {state.get('version')!r}; this edgeslim reads "
                f"version {MASKS_VERSION}"
            )
        masks = state.get("masks")
        if not isinstance(masks, Mapping):
            raise ConfigError("PruningMasks.from_state_dict: 'masks' must be a mapping of bool tensors")
        return cls(masks)


# -- magnitude pruning -------------------------------------------------------------------------------


def _scores(weight: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
    """Flattened |w| in float32 (comparable across layers); earlier pruned entries rank first (-1)."""
    scores = weight.detach().abs().flatten().to("cpu", torch.float32)
    if previous is not None:
        scores = scores.masked_fill(~previous.flatten().cpu(), -1.0)
    return scores


def _keep_from_order(numel: int, order: torch.Tensor, num_pruned: int) -> torch.Tensor:
    keep = torch.ones(numel, dtype=torch.bool)
    keep[order[:num_pruned]] = False
    return keep


def _num_zeros(sparsity: float, numel: int) -> int:
    return min(numel, round(sparsity * numel))


def magnitude_prune(
    model: nn.Module,
    config: MagnitudePruning,
    layers: Layers = None,
    *,
    masks: PruningMasks | None = None,
    apply: bool = True,
) -> PruningMasks:
    """Prune the smallest-magnitude weights of the selected layers to ``config.sparsity``.

    Returns the new masks (and zeroes the weights unless ``apply=False``). ``masks`` are earlier
    masks to extend: their pruned entries stay pruned and count towards the target.
    """
    if not isinstance(config, MagnitudePruning):
        raise ConfigError(f"magnitude_prune: config must be a MagnitudePruning, got {type(config).__name__}")
    selected = resolve_layers(model, layers)
    weights = {name: _weight(model, name) for name in selected}
    previous: dict[str, torch.Tensor | None] = {}
    for name, weight in weights.items():
        prev = masks[name] if masks is not None and name in masks else None
        if prev is not None and prev.shape != weight.shape:
            raise ConfigError(
                f"magnitude_prune: the earlier mask of {name!r} has shape {tuple(prev.shape)}, "
                f"the weight {tuple(weight.shape)}"
            )
        previous[name] = prev

    new: dict[str, torch.Tensor] = {}
    if config.scope == "layer":
        for name, weight in weights.items():
            prev = previous[name]
            scores = _scores(weight, prev)
            already = int((~prev).sum().item()) if prev is not None else 0
            k = max(_num_zeros(config.sparsity, weight.numel()), already)
            order = torch.sort(scores, stable=True).indices
            new[name] = _keep_from_order(weight.numel(), order, k).view(weight.shape)
    else:
        parts = [_scores(w, previous[n]) for n, w in weights.items()]
        scores = torch.cat(parts) if parts else torch.empty(0)
        already = sum(int((~p).sum().item()) for p in previous.values() if p is not None)
        k = max(_num_zeros(config.sparsity, scores.numel()), already)
        order = torch.sort(scores, stable=True).indices
        keep = _keep_from_order(scores.numel(), order, k)
        offset = 0
        for name, weight in weights.items():
            n = weight.numel()
            new[name] = keep[offset : offset + n].view(weight.shape)
            offset += n

    if masks is not None:  # layers outside this call keep their earlier masks
        for name, mask in masks.items():
            new.setdefault(name, mask)
    result = PruningMasks(new)
    if apply:
        result.apply(model)
    return result


# -- training-time masking ---------------------------------------------------------------------------


class MaskCallback(Callback):
    """Keeps pruned weights at zero while training (fine-tuning after pruning).

    Gradients of pruned weights are zeroed before the optimizer step (so they do not enter momentum
    or gradient clipping) and the masks are re-applied after it, because weight decay and momentum
    buffers from before pruning can still move a zero weight. The masks are part of the callback's
    ``state_dict``, so a resumed run keeps them.
    """

    def __init__(self, masks: PruningMasks) -> None:
        if not isinstance(masks, PruningMasks):
            raise ConfigError(f"MaskCallback: masks must be PruningMasks, got {type(masks).__name__}")
        self.masks = masks

    def on_train_begin(self, state: TrainState) -> None:
        self.masks.apply(state.model)

    def on_before_optimizer_step(self, state: TrainState) -> None:
        self.masks.mask_grads(state.model)

    def on_after_step(self, state: TrainState) -> None:
        self.masks.apply(state.model)

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        metrics["sparsity"] = self.masks.sparsity()

    def state_dict(self) -> dict[str, Any]:
        return {"masks": self.masks.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and "masks" in state:
            self.masks = PruningMasks.from_state_dict(state["masks"])


# -- reporting -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Exact zero counts of the selected weights: one row per layer and the total."""

    layers: list[dict[str, Any]]
    total: dict[str, Any]

    def rows(self) -> list[dict[str, Any]]:
        """Layer rows followed by the total row (named "total"), e.g. for a table."""
        return [*self.layers, {"name": "total", **self.total}]

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [dict(r) for r in self.layers], "total": dict(self.total)}


def sparsity_report(model: nn.Module, layers: Layers = None) -> SparsityReport:
    """Count the exact zeros of each selected layer's weight (default: conv/linear incl. classifier)."""
    if layers is None:
        layers = LayerSelection(include_classifier=True)
    rows: list[dict[str, Any]] = []
    numel_total = zeros_total = 0
    with torch.no_grad():
        for name in resolve_layers(model, layers):
            weight = _weight(model, name)
            numel = weight.numel()
            zeros = numel - int(torch.count_nonzero(weight).item())
            rows.append(
                {
                    "name": name,
                    "shape": list(weight.shape),
                    "numel": numel,
                    "zeros": zeros,
                    "sparsity": zeros / numel if numel else 0.0,
                }
            )
            numel_total += numel
            zeros_total += zeros
    total = {
        "numel": numel_total,
        "zeros": zeros_total,
        "sparsity": zeros_total / numel_total if numel_total else 0.0,
    }
    return SparsityReport(rows, total)
