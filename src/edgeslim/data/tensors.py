"""A whole dataset as two in-memory tensors.

CIFAR-sized datasets fit in memory as uint8 (50k images = 150 MB), so batches are plain tensor
indexing instead of per-image Python objects; that is what makes training on 2 cores fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from edgeslim.data.resize import InputSize

Indices = Sequence[int] | npt.NDArray[np.integer] | torch.Tensor


@dataclasses.dataclass(frozen=True, eq=False)
class ImageTensors:
    """Images (uint8 ``[N, 3, H, W]``, contiguous) with int64 labels ``[N]`` and class names.

    Compared by identity (``eq=False``): element-wise tensor equality has no single truth value.
    ``input_size`` (optional) is how batches reach the model's input size (e.g. 224 px for an
    ImageNet-pretrained model): the images stay stored at their own size and :class:`BatchLoader`
    resizes each batch; :attr:`input_shape` is the (C, H, W) the model sees.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str
    input_size: InputSize | None = None

    def __post_init__(self) -> None:
        # Bugs in a loader should fail here, at the boundary, not deep inside a training step.
        images, labels = self.images, self.labels
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N,3,H,W], got {images.dtype} {tuple(images.shape)}")
        if labels.dtype != torch.int64 or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"labels must be int64 [N] with N={images.shape[0]}, got {labels.dtype} {tuple(labels.shape)}"
            )
        if not images.is_contiguous():
            object.__setattr__(self, "images", images.contiguous())
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(self.classes)):
            raise ValueError(f"labels must lie in [0, {len(self.classes)}), got {int(labels.max())}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.images.shape[1:])
        if self.input_size is not None:
            shape += f" -> {self.input_size.image_size}px"
        return f"ImageTensors({len(self)} images {shape}, {self.num_classes} classes, source={self.source!r})"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) shared by every image."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the batches a loader yields: ``input_size``'s square, else the stored size."""
        c, h, w = (int(s) for s in self.images.shape[1:])
        if self.input_size is not None:
            return c, self.input_size.image_size, self.input_size.image_size
        return c, h, w

    def with_input_size(self, input_size: InputSize | None) -> ImageTensors:
        """The same images (shared storage) with another ``input_size``."""
        return dataclasses.replace(self, input_size=input_size)

    def class_counts(self) -> list[int]:
        """Images per class, in class order (zeros included), e.g. to check a stratified split."""
        return [int(c) for c in torch.bincount(self.labels, minlength=self.num_classes)]

    def subset(self, indices: Indices) -> ImageTensors:
        """A new dataset holding ``indices`` (in the given order), with copied, contiguous storage."""
        if isinstance(indices, torch.Tensor):
            index = indices.to(torch.int64).reshape(-1)
        else:
            index = torch.from_numpy(np.asarray(indices, dtype=np.int64).reshape(-1))
        return ImageTensors(
            images=self.images.index_select(0, index).contiguous(),
            labels=self.labels.index_select(0, index),
            classes=list(self.classes),
            source=self.source,
            input_size=self.input_size,
        )
