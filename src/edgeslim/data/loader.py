"""Mini-batches straight from in-memory tensors: index, augment, normalize, all batched.

Replaces ``torch.utils.data.DataLoader`` for in-memory datasets: no worker processes, no
per-image Python, and every epoch is reproducible from ``(seed, epoch)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from edgeslim.data.augment import DEFAULT_MEAN, DEFAULT_STD, Augment, normalize
from edgeslim.data.tensors import ImageTensors
from edgeslim.errors import ConfigError


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator for one epoch; (seed, epoch) pairs are mixed so (0, 1) and (1, 0) differ."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch & 0xFFFFFFFF]).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


class BatchLoader:
    """Iterate ``(x float [B,3,H,W] normalized, y int64 [B])`` over an :class:`ImageTensors`.

    When the data has an ``input_size`` (:class:`~edgeslim.data.resize.InputSize`), each batch is
    resized after augmentation: a random-resized crop when augmenting (training), resize + center
    crop otherwise. The default mean/std are ImageNet's, what ImageNet-pretrained models expect.

    Each ``iter()`` is one epoch; it uses the epoch set by :meth:`set_epoch`, else the one after the
    previous ``iter()`` (starting at 0). Shuffling and augmentation depend only on (seed, epoch).
    No background prefetch: a batch of 256 CIFAR images takes a few ms to build, under 1% of a
    training step on 2 cores, so a thread would only compete with the model for the cores.
    """

    def __init__(
        self,
        data: ImageTensors,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: Augment | None = None,
        mean: Sequence[float] = DEFAULT_MEAN,
        std: Sequence[float] = DEFAULT_STD,
        drop_last: bool = False,
        seed: int = 0,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if len(mean) != 3 or len(std) != 3:
            raise ConfigError(f"mean and std need 3 values (RGB), got {tuple(mean)} and {tuple(std)}")
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment if augment is not None and not augment.is_identity else None
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.drop_last = drop_last
        self.seed = seed
        self.channels_last = channels_last
        self.dtype = dtype
        self._next_epoch = 0
        self.epoch: int | None = None  # the epoch of the latest iter(), None before the first

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_images(self) -> int:
        """Images in the dataset (an epoch yields ``len(self) * batch_size`` of them with drop_last)."""
        return len(self.data)

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` replay ``epoch`` exactly (e.g. when resuming training)."""
        self._next_epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._next_epoch
        self._next_epoch = epoch + 1
        self.epoch = epoch
        return self._batches(epoch)

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = epoch_generator(self.seed, epoch)
        n = len(self.data)
        order = torch.randperm(n, generator=gen) if self.shuffle else None
        images, labels = self.data.images, self.data.labels
        for b in range(len(self)):
            start, stop = b * self.batch_size, min(n, (b + 1) * self.batch_size)
            if order is None:
                x, y = images[start:stop], labels[start:stop]
            else:
                idx = order[start:stop]
                x, y = images.index_select(0, idx), labels.index_select(0, idx)
            if self.augment is not None:
                x = self.augment(x, gen)
            if self.data.input_size is not None:
                x = self.data.input_size(x, gen, train=self.augment is not None)
            yield (
                normalize(x, self.mean, self.std, dtype=self.dtype, channels_last=self.channels_last),
                y.clone() if order is None else y,
            )
