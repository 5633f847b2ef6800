"""Saving pruned models as files that reload with ``weights_only=True`` (never pickled modules).

A pruned model is its zoo spec (name + kwargs), a channel spec (the per-layer channel counts that
filter pruning changed, applied to a freshly built model before loading) and its state_dict, either
dense (an edgeslim checkpoint) or with sparse tensors in COO/CSR/CSC (an edgeslim sparse file).
:func:`edgeslim.models.load_model_from_checkpoint` reads both.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal, get_args

from torch import nn

from edgeslim.checkpoint import save_checkpoint
from edgeslim.errors import ConfigError
from edgeslim.models.channels import channel_spec
from edgeslim.models.sparse_formats import save_sparse, torch_save_nbytes
from edgeslim.pruning.api import PruneReport

SparseLayout = Literal["dense", "coo", "csr", "csc"]
#: The file layouts a pruned model can be saved in (``SparseLayout`` as a tuple).
LAYOUTS: tuple[SparseLayout, ...] = get_args(SparseLayout)


@dataclasses.dataclass(frozen=True)
class SavedModel:
    path: Path
    layout: str
    size_bytes: int
    dense_size_bytes: int


def save_pruned(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    model_spec: dict[str, Any],
    report: PruneReport | None = None,
    layout: SparseLayout = "dense",
) -> SavedModel:
    """Write ``model`` with what rebuilds it; report bytes on disk against the dense file."""
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be dense, coo, csr or csc, not {layout!r}")
    meta: dict[str, Any] = {"channel_spec": channel_spec(model)}
    if report is not None:
        meta["pruning"] = report.to_dict()
    recorded_input = (model_spec.get("meta") or {}).get("input")
    if recorded_input:
        meta["input"] = recorded_input  # the input size the model was trained at (eval/export reuse it)
    spec = {"name": model_spec["name"], "kwargs": dict(model_spec.get("kwargs", {}))}
    if layout == "dense":
        target = save_checkpoint(path, model, model_name=spec["name"], model_kwargs=spec["kwargs"], meta=meta)
        size = target.stat().st_size
        return SavedModel(target, layout, size, size)
    info = save_sparse(path, model, layout, meta={"model": spec, **meta}, compare_dense=False)
    dense = torch_save_nbytes({k: v.detach() for k, v in model.state_dict().items()})
    return SavedModel(info.path, layout, info.bytes, dense)
