"""The pruning task behind ``edgeslim prune``."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch

from edgeslim.bench import (
    LatencyStats,
    measure_latency,
    threads,
)
from edgeslim.config import Config
from edgeslim.data import BatchLoader
from edgeslim.errors import ConfigError
from edgeslim.pruning import (
    FilterPruning,
    GradualPruning,
    GradualPruningCallback,
    PruneReport,
    PruningConfig,
    SparseLayout,
    prune,
    save_pruned,
    schedule_in_steps,
)
from edgeslim.select import LayerSelection
from edgeslim.tasks.common import DataSource, ModelSource, check_classes, fit_input, input_meta
from edgeslim.tasks.recovery import (
    Recoverer,
    Recovery,
    check_teacher,
    load_teacher,
    restart_config,
    stage_epochs,
    teacher_note,
)
from edgeslim.tasks.round_to import choose_round_to
from edgeslim.train import TrainConfig, evaluate


def gradual_schedule(config: GradualPruning, steps_per_epoch: int, epochs: int) -> GradualPruning:
    """The schedule gradual pruning runs with inside a fine-tune of ``epochs`` x ``steps_per_epoch``.

    A schedule field the user set is kept as given (steps) or converted (epochs); left unset:
    ``start_step`` 0 (prune from the first step), ``num_steps`` the first 3/4 of the steps after
    the start (the last quarter recovers at the final sparsity while the LR decays), ``frequency``
    one epoch, or less so that the ramp has at least 10 mask updates
    (:func:`edgeslim.pruning.schedule.schedule_in_steps`).
    """
    return schedule_in_steps(config, steps_per_epoch, epochs)


def check_gradual_ramp(config: Config, finetune: TrainConfig | None, recovery: Recovery | None) -> None:
    """Refuse, before anything runs, a gradual-pruning ramp in epochs that the fine-tune cannot hold
    (:meth:`GradualPruning.check_fits`). With a time budget the epochs are only known once the budget
    is sized; the ramp is checked then."""
    budgeted = recovery is not None and recovery.budget_minutes is not None
    if isinstance(config, GradualPruning) and finetune is not None and not budgeted:
        config.check_fits(finetune.epochs)


@dataclasses.dataclass(frozen=True)
class PruneOutcome:
    """What ``edgeslim prune`` reports: the pruning report plus measured accuracy, size and latency."""

    report: PruneReport
    out: Path
    layout: str
    size_bytes: int
    dense_size_bytes: int
    top1_before: float | None
    top1_after: float | None
    latency_before: dict[int, LatencyStats]
    latency_after: dict[int, LatencyStats]
    finetune_epochs: int
    notes: tuple[str, ...] = ()
    recovery: dict[str, Any] | None = None
    round_to: dict[str, Any] | None = None

    @property
    def realized_speedup(self) -> dict[int, float]:
        """Latency before / after per batch size (torch), to set against ``mac_reduction``."""
        return {
            b: self.latency_before[b].median_ms / self.latency_after[b].median_ms
            for b in self.latency_before
            if b in self.latency_after and self.latency_after[b].median_ms > 0
        }

    def to_dict(self) -> dict[str, Any]:
        r = self.report
        return {
            "model_out": str(self.out),
            "method": r.method,
            "config": r.config,
            "params_before": r.params_before,
            "params_after": r.params_after,
            "nonzero_params_before": r.nonzero_before,
            "nonzero_params_after": r.nonzero_after,
            "macs_before": r.macs_before,
            "macs_after": r.macs_after,
            "mac_reduction": r.mac_reduction,
            "sparsity": r.sparsity,
            "param_reduction_ratio": r.param_reduction_ratio,
            "layout": self.layout,
            "size_bytes": self.size_bytes,
            "dense_size_bytes": self.dense_size_bytes,
            "top1_before": self.top1_before,
            "top1_after": self.top1_after,
            "finetune_epochs": self.finetune_epochs,
            "recovery": self.recovery,
            "round_to": self.round_to,
            "realized_speedup": {str(b): v for b, v in self.realized_speedup.items()},
            "speedup_per_mac_reduction": {
                str(b): v / r.mac_reduction for b, v in self.realized_speedup.items() if r.mac_reduction > 0
            },
            "latency_before_ms": {str(b): s.to_dict() for b, s in self.latency_before.items()},
            "latency_after_ms": {str(b): s.to_dict() for b, s in self.latency_after.items()},
            "layers": [c.to_dict() for c in r.layers],
            "notes": list(self.notes),
        }


def prune_task(
    model_source: ModelSource,
    config: PruningConfig,
    *,
    out: Path,
    select: LayerSelection | None = None,
    data_source: DataSource | None = None,
    finetune: TrainConfig | None = None,
    recovery: Recovery | None = None,
    layout: SparseLayout = "dense",
    latency_batch_sizes: tuple[int, ...] = (1, 32),
    latency_runs: int = 20,
    num_threads: int | None = None,
    progress: bool = True,
    measure_before: bool = True,
    device: str | None = None,
) -> PruneOutcome:
    """Prune a model, optionally fine-tune it, and measure accuracy, size and latency before and after.

    ``measure_before=False`` skips the 'before' accuracy and latency (``top1_before`` None,
    ``latency_before`` empty) for callers that measured the unpruned model once already (sweeps).
    ``device`` (``auto``, ``cpu``, ``cuda``): where fine-tuning and evaluation run; pruning itself
    and latency stay on the CPU.

    ``recovery`` (default :class:`~edgeslim.tasks.recovery.Recovery`: distill from the model before
    pruning) says how the fine-tune recovers accuracy, and may size it to a time budget. Filter
    pruning with ``iterative_steps`` > 1 prunes and recovers in stages (cubic schedule, a warm LR
    restart per stage); ``round_to="auto"`` is chosen by timing convs on ONNX Runtime.
    """
    if recovery is not None and finetune is None:
        raise ConfigError(
            "distillation and a time budget apply to the fine-tune after pruning, and there is none: "
            "set prune_task.finetune (--finetune-epochs N or --budget-minutes M)",
            field="prune_task.finetune",
        )
    if isinstance(config, GradualPruning) and finetune is None:
        raise ConfigError(
            "gradual pruning happens while training: set prune_task.finetune (a TrainConfig, epochs >= 1)",
            field="prune_task.finetune",
        )
    if finetune is not None and data_source is None:
        raise ConfigError(
            "fine-tuning (prune_task.finetune) needs training data: set prune_task.data_source",
            field="prune_task.data_source",
        )
    check_gradual_ramp(config, finetune, recovery)
    with threads(num_threads):
        test_data = data_source.load("test") if data_source is not None else None
        train_data = data_source.load("train") if (data_source is not None and finetune is not None) else None
        default_classes = test_data.num_classes if test_data is not None else 10
        model, spec = model_source.build(default_num_classes=default_classes)
        test_data = fit_input(test_data, spec) if test_data is not None else None
        train_data = fit_input(train_data, spec) if train_data is not None else None
        spec = {**spec, "meta": {**(spec.get("meta") or {}), **input_meta(test_data or train_data)}}
        input_size = test_data.input_shape if test_data is not None else (3, 32, 32)
        if test_data is not None:
            check_classes(model, test_data, input_size)
        example = torch.randn(1, *input_size)

        def accuracy() -> float | None:
            if test_data is None:
                return None
            return evaluate(model, BatchLoader(test_data, 256), progress=False, device=device or "auto").top1

        def latency() -> dict[int, LatencyStats]:
            model.eval()
            with torch.inference_mode():
                return {
                    b: measure_latency(model, torch.randn(b, *input_size), warmup=3, runs=latency_runs)
                    for b in latency_batch_sizes
                }

        recoverer: Recoverer | None = None
        if finetune is not None and train_data is not None:
            recovery = recovery if recovery is not None else Recovery()
            teacher = load_teacher(recovery, model)
            if teacher is not None:
                check_teacher(teacher, model, input_size)
            recoverer = Recoverer(
                recovery, train_data, finetune, teacher=teacher, progress=progress, device=device
            )
        round_choice = None
        if isinstance(config, FilterPruning) and config.round_to == "auto":
            round_choice = choose_round_to("ort")
            config = config.replace(round_to=round_choice.round_to)
        if recoverer is not None:
            # epochs sized to the budget (if there is one) on the models that will train: filter
            # pruning makes each step cheaper (a budget timed on the dense model left a 2x-pruned
            # resnet56 a third of its minutes unused), and the stages of an iterative schedule train
            # wider models first (timing only the final widths overran a 30-minute budget by 12%)
            trains: torch.nn.Module = model
            earlier: list[torch.nn.Module] = []
            if (
                isinstance(config, FilterPruning)
                and recovery is not None
                and recovery.budget_minutes is not None
            ):

                def keep_stage(m: torch.nn.Module, step: int) -> None:
                    earlier.append(copy.deepcopy(m))

                trains = prune(
                    copy.deepcopy(model), config, example_inputs=example, select=select, finetune=keep_stage
                ).model
            finetune = recoverer.plan(trains, earlier)
        top1_before = accuracy() if measure_before else None
        latency_before = latency() if measure_before else {}
        given = config
        if isinstance(config, GradualPruning) and finetune is not None and train_data is not None:
            config = gradual_schedule(config, len(train_data) // finetune.batch_size, finetune.epochs)
        stages = [finetune.epochs] if finetune is not None else []
        hook = None
        if isinstance(config, FilterPruning) and config.iterative_steps > 1 and finetune is not None:
            stages = stage_epochs(finetune.epochs, config.iterative_steps)
            base = finetune

            def hook(m: torch.nn.Module, step: int) -> None:
                assert recoverer is not None
                recoverer.train(m, restart_config(base, stages[step]))

        result = prune(model, config, example_inputs=example, select=select, finetune=hook)
        if isinstance(given, GradualPruning):  # a budget re-plan re-sizes the ramp with the run
            for callback in result.callbacks:
                if isinstance(callback, GradualPruningCallback):
                    callback.follow_run(given)
        notes: list[str] = []
        if finetune is not None and recoverer is not None:
            last = restart_config(finetune, stages[-1]) if len(stages) > 1 else finetune
            recoverer.train(model, last, callbacks=result.callbacks)
            recoverer.finish()
            result.remeasure()  # the report describes the final, fine-tuned model
        if recoverer is not None and recoverer.run.budget is not None:
            b = recoverer.run.budget
            replanned = (
                f"; re-planned to {recoverer.run.epochs} from the measured epochs"
                if recoverer.run.epochs != b.epochs
                else ""
            )
            notes.append(
                f"budget {b.budget_minutes:g} min: {b.epochs} fine-tune epoch(s) of about "
                f"{b.epoch_seconds:.0f} s (measured over a {b.warmup_seconds:.1f} s warm-up){replanned}"
            )
        if round_choice is not None:
            notes.append(
                f"round_to {round_choice.round_to} chosen by timing one conv at widths "
                f"{round_choice.base - 15}..{round_choice.base} on {round_choice.runtime}"
                + (" (cached timings)" if round_choice.cached else "")
            )
        model.eval()
        top1_after = accuracy()
        latency_after = latency()
        if finetune is not None and (warning := teacher_note(recovery, top1_before, top1_after)):
            notes.append(warning)
        if result.report.macs_after == result.report.macs_before and result.report.sparsity > 0:
            notes.append(
                "unstructured sparsity: dense runtimes run the same MACs, so latency does not drop; "
                "the gain is the compressed file (layout csr) and sparse runtimes"
            )
        info = save_pruned(out, model, model_spec=spec, report=result.report, layout=layout)
        return PruneOutcome(
            report=result.report,
            out=out,
            layout=layout,
            size_bytes=info.size_bytes,
            dense_size_bytes=info.dense_size_bytes,
            top1_before=top1_before,
            top1_after=top1_after,
            latency_before=latency_before,
            latency_after=latency_after,
            finetune_epochs=recoverer.run.epochs if recoverer is not None else 0,
            notes=tuple(notes),
            recovery=recoverer.run.to_dict() if recoverer is not None else None,
            round_to=round_choice.to_dict() if round_choice is not None else None,
        )
