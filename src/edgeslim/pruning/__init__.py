"""Pruning: ``prune(model, config, example_inputs=..., select=...)`` with one config per method.

- :class:`MagnitudePruning`: unstructured, masks kept while fine-tuning (:class:`MaskCallback`);
- :class:`GradualPruning`: Zhu & Gupta's cubic schedule, applied during training by a callback;
- :class:`FilterPruning`: structured L1/L2/FPGM/random, physically removing channels.

Importance (scoring), dependency (coupled channels) and surgery (cutting layers) live in separate
modules; :func:`save_pruned` writes files that reload with ``weights_only=True``.
"""

from edgeslim.models.channels import apply_channel_spec, channel_spec
from edgeslim.models.sparse_formats import SparseFileInfo, load_sparse, save_sparse
from edgeslim.pruning.api import (
    PRUNE_HANDLERS,
    LayerChange,
    ModelSnapshot,
    PruneReport,
    PruneResult,
    prune,
    ratio_for_mac_reduction,
)
from edgeslim.pruning.configs import FilterPruning, GradualPruning, MagnitudePruning, PruningConfig
from edgeslim.pruning.saving import SavedModel, SparseLayout, save_pruned
from edgeslim.pruning.schedule import (
    GradualPruningCallback,
    cubic_sparsity,
    gradual_config_for_training,
    schedule_in_steps,
)
from edgeslim.pruning.unstructured import MaskCallback, PruningMasks, magnitude_prune, sparsity_report

__all__ = [
    "PRUNE_HANDLERS",
    "FilterPruning",
    "GradualPruning",
    "GradualPruningCallback",
    "LayerChange",
    "MagnitudePruning",
    "MaskCallback",
    "ModelSnapshot",
    "PruneReport",
    "PruneResult",
    "PruningConfig",
    "PruningMasks",
    "SavedModel",
    "SparseFileInfo",
    "SparseLayout",
    "apply_channel_spec",
    "channel_spec",
    "cubic_sparsity",
    "gradual_config_for_training",
    "load_sparse",
    "magnitude_prune",
    "prune",
    "ratio_for_mac_reduction",
    "save_pruned",
    "save_sparse",
    "schedule_in_steps",
    "sparsity_report",
]
