"""Evaluate, train, benchmark and list models: the foundation tasks."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from edgeslim.bench import (
    Measurement,
    benchmark_torch,
    count_macs,
    count_nonzero_params,
    count_params,
    env_fingerprint,
    file_size_bytes,
    state_dict_size_bytes,
    threads,
)
from edgeslim.data import Augment, BatchLoader
from edgeslim.errors import ConfigError, DataError
from edgeslim.models import (
    create_model,
    list_models,
    model_info,
)
from edgeslim.tasks.common import (
    DataSource,
    ModelSource,
    check_bench_counts,
    check_classes,
    fit_input,
    input_meta,
    recorded_input,
)
from edgeslim.train import TrainConfig, TrainResult, evaluate, train


def evaluate_task(
    model_source: ModelSource,
    data_source: DataSource,
    *,
    batch_size: int = 256,
    num_threads: int | None = None,
    progress: bool = True,
    device: str | None = None,
) -> Measurement:
    """Top-1/top-5 of a model on a dataset split, with its size, parameters and MACs.

    Images are resized to ``data_source.image_size``, else to the size the checkpoint records.
    ``device``: ``auto`` (default: a CUDA GPU when present), ``cpu`` or ``cuda``."""
    if batch_size < 1:
        raise ConfigError(
            f"evaluate_task.batch_size must be at least 1, got {batch_size}", field="evaluate_task.batch_size"
        )
    with threads(num_threads):
        data = data_source.load()
        model, spec = model_source.build(default_num_classes=data.num_classes)
        data = fit_input(data, spec)
        input_size = data.input_shape
        check_classes(model, data, input_size)
        loader = BatchLoader(data, batch_size)
        result = evaluate(model, loader, progress=progress, device=device or "auto")
        artifact = model_source.artifact
        notes: list[str] = []
        if artifact is not None:
            size = file_size_bytes(artifact)
        else:
            size = state_dict_size_bytes(model)
            notes.append("size_bytes is the serialized state_dict (no file given)")
        return Measurement(
            model=spec["name"],
            artifact=str(artifact) if artifact else None,
            runtime="torch",
            precision="fp32",
            simulated=False,
            params=count_params(model),
            nonzero_params=count_nonzero_params(model),
            macs=count_macs(model, (1, *input_size)),
            size_bytes=size,
            top1=result.top1,
            top5=result.top5,
            num_images=result.num_images,
            env=env_fingerprint(),
            notes=tuple(notes),
            extra={
                "split": data_source.split,
                "data": data.source,
                "loss": result.loss,
                **({"image_size": data.input_size.image_size} if data.input_size is not None else {}),
            },
        )


def train_task(
    model_source: ModelSource,
    data_source: DataSource,
    config: TrainConfig,
    *,
    out: Path,
    resume: bool = False,
    validate: bool = True,
    augment: Augment | None = None,
    num_threads: int | None = None,
    progress: bool = True,
    device: str | None = None,
) -> TrainResult:
    """Train (or fine-tune) a model; checkpoint to ``out`` every epoch; ``resume`` continues from it.

    The input size (``data_source.image_size``, else the one the starting checkpoint records) is
    recorded in the checkpoint, so evaluation, export and benchmarks reuse it. ``device``: ``auto``
    (default: a CUDA GPU when present), ``cpu`` or ``cuda`` (with AMP)."""
    if resume and not out.is_file():
        raise ConfigError(
            f"train_task.resume is set but there is no checkpoint at {str(out)!r} (train_task.out); "
            "start without resume first",
            field="train_task.resume",
        )
    with threads(num_threads):
        train_data = data_source.load("train")
        model, spec = model_source.build(default_num_classes=train_data.num_classes)
        train_data = fit_input(train_data, spec)
        check_classes(model, train_data)
        val_loader = None
        if validate and data_source.val_fraction > 0:
            val_loader = BatchLoader(fit_input(data_source.load("val"), spec), 512)
        loader = BatchLoader(
            train_data,
            config.batch_size,
            shuffle=True,
            augment=augment if augment is not None else Augment(),
            drop_last=True,
            seed=config.seed,
            channels_last=config.channels_last,
        )
        if len(loader) == 0:
            raise DataError(
                f"{train_data.source!r}: {len(train_data)} training images is fewer than one batch of "
                f"{config.batch_size}; lower TrainConfig.batch_size",
                field="TrainConfig.batch_size",
            )
        model.train()
        return train(
            model,
            loader,
            config,
            val_loader=val_loader,
            checkpoint_path=out,
            resume=resume,
            model_spec={
                "name": spec["name"],
                "kwargs": spec["kwargs"],
                "meta": {
                    "channel_spec": (spec.get("meta") or {}).get("channel_spec"),
                    **input_meta(train_data),
                },
            },
            progress=progress,
            device=device,
        )


def bench_task(
    model_source: ModelSource,
    *,
    batch_sizes: tuple[int, ...] = (1, 32),
    input_size: tuple[int, int, int] | None = None,
    num_threads: int | None = None,
    warmup: int = 5,
    runs: int = 30,
    channels_last: bool = False,
) -> Measurement:
    """Latency (median, p90) at each batch size, throughput, peak memory, size, params and MACs.

    ``input_size`` (C, H, W) defaults to the size the checkpoint records, else 3x32x32."""
    side = max(input_size[1:]) if input_size is not None else None
    check_bench_counts("bench_task", batch_sizes, runs, warmup, side)
    model, spec = model_source.build()
    if input_size is None:
        recorded = recorded_input(spec)
        input_size = (3, recorded.image_size, recorded.image_size) if recorded is not None else (3, 32, 32)
    measurement = benchmark_torch(
        model,
        input_size,
        batch_sizes=batch_sizes,
        threads=num_threads or torch.get_num_threads(),
        warmup=warmup,
        runs=runs,
        channels_last=channels_last,
    )
    artifact = model_source.artifact
    size = file_size_bytes(artifact) if artifact else state_dict_size_bytes(model)
    return dataclasses.replace(
        measurement, model=spec["name"], artifact=str(artifact) if artifact else None, size_bytes=size
    )


def list_models_task(
    *, pattern: str | None = None, include_tiny: bool = False, details: bool = False
) -> list[dict[str, Any]]:
    """The zoo as plain rows; with ``details`` each model is built to count parameters and MACs."""
    rows: list[dict[str, Any]] = []
    for name in list_models(pattern):
        info = model_info(name)
        if info.is_tiny and not include_tiny:
            continue
        row: dict[str, Any] = {
            "name": name,
            "family": info.family,
            "input_size": list(info.input_size),
            "tiny": info.is_tiny,
            "description": info.description,
        }
        if details:
            model = create_model(name)
            row["params"] = count_params(model)
            row["macs"] = count_macs(model, (1, *info.input_size))
        rows.append(row)
    if pattern and not rows:
        raise ConfigError(f"no model matches {pattern!r}; run `edgeslim models` for the list")
    return rows
