"""Batched crop/flip/normalize against per-image reference computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgeslim.data import DEFAULT_MEAN, DEFAULT_STD, Augment, crop_at, normalize, random_crop, random_hflip
from edgeslim.errors import ConfigError


def _batch(b: int = 6, h: int = 5, w: int = 7) -> torch.Tensor:
    return torch.randint(1, 256, (b, 3, h, w), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_crop_with_zero_padding_is_identity() -> None:
    x = _batch()
    assert torch.equal(random_crop(x, 0, _gen()), x)
    assert torch.equal(crop_at(x, 0, torch.zeros(6), torch.zeros(6)), x)


def test_crop_matches_manual_per_image_crop() -> None:
    x = _batch(b=4, h=5, w=7)
    top, left = torch.tensor([0, 2, 4, 1]), torch.tensor([4, 0, 3, 2])
    out = crop_at(x, 2, top, left)
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(4):
        padded = F.pad(x[i], (2, 2, 2, 2))
        assert torch.equal(out[i], padded[:, top[i] : top[i] + 5, left[i] : left[i] + 7])
    # Offset (0, 4) with padding 2: top two rows are zero padding, then image rows 0..2 shifted left by 2.
    assert out[0, :, :2].eq(0).all() and torch.equal(out[0, :, 2:, :5], x[0, :, :3, 2:])
    assert out[0, :, :, 5:].eq(0).all()


def test_random_crop_draws_top_then_left() -> None:
    x = _batch(b=32)
    out = random_crop(x, 3, _gen(5))
    g = _gen(5)
    top = torch.randint(0, 7, (32,), generator=g)
    left = torch.randint(0, 7, (32,), generator=g)
    assert torch.equal(out, crop_at(x, 3, top, left))
    assert torch.equal(out, random_crop(x, 3, _gen(5)))  # reproducible
    assert not torch.equal(out, random_crop(x, 3, _gen(6)))


def test_hflip() -> None:
    x = _batch(b=64)
    once = random_hflip(x, _gen(3))
    assert torch.equal(random_hflip(once, _gen(3)), x)  # same draws: flipping twice is identity
    flipped = (once != x).flatten(1).any(1)
    assert 0 < int(flipped.sum()) < 64
    assert torch.equal(once[flipped], x[flipped].flip(3))
    assert torch.equal(random_hflip(x, _gen(), p=1.0), x.flip(3))
    assert torch.equal(random_hflip(x, _gen(), p=0.0), x)


def test_normalize_exact_values() -> None:
    x = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 1, 1, 3).expand(1, 3, 1, 3).contiguous()
    out = normalize(x)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 1, 3)
    for c in range(3):
        m, s = DEFAULT_MEAN[c], DEFAULT_STD[c]
        expected = torch.tensor([(0 - m) / s, (1 - m) / s, (0.2 - m) / s])
        torch.testing.assert_close(out[0, c, 0], expected, rtol=0, atol=1e-6)
    assert out[0, 0, 0, 0].item() == pytest.approx(-2.1179039301310043, abs=1e-6)
    custom = normalize(torch.full((2, 3, 2, 2), 255, dtype=torch.uint8), (0.5, 0.5, 0.5), (0.5, 0.25, 1.0))
    assert custom[:, 0].eq(1.0).all() and custom[:, 1].eq(2.0).all() and custom[:, 2].eq(0.5).all()


def test_normalize_dtype_and_channels_last() -> None:
    x = _batch()
    ref = normalize(x)
    cl = normalize(x, channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(cl, ref)
    assert normalize(x, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="uint8"):
        normalize(x.float())
    with pytest.raises(ValueError, match="3 mean"):
        normalize(x, (0.5,), (0.5,))


def test_augment_object() -> None:
    x = _batch(b=16)
    assert Augment.none().is_identity and torch.equal(Augment.none()(x, _gen()), x)
    aug = Augment()
    assert (aug.crop_padding, aug.hflip) == (4, True)
    out = aug(x, _gen(9))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out, Augment()(x, _gen(9)))
    g = _gen(9)
    assert torch.equal(out, random_hflip(random_crop(x, 4, g), g))
    with pytest.raises(ConfigError, match="crop_padding"):
        Augment(crop_padding=-1)
    with pytest.raises(Exception, match="cannot assign"):
        aug.hflip = False  # type: ignore[misc]


def test_crop_with_flip_and_edge_cases() -> None:
    x = _batch(b=3, h=4, w=5)
    top, left = torch.tensor([0, 1, 2]), torch.tensor([2, 0, 1])
    flip = torch.tensor([True, False, True])
    out = crop_at(x, 1, top, left, flip)
    for i in range(3):
        window = F.pad(x[i], (1, 1, 1, 1))[:, top[i] : top[i] + 4, left[i] : left[i] + 5]
        assert torch.equal(out[i], window.flip(2) if flip[i] else window)
    empty = x[:0]
    assert random_crop(empty, 4, _gen()).shape == (0, 3, 4, 5)
    assert random_hflip(empty, _gen()).shape == (0, 3, 4, 5)
    flip_only = Augment(crop_padding=0, hflip=True)
    assert torch.equal(flip_only(x, _gen(2)), random_hflip(x, _gen(2)))
    with pytest.raises(ValueError, match="batch"):
        random_crop(x[0], 2, _gen())
    with pytest.raises(ValueError, match=r"left must be 3 offsets in \[0, 2\]"):
        crop_at(x, 1, top, torch.tensor([0, 3, 1]))
