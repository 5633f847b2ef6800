"""GoogLeNet (Inception v1) for CIFAR, as in kuangliu/pytorch-cifar.

A 3x3 conv stem to 192 channels at 32x32 replaces the ImageNet stem; nine Inception modules
(3a..5b) with BN after every conv, two stride-2 max-pools, global pool and ``linear``. No auxiliary
heads. The 5x5 branch is two 3x3 convs, as in that port. ``width`` scales every channel count.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgeslim.models._common import check_num_classes, check_width, init_conv_bn, scale_channels
from edgeslim.models.zoo import register_model

__all__ = ["GoogLeNet", "Inception"]

# n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_planes; in_planes is the previous module's output
_INCEPTION_CONFIGS: dict[str, tuple[int, int, int, int, int, int]] = {
    "a3": (64, 96, 128, 16, 32, 32),
    "b3": (128, 128, 192, 32, 96, 64),
    "a4": (192, 96, 208, 16, 48, 64),
    "b4": (160, 112, 224, 24, 64, 64),
    "c4": (128, 128, 256, 24, 64, 64),
    "d4": (112, 144, 288, 32, 64, 64),
    "e4": (256, 160, 320, 32, 128, 128),
    "a5": (256, 160, 320, 32, 128, 128),
    "b5": (384, 192, 384, 48, 128, 128),
}


def _conv_bn_relu(in_planes: int, out_planes: int, kernel_size: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_planes, out_planes, kernel_size, padding=kernel_size // 2),
        nn.BatchNorm2d(out_planes),
        nn.ReLU(),
    ]


class Inception(nn.Module):
    """Four parallel branches (1x1; 1x1-3x3; 1x1-3x3-3x3; maxpool-1x1) concatenated."""

    def __init__(
        self, in_planes: int, n1x1: int, n3x3red: int, n3x3: int, n5x5red: int, n5x5: int, pool_planes: int
    ) -> None:
        super().__init__()
        self.b1 = nn.Sequential(*_conv_bn_relu(in_planes, n1x1, 1))
        self.b2 = nn.Sequential(*_conv_bn_relu(in_planes, n3x3red, 1), *_conv_bn_relu(n3x3red, n3x3, 3))
        self.b3 = nn.Sequential(
            *_conv_bn_relu(in_planes, n5x5red, 1),
            *_conv_bn_relu(n5x5red, n5x5, 3),
            *_conv_bn_relu(n5x5, n5x5, 3),
        )
        self.b4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), *_conv_bn_relu(in_planes, pool_planes, 1)
        )
        self.out_planes = n1x1 + n3x3 + n5x5 + pool_planes

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class GoogLeNet(nn.Module):
    """``pre_layers``, inception ``a3..b5``, ``maxpool`` after b3 and e4, global pool, ``linear``."""

    def __init__(self, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        width = check_width(width)
        stem = scale_channels(192, width)
        self.pre_layers = nn.Sequential(*_conv_bn_relu(3, stem, 3))
        planes = stem
        blocks: dict[str, Inception] = {}
        for name, config in _INCEPTION_CONFIGS.items():
            block = Inception(planes, *(scale_channels(c, width) for c in config))
            blocks[name] = block
            planes = block.out_planes
        self.a3, self.b3 = blocks["a3"], blocks["b3"]
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.a4, self.b4, self.c4, self.d4, self.e4 = (blocks[n] for n in ("a4", "b4", "c4", "d4", "e4"))
        self.maxpool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.a5, self.b5 = blocks["a5"], blocks["b5"]
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(planes, num_classes)
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        out = self.b3(self.a3(self.pre_layers(x)))
        out = self.maxpool(out)
        out = self.e4(self.d4(self.c4(self.b4(self.a4(out)))))
        out = self.maxpool2(out)
        out = self.b5(self.a5(out))
        return self.linear(self.flatten(self.avgpool(out)))


@register_model(
    "googlenet",
    family="googlenet",
    description="GoogLeNet / Inception v1, CIFAR port (kuangliu), BN, no aux heads",
)
def googlenet(num_classes: int = 10, width: float = 1.0) -> GoogLeNet:
    return GoogLeNet(num_classes, width)


@register_model(
    "googlenet_tiny",
    family="googlenet",
    description="test variant: all nine Inception modules at width 1/16",
    is_tiny=True,
)
def googlenet_tiny(num_classes: int = 10, width: float = 0.0625) -> GoogLeNet:
    return GoogLeNet(num_classes, width)
