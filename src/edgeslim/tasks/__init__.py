"""High-level tasks behind the CLI commands: each takes typed arguments and returns records.

The CLI only parses options and prints; everything it does is one call here, so the same work is
available from Python and CLI tests can assert the exact arguments passed.
"""

from edgeslim.tasks.common import DataSource, ModelSource, Split
from edgeslim.tasks.core import bench_task, evaluate_task, list_models_task, train_task
from edgeslim.tasks.distill import DistillOutcome, distill_task
from edgeslim.tasks.export import ExportOutcome, bench_artifact_task, evaluate_artifact_task, export_task
from edgeslim.tasks.prune import PruneOutcome, check_gradual_ramp, prune_task
from edgeslim.tasks.quantize import QuantizeOutcome, quantize_task
from edgeslim.tasks.recovery import BudgetPlan, Recovery, RecoveryRun, plan_budget
from edgeslim.tasks.round_to import RoundToChoice, choose_round_to

__all__ = [
    "BudgetPlan",
    "DataSource",
    "DistillOutcome",
    "ExportOutcome",
    "ModelSource",
    "PruneOutcome",
    "QuantizeOutcome",
    "Recovery",
    "RecoveryRun",
    "RoundToChoice",
    "Split",
    "bench_artifact_task",
    "bench_task",
    "check_gradual_ramp",
    "choose_round_to",
    "distill_task",
    "evaluate_artifact_task",
    "evaluate_task",
    "export_task",
    "list_models_task",
    "plan_budget",
    "prune_task",
    "quantize_task",
    "train_task",
]
