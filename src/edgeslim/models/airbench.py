"""A fast-training CIFAR-10 net in the spirit of Keller Jordan's airbench94.

A 2x2 "whitening" conv (3 -> 24 channels, no padding, with bias) and GELU, three conv groups
(conv3x3 - maxpool2 - BN - GELU - conv3x3 - BN - GELU) of widths 64/256/256, a 3x3 max-pool to 1x1
and a bias-free ``head``: ~1.97M parameters. Differences from airbench94, so it trains with the
generic trainer: standard BatchNorm (trainable weight, default momentum), no 1/9 logit scaling, no
frozen whitening. :meth:`AirbenchNet.init_whitening` sets the first conv from training-image patch
statistics (airbench's data-dependent init) when a caller wants it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgeslim.errors import ModelError
from edgeslim.models._common import check_num_classes, check_width, scale_channels
from edgeslim.models.zoo import register_model

__all__ = ["AirbenchNet", "ConvGroup"]

WHITEN_KERNEL = 2
WHITEN_WIDTH = 2 * 3 * WHITEN_KERNEL**2  # +/- each eigenvector of the 3x2x2 patch covariance


def _conv3x3(in_planes: int, out_planes: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_planes, out_planes, 3, padding=1, bias=False)
    with torch.no_grad():  # airbench: partial identity (dirac) init speeds up early training
        nn.init.dirac_(conv.weight[: min(in_planes, out_planes)])
    return conv


class ConvGroup(nn.Module):
    """conv - maxpool - BN - GELU - conv - BN - GELU (pooling before BN, as in airbench)."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_planes, out_planes)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = nn.BatchNorm2d(out_planes)
        self.act1 = nn.GELU()
        self.conv2 = _conv3x3(out_planes, out_planes)
        self.norm2 = nn.BatchNorm2d(out_planes)
        self.act2 = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.norm1(self.pool(self.conv1(x))))
        return self.act2(self.norm2(self.conv2(out)))


class AirbenchNet(nn.Module):
    """``whiten``, ``act``, ``group1..3``, ``pool``, ``head``."""

    def __init__(self, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        width = check_width(width)
        w1, w2, w3 = (scale_channels(c, width) for c in (64, 256, 256))
        self.whiten = nn.Conv2d(3, WHITEN_WIDTH, WHITEN_KERNEL, padding=0, bias=True)
        self.act = nn.GELU()
        self.group1 = ConvGroup(WHITEN_WIDTH, w1)
        self.group2 = ConvGroup(w1, w2)
        self.group3 = ConvGroup(w2, w3)
        self.pool = nn.MaxPool2d(3)
        self.flatten = nn.Flatten(1)
        self.head = nn.Linear(w3, num_classes, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.whiten(x))
        out = self.group3(self.group2(self.group1(out)))
        return self.head(self.flatten(self.pool(out)))

    @torch.no_grad()
    def init_whitening(self, images: Tensor, eps: float = 5e-4) -> None:
        """Set ``whiten`` to +/- the scaled eigenvectors of the 2x2 patch covariance of ``images``.

        ``images`` is a normalized float batch [N, 3, H, W] (a few thousand training images suffice).
        """
        if images.ndim != 4 or images.shape[1] != 3 or min(images.shape[2:]) < WHITEN_KERNEL:
            raise ModelError(f"init_whitening needs images shaped [N, 3, H, W], got {tuple(images.shape)}")
        k = WHITEN_KERNEL
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1).transpose(1, 3).reshape(-1, 3 * k * k)
        covariance = patches.T @ patches / patches.shape[0]
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)
        scaled = eigenvectors / torch.sqrt(eigenvalues.clamp_min(0) + eps)[:, None]
        filters = scaled.reshape(-1, 3, k, k)  # each patch row above is ordered (c, kh, kw), like the conv
        weight = self.whiten.weight
        weight.copy_(torch.cat([filters, -filters]).to(weight))
        if self.whiten.bias is not None:
            self.whiten.bias.zero_()


@register_model(
    "airbench",
    family="airbench",
    description="airbench94-style net: 2x2 whitening conv, 3 conv groups 64/256/256, BN+GELU (~2M)",
)
def airbench(num_classes: int = 10, width: float = 1.0) -> AirbenchNet:
    return AirbenchNet(num_classes, width)


@register_model(
    "airbench_tiny",
    family="airbench",
    description="test variant: airbench at width 1/8 (8/32/32)",
    is_tiny=True,
)
def airbench_tiny(num_classes: int = 10, width: float = 0.125) -> AirbenchNet:
    return AirbenchNet(num_classes, width)
