"""Deployment tasks behind ``edgeslim export``, ``edgeslim eval FILE`` and ``edgeslim bench FILE``."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from edgeslim.bench import (
    Measurement,
    count_macs,
    count_nonzero_params,
    count_params,
    env_fingerprint,
    threads,
)
from edgeslim.checkpoint import save_checkpoint
from edgeslim.data import BatchLoader, ImageTensors
from edgeslim.data.datasets import DATA_ENV
from edgeslim.errors import ConfigError, DataError
from edgeslim.export.api import ExportResult, export
from edgeslim.export.bench import RuntimeComparison, benchmark_artifact
from edgeslim.export.runners import (
    TORCH_KINDS,
    TorchRunner,
    inspect_artifact,
    load_torch_artifact,
    open_runner,
)
from edgeslim.models import model_info
from edgeslim.quantization import fake_quantizers
from edgeslim.tasks.common import DataSource, ModelSource
from edgeslim.train import evaluate

__all__ = ["ExportOutcome", "bench_artifact_task", "evaluate_artifact_task", "export_task"]


@dataclasses.dataclass(frozen=True)
class ExportOutcome:
    """What ``edgeslim export`` reports: the artifact, its parity and where the parity inputs came from."""

    model: str
    result: ExportResult
    input_size: tuple[int, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.result.ok

    def to_dict(self) -> dict[str, Any]:
        data = {"model": self.model, "input_size": list(self.input_size), **self.result.to_dict()}
        data["notes"] = [*self.notes, *self.result.notes]
        return data


def _has_data(data_source: DataSource) -> bool:
    """Whether images can be loaded: a data path given, or $EDGESLIM_DATA set."""
    return bool(data_source.path) or bool(os.environ.get(DATA_ENV, "").strip())


def _load_model(model_source: ModelSource) -> tuple[nn.Module, str]:
    """The model to export: a zoo model, a checkpoint, a pruned sparse file or a packed low-bit file."""
    if model_source.checkpoint is not None:
        info = inspect_artifact(model_source.checkpoint)
        if info.kind not in TORCH_KINDS:
            raise ConfigError(
                f"ModelSource.checkpoint {str(model_source.checkpoint)!r} is a {info.kind} artifact; "
                "export starts from a PyTorch model (zoo name, checkpoint, pruned or packed file)",
                field="ModelSource.checkpoint",
            )
        if info.kind in ("packed", "exported_program", "torchscript"):
            model, _ = load_torch_artifact(info.path, info.kind)
            return model, info.model or info.path.stem
    model, spec = model_source.build()
    return model, str(spec.get("name", "model"))


def export_task(
    model_source: ModelSource,
    format: str,
    *,
    out: Path,
    precision: str = "fp32",
    data_source: DataSource | None = None,
    parity_images: int = 256,
    image_size: int | None = None,
    opset: int = 18,
    num_threads: int | None = None,
) -> ExportOutcome:
    """Export a model to ``format`` at ``out`` and check it on ``parity_images`` real test images.

    Without data (no data path and no $EDGESLIM_DATA) parity runs on random inputs and says so. int8
    from an FP32 model calibrates static PTQ on 10 batches of 64 training images.
    """
    if parity_images < 1:
        raise ConfigError(
            f"export_task.parity_images must be at least 1, got {parity_images}",
            field="export_task.parity_images",
        )
    notes: list[str] = []
    with threads(num_threads):
        model, name = _load_model(model_source)
        test: ImageTensors | None = None
        if data_source is not None and _has_data(data_source):
            test = dataclasses.replace(data_source, split="test", limit=parity_images).load("test")
        if test is not None:
            input_size: tuple[int, ...] = tuple(int(s) for s in test.images.shape[1:])
            inputs: Tensor = next(iter(BatchLoader(test, parity_images)))[0]
            source = "real test images"
            notes.append(f"parity images: {test.source}")
        else:
            try:
                input_size = tuple(model_info(name).input_size)
            except Exception:
                input_size = (3, 32, 32)
            if image_size is not None:
                input_size = (input_size[0], image_size, image_size)
            inputs = torch.randn((parity_images, *input_size), generator=torch.Generator().manual_seed(0))
            source = "random"
            notes.append(f"no data (and no ${DATA_ENV}): parity was checked on random inputs, not images")
        calibration = None
        if precision == "int8" and not fake_quantizers(model):
            if test is None or data_source is None:
                raise ConfigError(
                    "export_task.precision 'int8' of an FP32 model needs DataSource.path to calibrate "
                    "on (or quantize it first with `edgeslim quantize` and export the packed file)",
                    field="DataSource.path",
                )
            train = dataclasses.replace(data_source, limit=None).load("train")
            calibration = BatchLoader(train, 64, shuffle=True, seed=data_source.seed)
            notes.append(f"calibrated on {min(10, len(calibration))} batches of 64 training images")
        result = export(
            model,
            format,
            inputs[:2],
            out=out,
            precision=precision,
            calibration=calibration,
            parity_inputs=inputs,
            parity_source=source,
            opset=opset,
            threads=num_threads,
        )
    return ExportOutcome(name, result, input_size, tuple(notes))


class _RunnerModule(nn.Module):
    """A runner behind an nn.Module face, so the normal evaluation loop drives any runtime."""

    def __init__(self, runner: Any) -> None:
        super().__init__()
        self.runner = runner

    def forward(self, x: Tensor) -> Tensor:
        return torch.from_numpy(self.runner.run(x.detach().cpu().numpy()))


def evaluate_artifact_task(
    artifact: Path,
    data_source: DataSource,
    *,
    runtime: str | None = None,
    batch_size: int = 256,
    num_threads: int | None = None,
    progress: bool = True,
) -> Measurement:
    """Top-1/top-5 of an artifact run on its runtime (``runtime`` None: the default for the file)."""
    if batch_size < 1:
        raise ConfigError(
            f"evaluate_artifact_task.batch_size must be at least 1, got {batch_size}",
            field="evaluate_artifact_task.batch_size",
        )
    with threads(num_threads):
        info = inspect_artifact(artifact)
        data = data_source.load()
        runner = open_runner(artifact, runtime, threads=num_threads, info=info)
        probe = runner.run(_first(data))
        if probe.shape[-1] != data.num_classes:
            raise DataError(
                f"the artifact predicts {probe.shape[-1]} classes but the data at {data.source!r} has "
                f"{data.num_classes}; use matching data"
            )
        result = evaluate(_RunnerModule(runner), BatchLoader(data, batch_size), progress=progress)
        counts: dict[str, Any] = {}
        if isinstance(runner, TorchRunner) and isinstance(runner.model, nn.Module):
            counts = {
                "params": count_params(runner.model),
                "nonzero_params": count_nonzero_params(runner.model),
                "macs": count_macs(runner.model, (1, *data.images.shape[1:])),
            }
        notes = ["fake quantization in PyTorch: low-bit values, float arithmetic"] if runner.simulated else []
        notes += runner.notes  # e.g. a dynamic int8 file on torch's real int8 kernels
        return Measurement(
            model=info.model or info.path.stem,
            artifact=str(info.path),
            runtime=runner.runtime,
            precision=runner.precision,
            simulated=runner.simulated,
            size_bytes=info.size_bytes,
            top1=result.top1,
            top5=result.top5,
            num_images=result.num_images,
            env=env_fingerprint(),
            notes=tuple(notes),
            extra={"split": data_source.split, "data": data.source, "loss": result.loss, "kind": info.kind},
            **counts,
        )


def _first(data: ImageTensors) -> Any:
    return next(iter(BatchLoader(data, 1)))[0].numpy()


def bench_artifact_task(
    artifact: Path | None,
    *,
    model_source: ModelSource | None = None,
    runtimes: tuple[str, ...] = ("all",),
    batch_sizes: tuple[int, ...] = (1, 32),
    image_size: int | None = None,
    num_threads: int | None = None,
    warmup: int = 5,
    runs: int = 30,
    data_source: DataSource | None = None,
    parity_images: int = 64,
) -> RuntimeComparison:
    """Latency, throughput, memory and size of an artifact (or a model) on each runtime asked for.

    A model given by ``model_source`` is written to a temporary checkpoint first, so that every
    runtime loads a file. Parity of converted copies uses ``parity_images`` test images when data
    is given (else random inputs).
    """
    if any(b < 1 for b in batch_sizes):
        raise ConfigError(
            f"bench_artifact_task.batch_sizes must all be at least 1, got {list(batch_sizes)}",
            field="bench_artifact_task.batch_sizes",
        )
    if runs < 1:
        raise ConfigError(
            f"bench_artifact_task.runs must be at least 1, got {runs}", field="bench_artifact_task.runs"
        )
    if (artifact is None) == (model_source is None):
        raise ConfigError(
            "give exactly one of bench_artifact_task.artifact and bench_artifact_task.model_source",
            field="bench_artifact_task.artifact",
        )
    parity_inputs: Tensor | None = None
    source = "random"
    if data_source is not None and _has_data(data_source):
        test = dataclasses.replace(data_source, split="test", limit=parity_images).load("test")
        parity_inputs = next(iter(BatchLoader(test, parity_images)))[0]
        source = "real test images"
    input_size: tuple[int, ...] | None = None
    if image_size is not None:
        input_size = (3, image_size, image_size)
    elif parity_inputs is not None:
        input_size = tuple(int(s) for s in parity_inputs.shape[1:])
    with tempfile.TemporaryDirectory(prefix="edgeslim-bench-model-") as tmp:
        path = artifact
        if model_source is not None and model_source.checkpoint is not None:
            path = model_source.checkpoint
        elif model_source is not None:
            model, spec = model_source.build()
            name = str(spec["name"])
            path = save_checkpoint(
                Path(tmp) / f"{name.replace(':', '_')}.pt",
                model,
                model_name=name,
                model_kwargs=spec["kwargs"],
            )
        if path is None:
            raise ConfigError("no artifact given")
        if (
            input_size is not None
            and parity_inputs is not None
            and tuple(parity_inputs.shape[1:]) != input_size
        ):
            parity_inputs = None
            source = "random"
        return benchmark_artifact(
            path,
            list(runtimes),
            input_size=input_size,
            batch_sizes=batch_sizes,
            num_threads=num_threads,
            warmup=warmup,
            runs=runs,
            parity_inputs=parity_inputs,
            parity_source=source,
        )
