"""Compression sweeps: experiment files, grid expansion, trials, executors and the result store.

``load_experiment(path)`` validates a YAML experiment; ``expand`` turns it into one baseline per
model plus one trial per grid point; ``run_sweep`` runs what is unfinished on the local or Ray
executor and records everything in a SQLite :class:`Store`, which reports read.

Names are imported on first use, so ``edgeslim.sweep.store`` (used by reports and recipes) loads
without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeslim.sweep.experiment import Experiment, load_experiment, parse_experiment
    from edgeslim.sweep.grid import TrialSpec, expand, trial_key
    from edgeslim.sweep.runner import DEFAULT_DB, SweepSummary, run_sweep
    from edgeslim.sweep.store import ExperimentRecord, Store, TrialRecord
    from edgeslim.sweep.trial import Outcome, TrialJob, TrialOutput, execute, run_trial

_WHERE = {
    "Experiment": "experiment",
    "load_experiment": "experiment",
    "parse_experiment": "experiment",
    "TrialSpec": "grid",
    "expand": "grid",
    "trial_key": "grid",
    "DEFAULT_DB": "runner",
    "SweepSummary": "runner",
    "run_sweep": "runner",
    "ExperimentRecord": "store",
    "Store": "store",
    "TrialRecord": "store",
    "Outcome": "trial",
    "TrialJob": "trial",
    "TrialOutput": "trial",
    "execute": "trial",
    "run_trial": "trial",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeslim.sweep' has no attribute {name!r}")
    return getattr(importlib.import_module(f"edgeslim.sweep.{module}"), name)


__all__ = [
    "DEFAULT_DB",
    "Experiment",
    "ExperimentRecord",
    "Outcome",
    "Store",
    "SweepSummary",
    "TrialJob",
    "TrialOutput",
    "TrialRecord",
    "TrialSpec",
    "execute",
    "expand",
    "load_experiment",
    "parse_experiment",
    "run_sweep",
    "run_trial",
    "trial_key",
]
