"""Top-1/top-5 accuracy and mean cross-entropy of a classifier over a loader."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sized
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeslim.errors import DataError
from edgeslim.train.device import autocast, model_device, on_device, resolve_device
from edgeslim.train.progress import BatchProgress


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Accuracies in percent (0..100); ``loss`` is the mean cross-entropy per image."""

    top1: float
    top5: float
    loss: float
    num_images: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def unpack_batch(batch: Any, channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept ``(inputs, targets)`` pairs (tuples, lists) from any loader; targets become int64."""
    if not isinstance(batch, tuple | list) or len(batch) != 2:
        raise DataError(f"a loader batch must be an (inputs, targets) pair, got {type(batch).__name__}")
    inputs, targets = batch
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise DataError("a loader batch must hold tensors (inputs, targets)")
    if channels_last and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    if targets.dtype != torch.int64:
        targets = targets.long()
    return inputs, targets


def to_channels_last(model: nn.Module) -> nn.Module:
    """Convert 4-d weights to channels_last in place (values unchanged); the fast layout for CPU convs."""
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, k: int) -> tuple[int, int]:
    """(top-1 hits, top-k hits); k is clipped to the number of classes, so top-k is 100% when k >= C."""
    k = max(1, min(k, logits.shape[1]))
    top = logits.topk(k, dim=1).indices
    hits = top == targets[:, None]
    return int(hits[:, 0].sum().item()), int(hits.any(dim=1).sum().item())


def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    bf16: bool = False,
    channels_last: bool = False,
    progress: bool = False,
    device: str | torch.device | None = None,
) -> EvalResult:
    """Evaluate in eval mode under ``inference_mode``; the model's train/eval mode is restored.

    With ``channels_last`` the model is converted in place (values unchanged) to match the inputs.
    ``device`` (``auto``, ``cpu``, ``cuda``; :func:`~edgeslim.train.device.resolve_device`): where it
    runs, with AMP on CUDA, the model moved back afterwards; None (default) runs where the model
    is (wrappers around other runtimes and int8 CPU kernels stay on the CPU).
    """
    dev = model_device(model) if device is None else resolve_device(device)
    was_training = model.training
    if channels_last:
        to_channels_last(model)
    model.eval()
    loss_sum = 0.0
    correct1 = correct5 = seen = 0
    total = len(loader) if isinstance(loader, Sized) else None
    try:
        with (
            BatchProgress(progress) as bar,
            on_device(model, dev),
            torch.inference_mode(),
            autocast(dev, bf16),
        ):
            bar.new_bar("eval", total)
            for batch in loader:
                inputs, targets = unpack_batch(batch, channels_last)
                if dev.type != "cpu":
                    inputs, targets = inputs.to(dev, non_blocking=True), targets.to(dev, non_blocking=True)
                logits = model(inputs).float()
                if logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
                    raise DataError(
                        f"model output has shape {tuple(logits.shape)}; expected (batch, classes) "
                        f"with batch {targets.shape[0]}"
                    )
                loss_sum += float(F.cross_entropy(logits, targets, reduction="sum").item())
                c1, c5 = topk_correct(logits, targets, 5)
                correct1 += c1
                correct5 += c5
                seen += targets.shape[0]
                bar.advance(f"top1 {100.0 * correct1 / seen:.2f}%")
    finally:
        model.train(was_training)
    if seen == 0:
        raise DataError("the evaluation loader yielded no images")
    return EvalResult(
        top1=100.0 * correct1 / seen, top5=100.0 * correct5 / seen, loss=loss_sum / seen, num_images=seen
    )
