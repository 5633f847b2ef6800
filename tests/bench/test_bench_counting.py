"""Exact parameter, non-zero and MAC counts; artifact sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from edgeslim.bench import (
    count_macs,
    count_nonzero_params,
    count_params,
    file_size_bytes,
    state_dict_size_bytes,
)
from edgeslim.errors import EdgeslimError


def test_conv_macs_exact() -> None:
    assert count_macs(nn.Conv2d(3, 16, 3, padding=1), (1, 3, 32, 32)) == 3 * 16 * 9 * 32 * 32


def test_linear_macs_exact_and_per_sample() -> None:
    linear = nn.Linear(10, 5)
    assert count_macs(linear, (1, 10)) == 50
    assert count_macs(linear, (8, 10)) == 50  # per sample, whatever the batch


def test_sequential_macs_sum_of_layers() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 3*8*9*16*16
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3, stride=2, padding=1, groups=2),  # (8/2)*4*9*8*8
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),  # 40
    ).train()
    expected = 3 * 8 * 9 * 16 * 16 + 4 * 4 * 9 * 8 * 8 + 40
    assert count_macs(model, (3, 16, 16)) == expected  # (C, H, W) accepted too
    assert model.training  # mode restored


def test_count_params_and_nonzero_after_zeroing() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(4, 2))
    total = 3 * 4 * 9 + 4 + 4 * 2 + 2
    assert count_params(model) == total
    nn.init.constant_(model[1].bias, 1.0)
    assert count_nonzero_params(model) == total
    with torch.no_grad():
        model[0].weight[0].zero_()  # 27 entries
        model[1].bias[1] = 0.0
    assert count_nonzero_params(model) == total - 28
    model[0].bias.requires_grad_(False)
    assert count_params(model, trainable_only=True) == total - 4


def test_shared_parameters_counted_once() -> None:
    layer = nn.Linear(3, 3, bias=False)
    assert count_params(nn.Sequential(layer, layer)) == 9
    assert count_nonzero_params(nn.Sequential(layer, layer)) == 9


def test_nonzero_respects_torch_prune_masks() -> None:
    model = nn.Sequential(nn.Linear(10, 10, bias=False))
    prune.l1_unstructured(model[0], "weight", amount=0.3)
    assert count_params(model) == 100  # weight_orig stays dense
    assert count_nonzero_params(model) == 70


def test_nonzero_respects_parametrizations() -> None:
    class Mask(nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            mask = torch.ones_like(w)
            mask[:, :2] = 0
            return w * mask

    layer = nn.Linear(4, 3)
    parametrize.register_parametrization(layer, "weight", Mask())
    assert count_params(layer) == 15
    assert count_nonzero_params(layer) == 15 - 6


def test_file_sizes(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"x" * 10)
    sub = tmp_path / "dir" / "nested"
    sub.mkdir(parents=True)
    (sub / "b").write_bytes(b"y" * 7)
    (tmp_path / "dir" / "c").write_bytes(b"z" * 5)
    assert file_size_bytes(tmp_path / "a.bin") == 10
    assert file_size_bytes(tmp_path / "dir") == 12
    (tmp_path / "model.xml").write_bytes(b"<x/>")
    (tmp_path / "model.bin").write_bytes(b"w" * 100)
    assert file_size_bytes(tmp_path / "model.xml") == 104
    with pytest.raises(EdgeslimError, match="no such file"):
        file_size_bytes(tmp_path / "missing.onnx")


def test_state_dict_size_grows_with_params() -> None:
    small, big = state_dict_size_bytes(nn.Linear(10, 10)), state_dict_size_bytes(nn.Linear(100, 100))
    assert big - small >= (100 * 100 - 10 * 10) * 4
