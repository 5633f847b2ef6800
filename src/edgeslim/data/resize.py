"""Input size as batched tensor ops: resize, center crop, random-resized crop (uint8 in, uint8 out).

ImageNet-pretrained models want 224-px inputs; CIFAR pickles and image folders are 32 px (or any
size). Like :mod:`edgeslim.data.augment`, these work on whole ``[B, C, H, W]`` uint8 batches with a
few tensor ops, and draw randomness from an explicit ``torch.Generator``:

* :func:`resize` - shorter side to ``size`` (bilinear, antialiased when shrinking);
* :func:`center_crop` - the central ``size x size`` window;
* :func:`resize_center_crop` - the evaluation transform: resize to ``size / crop_fraction``, crop
  ``size`` (``crop_fraction=0.875`` is torchvision's 256 -> 224; 1.0 resizes straight to ``size``);
* :func:`random_resized_crop` - the training transform (torchvision's RandomResizedCrop: area
  ``scale``, aspect ``ratio``, optional horizontal flip) as one batched ``grid_sample``.

:class:`InputSize` bundles them (``InputSize(224)(images, generator, train=True)``) and is what a
loader applies after augmentation and before normalization; ``to_dict``/``from_dict`` store it in a
checkpoint's meta so evaluation, export and benchmarking reuse the size the model was trained at.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F

from edgeslim.errors import ConfigError
from edgeslim.yaml_schema import MAX_IMAGE_SIZE

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "InputSize",
    "center_crop",
    "random_resized_crop",
    "resize",
    "resize_center_crop",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _check(images: torch.Tensor, name: str, size: int) -> None:
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(
            f"{name}: expected a uint8 batch [B,C,H,W], got {images.dtype} {tuple(images.shape)}"
        )
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{name}: size must be a positive integer, got {size!r}")


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round_().clamp_(0, 255).to(torch.uint8)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Scale each image so its shorter side is ``size`` (aspect kept); bilinear, antialiased."""
    _check(images, "resize", size)
    h, w = images.shape[-2:]
    if min(h, w) == size:
        return images
    if h <= w:
        new_h, new_w = size, max(1, round(w * size / h))
    else:
        new_h, new_w = max(1, round(h * size / w)), size
    if images.shape[0] == 0:
        return images.new_zeros((0, images.shape[1], new_h, new_w))
    out = F.interpolate(
        images.float(), size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=size < min(h, w)
    )
    return _to_uint8(out)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` window (zero-padded where the image is smaller)."""
    _check(images, "center_crop", size)
    h, w = images.shape[-2:]
    if h < size or w < size:
        pad_h, pad_w = max(0, size - h), max(0, size - w)
        images = F.pad(images, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        h, w = images.shape[-2:]
    top, left = round((h - size) / 2), round((w - size) / 2)
    return images[..., top : top + size, left : left + size].contiguous()


def resize_center_crop(images: torch.Tensor, size: int, crop_fraction: float = 1.0) -> torch.Tensor:
    """Evaluation transform: resize the shorter side to ``size / crop_fraction``, crop ``size``."""
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"resize_center_crop: crop_fraction must be in (0, 1], got {crop_fraction!r}")
    return center_crop(resize(images, math.floor(size / crop_fraction)), size)


def random_resized_crop(
    images: torch.Tensor,
    size: int,
    generator: torch.Generator | None = None,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: bool = False,
) -> torch.Tensor:
    """A random crop of each image (area share in ``scale``, aspect in ``ratio``) resized to ``size``.

    One ``affine_grid`` + ``grid_sample`` (bilinear) for the whole batch. Boxes are drawn without
    torchvision's rejection loop: the area and log-aspect are drawn, and the box is shrunk to fit the
    image when it does not, so every image gets one draw of ``rand((B, 4[+1]))`` from ``generator``.
    """
    _check(images, "random_resized_crop", size)
    if not (0 < scale[0] <= scale[1] <= 1.0) or not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"random_resized_crop: bad scale {scale} or ratio {ratio}")
    b, _, h, w = images.shape
    if b == 0:
        return images.new_zeros((0, images.shape[1], size, size))
    u = torch.rand((b, 5 if hflip else 4), generator=generator, dtype=torch.float64)
    area = (scale[0] + (scale[1] - scale[0]) * u[:, 0]) * h * w
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    aspect = torch.exp(log_r)
    cw = torch.sqrt(area * aspect).clamp(1, w)
    ch = torch.sqrt(area / aspect).clamp(1, h)
    cx = (cw / 2 + (w - cw) * u[:, 2]) / w * 2 - 1  # crop centre in [-1, 1] coordinates
    cy = (ch / 2 + (h - ch) * u[:, 3]) / h * 2 - 1
    sx, sy = cw / w, ch / h
    if hflip:
        sx = torch.where(u[:, 4] < 0.5, -sx, sx)
    theta = torch.zeros((b, 2, 3), dtype=torch.float32)
    theta[:, 0, 0], theta[:, 0, 2] = sx.float(), cx.float()
    theta[:, 1, 1], theta[:, 1, 2] = sy.float(), cy.float()
    grid = F.affine_grid(theta, [b, images.shape[1], size, size], align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return _to_uint8(out)


@dataclasses.dataclass(frozen=True)
class InputSize:
    """How images reach the model's input size: ``random_resized_crop`` when training (if
    ``random_crop``), ``resize_center_crop`` otherwise. ``imagenet_norm`` says the model expects
    ImageNet mean/std (the default normalization of every edgeslim loader already is ImageNet's)."""

    image_size: int
    crop_fraction: float = 1.0
    random_crop: bool = True
    scale: tuple[float, float] = (0.35, 1.0)
    imagenet_norm: bool = True

    def __post_init__(self) -> None:
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= MAX_IMAGE_SIZE:
            # 100,000 px would ask the allocator for terabytes; every front-end checks the same bound
            raise ConfigError(
                f"InputSize.image_size must be an integer from 8 to {MAX_IMAGE_SIZE}, got {size!r}",
                field="InputSize.image_size",
            )
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ConfigError(f"crop_fraction must be in (0, 1], got {self.crop_fraction!r}")

    @property
    def mean(self) -> tuple[float, float, float]:
        return IMAGENET_MEAN

    @property
    def std(self) -> tuple[float, float, float]:
        return IMAGENET_STD

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None, *, train: bool = False
    ) -> torch.Tensor:
        if train and self.random_crop:
            return random_resized_crop(images, self.image_size, generator, scale=self.scale)
        return resize_center_crop(images, self.image_size, self.crop_fraction)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["scale"] = list(self.scale)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSize:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "scale" in kwargs:
            kwargs["scale"] = tuple(kwargs["scale"])
        return cls(**kwargs)
