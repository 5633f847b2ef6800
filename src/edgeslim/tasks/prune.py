"""The pruning task behind ``edgeslim prune``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from edgeslim.bench import (
    LatencyStats,
    measure_latency,
    threads,
)
from edgeslim.data import Augment, BatchLoader
from edgeslim.errors import ConfigError
from edgeslim.pruning import (
    GradualPruning,
    PruneReport,
    PruningConfig,
    SparseLayout,
    gradual_config_for_training,
    prune,
    save_pruned,
)
from edgeslim.select import LayerSelection
from edgeslim.tasks.common import DataSource, ModelSource, check_classes
from edgeslim.train import TrainConfig, evaluate, train


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
    layout: SparseLayout = "dense",
    latency_batch_sizes: tuple[int, ...] = (1, 32),
    latency_runs: int = 20,
    num_threads: int | None = None,
    progress: bool = True,
    measure_before: bool = True,
) -> PruneOutcome:
    """Prune a model, optionally fine-tune it, and measure accuracy, size and latency before and after.

    ``measure_before=False`` skips the 'before' accuracy and latency (``top1_before`` None,
    ``latency_before`` empty) for callers that measured the unpruned model once already (sweeps).
    """
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
    with threads(num_threads):
        test_data = data_source.load("test") if data_source is not None else None
        train_data = data_source.load("train") if (data_source is not None and finetune is not None) else None
        default_classes = test_data.num_classes if test_data is not None else 10
        model, spec = model_source.build(default_num_classes=default_classes)
        input_size = tuple(test_data.images.shape[1:]) if test_data is not None else (3, 32, 32)
        if test_data is not None:
            check_classes(model, test_data, input_size)
        example = torch.randn(1, *input_size)

        def accuracy() -> float | None:
            if test_data is None:
                return None
            return evaluate(model, BatchLoader(test_data, 256), progress=False).top1

        def latency() -> dict[int, LatencyStats]:
            model.eval()
            with torch.inference_mode():
                return {
                    b: measure_latency(model, torch.randn(b, *input_size), warmup=3, runs=latency_runs)
                    for b in latency_batch_sizes
                }

        top1_before = accuracy() if measure_before else None
        latency_before = latency() if measure_before else {}
        if isinstance(config, GradualPruning) and finetune is not None and train_data is not None:
            steps_per_epoch = len(train_data) // finetune.batch_size
            config = gradual_config_for_training(
                config.final_sparsity,
                steps_per_epoch=steps_per_epoch,
                epochs=finetune.epochs,
                initial_sparsity=config.initial_sparsity,
                scope=config.scope,
            )
        result = prune(model, config, example_inputs=example, select=select)
        notes: list[str] = []
        if finetune is not None and train_data is not None:
            loader = BatchLoader(
                train_data,
                finetune.batch_size,
                shuffle=True,
                augment=Augment(),
                drop_last=True,
                seed=finetune.seed,
                channels_last=finetune.channels_last,
            )
            model.train()
            train(model, loader, finetune, callbacks=result.callbacks, progress=progress)
            model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
            result.remeasure()  # the report describes the final, fine-tuned model
        model.eval()
        top1_after = accuracy()
        latency_after = latency()
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
            finetune_epochs=finetune.epochs if finetune is not None else 0,
            notes=tuple(notes),
        )
