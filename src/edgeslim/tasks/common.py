"""Where models and data come from: the sources every task reads."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from edgeslim.config import short_repr
from edgeslim.data import ImageTensors, InputSize, find_or_fetch_data, load_dataset
from edgeslim.errors import ConfigError, DataError
from edgeslim.models import (
    create_model,
    load_model_from_checkpoint,
    load_weights,
    model_spec,
)
from edgeslim.yaml_schema import MAX_BATCH_SIZE, MAX_CLASSES, MAX_IMAGE_SIZE, MAX_RUNS

Split = Literal["train", "val", "test"]


def check_bench_counts(
    owner: str, batch_sizes: tuple[int, ...], runs: int, warmup: int, image_size: int | None = None
) -> None:
    """The sizes and counts of a timing run, each within the bounds every front-end uses
    (:mod:`edgeslim.yaml_schema`): a batch of 10^12 images or a 100,000 px side would end in an
    allocator error, 10^9 runs would never end. Errors name ``owner.field`` (``bench_task.runs``)."""

    def bad(value: object, low: int, high: int) -> bool:
        return isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high

    def n(x: int) -> str:  # as the YAML checks write bounds: 4096, 100,000
        return f"{x:,}" if x >= 10_000 else str(x)

    if not batch_sizes or any(bad(b, 1, MAX_BATCH_SIZE) for b in batch_sizes):
        shown = ", ".join(short_repr(b, 30) for b in batch_sizes[:8]) + (
            ", ..." if len(batch_sizes) > 8 else ""
        )
        raise ConfigError(
            f"{owner}.batch_sizes must all be integers from 1 to {n(MAX_BATCH_SIZE)}, got [{shown}]",
            field=f"{owner}.batch_sizes",
        )
    if bad(runs, 1, MAX_RUNS):
        raise ConfigError(
            f"{owner}.runs must be an integer from 1 to {n(MAX_RUNS)}, got {short_repr(runs, 30)}",
            field=f"{owner}.runs",
        )
    if bad(warmup, 0, MAX_RUNS):
        raise ConfigError(
            f"{owner}.warmup must be an integer from 0 to {n(MAX_RUNS)}, got {short_repr(warmup, 30)}",
            field=f"{owner}.warmup",
        )
    if image_size is not None and bad(image_size, 8, MAX_IMAGE_SIZE):
        raise ConfigError(
            f"{owner}.image_size must be an integer from 8 to {n(MAX_IMAGE_SIZE)}, got {short_repr(image_size, 30)}",
            field=f"{owner}.image_size",
        )


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: a zoo name (optionally with weights) or an edgeslim checkpoint."""

    name: str | None = None
    weights: Path | None = None
    checkpoint: Path | None = None
    num_classes: int | None = None
    pretrained: bool = False  # fetch the name's published weights (edgeslim.fetch), new head if needed

    def __post_init__(self) -> None:
        if self.checkpoint is not None and (self.name is not None or self.weights is not None):
            raise ConfigError(
                "give either ModelSource.checkpoint or ModelSource.name (with ModelSource.weights), not both",
                field="ModelSource.checkpoint",
            )
        if self.checkpoint is None and self.name is None:
            raise ConfigError(
                "no model given: set ModelSource.name (a zoo name, see `edgeslim models`) or "
                "ModelSource.checkpoint",
                field="ModelSource.name",
            )
        n = self.num_classes
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CLASSES):
            raise ConfigError(  # 10^12 classes would ask the allocator for a 256 TB head
                f"ModelSource.num_classes must be an integer from 1 to {MAX_CLASSES:,}, got {short_repr(n, 30)}",
                field="ModelSource.num_classes",
            )

    @property
    def artifact(self) -> Path | None:
        return self.checkpoint or self.weights

    def build(self, default_num_classes: int = 10) -> tuple[nn.Module, dict[str, Any]]:
        """Return the model (eval mode) and its spec {"name", "kwargs"} for checkpoints."""
        if self.checkpoint is not None:
            model, meta = load_model_from_checkpoint(self.checkpoint)
            spec = model_spec(model) or {"name": "unknown", "kwargs": {}}
            saved_classes = spec["kwargs"].get("num_classes")
            if self.num_classes is not None and saved_classes != self.num_classes:
                raise ConfigError(
                    f"ModelSource.num_classes {self.num_classes} does not match the checkpoint "
                    f"({saved_classes})",
                    field="ModelSource.num_classes",
                )
            return model, {**spec, "meta": meta}
        name = str(self.name)  # set: __post_init__ requires a name or a checkpoint
        model = create_model(
            name, num_classes=self.num_classes or default_num_classes, pretrained=self.pretrained
        )
        if self.weights is not None:
            load_weights(model, self.weights)
        model.eval()
        return model, model_spec(model) or {"name": name, "kwargs": {}}


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A dataset split on disk (CIFAR-10 pickles or an image-folder tree).

    ``image_size``: batches are resized to that square size (:class:`~edgeslim.data.InputSize`:
    random-resized crop when training, resize + center crop otherwise); None keeps the stored size,
    or the size a checkpoint records (:func:`fit_input`). A missing ``path`` named like CIFAR-10 is
    fetched (:func:`~edgeslim.data.find_or_fetch_data`).
    """

    path: str | None = None
    split: Split = "test"
    limit: int | None = None
    val_fraction: float = 0.1
    seed: int = 0
    train_limit: int | None = None  # when set, the train split uses this instead of ``limit``
    image_size: int | None = None

    def __post_init__(self) -> None:
        if self.image_size is not None:
            InputSize(self.image_size)  # a ConfigError now for a bad size

    def input_size(self) -> InputSize | None:
        return InputSize(self.image_size) if self.image_size is not None else None

    def load(self, split: Split | None = None) -> ImageTensors:
        root = find_or_fetch_data(self.path)
        split = split or self.split
        limit = self.train_limit if (split == "train" and self.train_limit is not None) else self.limit
        data = load_dataset(root, split, limit=limit, val_fraction=self.val_fraction, seed=self.seed)
        size = self.input_size()
        return data.with_input_size(size) if size is not None else data


def recorded_input(spec: dict[str, Any] | None) -> InputSize | None:
    """The input size a checkpoint's meta records (``meta["input"]``), else None."""
    meta = (spec or {}).get("meta") or {}
    recorded = meta.get("input") if isinstance(meta, dict) else None
    return InputSize.from_dict(recorded) if isinstance(recorded, dict) else None


def fit_input(data: ImageTensors, spec: dict[str, Any] | None) -> ImageTensors:
    """``data`` resized as the model was trained (its checkpoint's recorded input size) unless an
    input size was asked for explicitly (``DataSource.image_size``), which wins."""
    if data.input_size is not None:
        return data
    recorded = recorded_input(spec)
    return data.with_input_size(recorded) if recorded is not None else data


def input_meta(data: ImageTensors | None) -> dict[str, Any]:
    """``{"input": ...}`` for a checkpoint's meta when ``data`` is resized, else ``{}``."""
    if data is None or data.input_size is None:
        return {}
    return {"input": data.input_size.to_dict()}


def check_classes(model: nn.Module, data: ImageTensors, input_size: tuple[int, ...] | None = None) -> None:
    input_size = input_size or data.input_shape
    with torch.inference_mode():
        out = model(torch.zeros(1, *input_size))
    if out.shape[-1] != data.num_classes:
        raise DataError(
            f"the model predicts {out.shape[-1]} classes but the data at {data.source!r} has "
            f"{data.num_classes}; set ModelSource.num_classes or use matching data",
            field="ModelSource.num_classes",
        )
