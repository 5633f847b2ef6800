"""evaluate() on a model whose logits are known: exact top-1/top-5/loss, mode restored."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeslim.errors import DataError
from edgeslim.train import EvalResult, evaluate


class LogitsAreInputs(nn.Module):
    """Returns its input: each sample's input *is* its logit vector, so every rank is hand-made."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1.0


def ranked(num_classes: int, order: list[int]) -> torch.Tensor:
    """Logits where classes in ``order`` get the highest scores, first = top-1."""
    logits = torch.zeros(num_classes)
    for rank, cls in enumerate(order):
        logits[cls] = float(num_classes - rank)
    return logits


def test_exact_top1_top5_and_loss() -> None:
    logits = torch.stack(
        [
            ranked(10, [3, 1, 2, 4, 5]),  # target 3: top-1 hit
            ranked(10, [0, 1, 2, 4, 7]),  # target 7: rank 5 -> top-5 hit only
            ranked(10, [0, 1, 2, 4, 5, 9]),  # target 9: rank 6 -> miss
            ranked(10, [8, 6]),  # target 6: rank 2 -> top-5 hit
        ]
    )
    targets = torch.tensor([3, 7, 9, 6])
    loader = [(logits[:3], targets[:3]), (logits[3:], targets[3:])]
    result = evaluate(LogitsAreInputs(), loader)
    assert result == EvalResult(
        top1=25.0, top5=75.0, loss=pytest.approx(F.cross_entropy(logits, targets).item()), num_images=4
    )
    assert result.to_dict()["num_images"] == 4


def test_top5_with_fewer_than_five_classes_is_100() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0]])
    result = evaluate(LogitsAreInputs(), [(logits, torch.tensor([0, 0]))])
    assert (result.top1, result.top5) == (50.0, 100.0)


def test_mode_is_restored_and_no_grad() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.Dropout(0.5))
    x, y = torch.randn(6, 4), torch.randint(0, 2, (6,))
    model.train()
    a = evaluate(model, [(x, y)])
    assert model.training
    b = evaluate(model, [(x, y)])
    assert a == b  # dropout off during evaluation
    model.eval()
    evaluate(model, [(x, y)])
    assert not model.training
    assert all(p.grad is None for p in model.parameters())


def test_bf16_channels_last_and_int32_targets() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    x, y = torch.randn(8, 3, 6, 6), torch.randint(0, 3, (8,), dtype=torch.int32)
    fp32 = evaluate(model, [(x, y)])
    bf16 = evaluate(model, [(x, y)], bf16=True, channels_last=True)
    assert bf16.num_images == fp32.num_images == 8
    assert bf16.loss == pytest.approx(fp32.loss, rel=0.05)


def test_empty_loader_and_bad_batches() -> None:
    with pytest.raises(DataError, match="no images"):
        evaluate(LogitsAreInputs(), [])
    with pytest.raises(DataError, match="pair"):
        evaluate(LogitsAreInputs(), [torch.zeros(2, 3)])
    with pytest.raises(DataError, match="shape"):
        evaluate(LogitsAreInputs(), [(torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long))])
