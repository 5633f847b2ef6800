"""Search for the best model that fits a measured device budget: profiles, predictors, ``compress``."""

from edgeslim.search.compression import (
    STRATEGIES,
    Budget,
    CompressOptions,
    CompressResult,
    NoPlanFits,
    compress,
)
from edgeslim.search.layout import Knob, ModelLayout, Plan, plan_config
from edgeslim.search.profile import PROFILE_RUNTIMES, LatencyPredictor, LatencyTable, LayerShape, width_grid

__all__ = [
    "PROFILE_RUNTIMES",
    "STRATEGIES",
    "Budget",
    "CompressOptions",
    "CompressResult",
    "Knob",
    "LatencyPredictor",
    "LatencyTable",
    "LayerShape",
    "ModelLayout",
    "NoPlanFits",
    "Plan",
    "compress",
    "plan_config",
    "width_grid",
]
