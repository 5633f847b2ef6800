"""Compression sweeps: an experiment file is a grid of recipes run by the one engine.

``load_experiment(path)`` validates a YAML experiment; :func:`expand` plans it into nodes (one
baseline and one trial recipe per model and grid point, sharing their start); :func:`run_sweep` runs
what is unfinished on local worker processes or Ray and records everything in the result store,
which reports read as typed :class:`~edgeslim.engine.records.TrialResult` records.
"""

from edgeslim.sweep.api import (
    SweepSummary,
    artifacts_root,
    experiment_name,
    recommend_task,
    report_task,
    results_task,
    run_sweep,
    sweep_task,
)
from edgeslim.sweep.experiment import Experiment, load_experiment, method_config, parse_experiment
from edgeslim.sweep.grid import expand, recipes

__all__ = [
    "Experiment",
    "SweepSummary",
    "artifacts_root",
    "expand",
    "experiment_name",
    "load_experiment",
    "method_config",
    "parse_experiment",
    "recipes",
    "recommend_task",
    "report_task",
    "results_task",
    "run_sweep",
    "sweep_task",
]
