"""BatchLoader: full coverage per epoch, batch counts, determinism per (seed, epoch)."""

from __future__ import annotations

import pytest
import torch

from edgeslim.data import Augment, BatchLoader, ImageTensors, normalize
from edgeslim.errors import ConfigError


def _data(n: int = 23) -> ImageTensors:
    """Image i is filled with the value i, so a batch tells which images it holds."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    return ImageTensors(images, torch.arange(n) % 3, ["a", "b", "c"], "mem")


def _ids(x: torch.Tensor, data: ImageTensors) -> list[int]:
    """Recover image ids from normalized un-augmented batches (channel 0, pixel (0, 0))."""
    table = normalize(data.images[:, :, :1, :1])[:, 0, 0, 0]
    return [int(torch.argmin((table - v).abs())) for v in x[:, 0, 0, 0]]


def _epoch(loader: BatchLoader) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    xs, ys = zip(*list(loader), strict=True)
    return list(xs), list(ys)


def test_every_image_exactly_once_per_epoch() -> None:
    data = _data(23)
    loader = BatchLoader(data, 5, shuffle=True, seed=1)
    assert len(loader) == 5 and loader.num_images == 23 and loader.num_classes == 3
    for _ in range(3):
        xs, ys = _epoch(loader)
        assert [x.shape[0] for x in xs] == [5, 5, 5, 5, 3]
        ids = [i for x in xs for i in _ids(x, data)]
        assert sorted(ids) == list(range(23))
        assert torch.cat(ys).tolist() == [i % 3 for i in ids]  # labels travel with their images
        assert xs[0].dtype == torch.float32 and ys[0].dtype == torch.int64
        assert xs[0].shape[1:] == (3, 4, 4)


def test_no_shuffle_keeps_order_and_drop_last() -> None:
    data = _data(23)
    xs, _ = _epoch(BatchLoader(data, 5))
    assert [i for x in xs for i in _ids(x, data)] == list(range(23))
    dropped = BatchLoader(data, 5, drop_last=True, shuffle=True)
    assert len(dropped) == 4 and [x.shape[0] for x in _epoch(dropped)[0]] == [5, 5, 5, 5]
    assert len(BatchLoader(data, 100, drop_last=True)) == 0
    assert len(BatchLoader(data, 100)) == 1


def test_set_epoch_replays_and_iter_advances() -> None:
    data = _data(40)
    aug = Augment(crop_padding=1, hflip=True)
    loader = BatchLoader(data, 8, shuffle=True, augment=aug, seed=7)
    e0 = _epoch(loader)
    e1 = _epoch(loader)
    assert loader.epoch == 1
    assert not torch.equal(torch.cat(e0[1]), torch.cat(e1[1]))
    loader.set_epoch(0)
    again = _epoch(loader)
    assert all(torch.equal(a, b) for a, b in zip(e0[0], again[0], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(e0[1], again[1], strict=True))
    assert torch.equal(torch.cat(_epoch(loader)[0]), torch.cat(e1[0]))  # continues with epoch 1
    fresh = BatchLoader(data, 8, shuffle=True, augment=aug, seed=7)
    fresh.set_epoch(1)
    assert torch.equal(torch.cat(_epoch(fresh)[0]), torch.cat(e1[0]))
    other_seed = BatchLoader(data, 8, shuffle=True, augment=aug, seed=8)
    assert not torch.equal(torch.cat(_epoch(other_seed)[1]), torch.cat(e0[1]))


def test_augmented_batches_are_normalized_crops() -> None:
    data = _data(16)
    loader = BatchLoader(data, 16, augment=Augment(crop_padding=2, hflip=False))
    ((x, _),) = list(loader)
    zero = normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8))[0, :, 0, 0]
    # Zero padding shows up as normalized zeros somewhere; real pixels keep their image's value.
    assert any(torch.allclose(x[i, :, 0, 0], zero) for i in range(16))
    loader_cl = BatchLoader(data, 4, channels_last=True, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x_cl, _ = next(iter(loader_cl))
    assert x_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x_cl[1, 0, 0, 0], torch.tensor(1 / 255 * 2 - 1))


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        BatchLoader(_data(), 0)
    with pytest.raises(ConfigError, match="mean and std"):
        BatchLoader(_data(), 2, mean=(0.5,))
