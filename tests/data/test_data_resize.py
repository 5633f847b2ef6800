"""Batched resize / center crop / random-resized crop on uint8 batches."""

from __future__ import annotations

import pytest
import torch

from edgeslim.data.resize import InputSize, center_crop, random_resized_crop, resize, resize_center_crop
from edgeslim.errors import ConfigError


def _batch(b: int = 2, h: int = 32, w: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_resize_keeps_aspect_and_constant_images() -> None:
    x = _batch(2, 32, 48)
    assert resize(x, 64).shape == (2, 3, 64, 96) and resize(x, 64).dtype == torch.uint8
    assert resize(x, 16).shape == (2, 3, 16, 24)
    assert resize(x, 32) is x
    flat = torch.full((1, 3, 32, 32), 77, dtype=torch.uint8)
    assert torch.equal(resize(flat, 224), torch.full((1, 3, 224, 224), 77, dtype=torch.uint8))
    assert resize(x[:0], 64).shape == (0, 3, 64, 96)
    with pytest.raises(ValueError, match="uint8"):
        resize(x.float(), 64)


def test_center_crop_and_eval_transform() -> None:
    x = torch.arange(36, dtype=torch.uint8).view(1, 1, 6, 6).expand(1, 3, 6, 6).contiguous()
    assert torch.equal(center_crop(x, 2)[0, 0], torch.tensor([[14, 15], [20, 21]], dtype=torch.uint8))
    assert center_crop(x, 8).shape == (1, 3, 8, 8)  # padded
    assert resize_center_crop(_batch(), 224).shape == (2, 3, 224, 224)
    assert resize_center_crop(_batch(1, 40, 60), 224, crop_fraction=0.875).shape == (1, 3, 224, 224)


def test_random_resized_crop_is_seeded_batched_and_in_range() -> None:
    x = _batch(4)
    a = random_resized_crop(x, 64, torch.Generator().manual_seed(1), hflip=True)
    b = random_resized_crop(x, 64, torch.Generator().manual_seed(1), hflip=True)
    c = random_resized_crop(x, 64, torch.Generator().manual_seed(2), hflip=True)
    assert a.shape == (4, 3, 64, 64) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    # full-image crop with aspect 1 is a plain resize
    full = random_resized_crop(x, 64, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    plain = torch.nn.functional.interpolate(x.float(), size=(64, 64), mode="bilinear", align_corners=False)
    assert (full.float() - plain.round()).abs().max() <= 1
    flat = torch.full((2, 3, 32, 32), 200, dtype=torch.uint8)
    assert torch.equal(
        random_resized_crop(flat, 48, torch.Generator().manual_seed(3)),
        torch.full((2, 3, 48, 48), 200, dtype=torch.uint8),
    )


def test_input_size_transform_roundtrips() -> None:
    spec = InputSize(64)
    x = _batch()
    assert spec(x, torch.Generator().manual_seed(0), train=True).shape == (2, 3, 64, 64)
    assert torch.equal(spec(x), resize_center_crop(x, 64))
    assert InputSize.from_dict(spec.to_dict()) == spec
    assert spec.mean == (0.485, 0.456, 0.406)
    with pytest.raises(ConfigError, match="image_size"):
        InputSize(4)
