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
from edgeslim.checkpoint import recorded_image_size, save_checkpoint
from edgeslim.data import BatchLoader, ImageTensors, InputSize
from edgeslim.data.datasets import DATA_ENV
from edgeslim.errors import ConfigError, DataError, EdgeslimError
from edgeslim.export.api import ExportResult, export
from edgeslim.export.bench import RuntimeComparison, artifact_input_size, benchmark_artifact
from edgeslim.export.runners import (
    TORCH_KINDS,
    TorchRunner,
    check_trusted,
    inspect_artifact,
    load_torch_artifact,
    open_runner,
    trusting_artifacts,
)
from edgeslim.models import model_info
from edgeslim.quantization import fake_quantizers
from edgeslim.tasks.common import DataSource, ModelSource, check_bench_counts
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


def _resized(data: ImageTensors, size: int | None) -> ImageTensors:
    """``data`` resized to ``size`` px unless it is resized already or has that size."""
    if size is None or data.input_size is not None or data.image_size == (size, size):
        return data
    return data.with_input_size(InputSize(size))


def _artifact_size(path: Path | None) -> int | None:
    """The square input size a file declares (ONNX/IR dims, an engine's record, a checkpoint's
    recorded training size), else None."""
    if path is None:
        return None
    try:
        size = artifact_input_size(inspect_artifact(path))
    except EdgeslimError:
        return None
    return int(size[-1]) if size and len(size) == 3 and size[-1] == size[-2] else None


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
    from an FP32 model calibrates static PTQ on 10 batches of 64 training images. Images are
    resized to ``image_size`` (else ``data_source.image_size``, else the size the checkpoint records).
    """
    if parity_images < 1:
        raise ConfigError(
            f"export_task.parity_images must be at least 1, got {parity_images}",
            field="export_task.parity_images",
        )
    notes: list[str] = []
    with threads(num_threads):
        model, name = _load_model(model_source)
        size = image_size or (data_source.image_size if data_source is not None else None)
        if size is None and model_source.checkpoint is not None:
            size = recorded_image_size(model_source.checkpoint)
        test: ImageTensors | None = None
        if data_source is not None and _has_data(data_source):
            try:
                test = _resized(
                    dataclasses.replace(data_source, split="test", limit=parity_images).load("test"), size
                )
            except DataError:
                if data_source.path:  # asked for by name: its error stands
                    raise
                # no --data: $EDGESLIM_DATA may be a data root, not a dataset; export needs no images
        if test is not None:
            input_size: tuple[int, ...] = test.input_shape
            inputs: Tensor = next(iter(BatchLoader(test, parity_images)))[0]
            source = "real test images"
            notes.append(f"parity images: {test.source}")
        else:
            try:
                input_size = tuple(model_info(name).input_size)
            except Exception:
                input_size = (3, 32, 32)
            if size is not None:
                input_size = (input_size[0], size, size)
            inputs = torch.randn((parity_images, *input_size), generator=torch.Generator().manual_seed(0))
            source = "random"
            notes.append("no dataset given (--data): parity was checked on random inputs, not images")
        calibration = None
        if precision == "int8" and not fake_quantizers(model):
            if test is None or data_source is None:
                raise ConfigError(
                    "export_task.precision 'int8' of an FP32 model needs DataSource.path to calibrate "
                    "on (or quantize it first with `edgeslim quantize` and export the packed file)",
                    field="DataSource.path",
                )
            train = _resized(dataclasses.replace(data_source, limit=None).load("train"), size)
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
    trust_artifact: bool = False,
) -> Measurement:
    """Top-1/top-5 of an artifact run on its runtime (``runtime`` None: the default for the file).

    Images are resized to ``data_source.image_size``, else to the size the file declares (static
    ONNX/IR dims, the size a checkpoint records). A TorchScript or .pt2 file is refused unless
    ``trust_artifact`` (loading one can run code it contains)."""
    if batch_size < 1:
        raise ConfigError(
            f"evaluate_artifact_task.batch_size must be at least 1, got {batch_size}",
            field="evaluate_artifact_task.batch_size",
        )
    with threads(num_threads), trusting_artifacts(trust_artifact):
        info = inspect_artifact(artifact)
        check_trusted(info.path, info.kind)
        data = data_source.load()
        if data.input_size is None:
            data = _resized(data, _artifact_size(info.path))
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
                "macs": count_macs(runner.model, (1, *data.input_shape)),
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
    trust_artifact: bool = False,
) -> RuntimeComparison:
    """Latency, throughput, memory and size of an artifact (or a model) on each runtime asked for.

    A model given by ``model_source`` is written to a temporary checkpoint first, so that every
    runtime loads a file. Parity of converted copies uses ``parity_images`` test images when data
    is given (else random inputs). A TorchScript or .pt2 file is refused unless ``trust_artifact``.
    """
    check_bench_counts("bench_artifact_task", batch_sizes, runs, warmup, image_size)
    if (artifact is None) == (model_source is None):
        raise ConfigError(
            "give exactly one of bench_artifact_task.artifact and bench_artifact_task.model_source",
            field="bench_artifact_task.artifact",
        )
    parity_inputs: Tensor | None = None
    source = "random"
    if data_source is not None and _has_data(data_source):
        test = dataclasses.replace(data_source, split="test", limit=parity_images).load("test")
        wanted = image_size or _artifact_size(artifact or (model_source.checkpoint if model_source else None))
        test = _resized(test, wanted)
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
            trust_artifact=trust_artifact,
        )
