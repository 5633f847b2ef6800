"""DenseNet-BC 121/201 for CIFAR (kuangliu/pytorch-cifar layout, growth rate 32).

CIFAR stem: one 3x3 conv to 2*growth channels, no max-pool. Four dense blocks of pre-activation
bottlenecks (BN-ReLU-1x1 to 4k, BN-ReLU-3x3 to k, concatenated), transitions halve channels and
resolution. ``width`` scales the growth rate (k = round(32 * width), at least 1), which is how
DenseNets are made thinner.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from edgeslim.models._common import check_num_classes, check_width, init_conv_bn, scale_channels
from edgeslim.models.zoo import register_model

__all__ = ["DenseLayer", "DenseNet", "Transition"]


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k); output is ``cat([new, x])`` (k more channels)."""

    def __init__(self, in_planes: int, growth_rate: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, 4 * growth_rate, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.relu1(self.bn1(x)))
        out = self.conv2(self.relu2(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1 (compression) then 2x2 average pool."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv(self.relu(self.bn(x))))


class DenseNet(nn.Module):
    """``conv1``, ``dense1..4`` with ``trans1..3`` between, final BN-ReLU, pool, ``linear``."""

    def __init__(
        self,
        block_config: tuple[int, int, int, int],
        num_classes: int = 10,
        width: float = 1.0,
        growth_rate: int = 32,
        reduction: float = 0.5,
    ) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        width = check_width(width)
        k = scale_channels(growth_rate, width)
        planes = 2 * k
        self.conv1 = nn.Conv2d(3, planes, 3, padding=1, bias=False)
        dense: list[nn.Sequential] = []
        trans: list[Transition] = []
        for i, n in enumerate(block_config):
            layers = []
            for _ in range(n):
                layers.append(DenseLayer(planes, k))
                planes += k
            dense.append(nn.Sequential(*layers))
            if i < len(block_config) - 1:
                out_planes = max(1, math.floor(planes * reduction))
                trans.append(Transition(planes, out_planes))
                planes = out_planes
        self.dense1, self.dense2, self.dense3, self.dense4 = dense
        self.trans1, self.trans2, self.trans3 = trans
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(planes, num_classes)
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.trans1(self.dense1(out))
        out = self.trans2(self.dense2(out))
        out = self.trans3(self.dense3(out))
        out = self.relu(self.bn(self.dense4(out)))
        return self.linear(self.flatten(self.avgpool(out)))


@register_model(
    "densenet121", family="densenet", description="DenseNet-BC-121 (6,12,24,16), growth 32, CIFAR stem"
)
def densenet121(num_classes: int = 10, width: float = 1.0) -> DenseNet:
    return DenseNet((6, 12, 24, 16), num_classes, width)


@register_model(
    "densenet201", family="densenet", description="DenseNet-BC-201 (6,12,48,32), growth 32, CIFAR stem"
)
def densenet201(num_classes: int = 10, width: float = 1.0) -> DenseNet:
    return DenseNet((6, 12, 48, 32), num_classes, width)


@register_model(
    "densenet121_narrow",
    family="densenet",
    description="DenseNet-BC-121 depth (6,12,24,16) at 1/8 width (growth 4): the study's student on a CPU budget",
)
def densenet121_narrow(num_classes: int = 10, width: float = 0.125) -> DenseNet:
    return DenseNet((6, 12, 24, 16), num_classes, width)


@register_model(
    "densenet201_narrow",
    family="densenet",
    description="DenseNet-BC-201 depth (6,12,48,32) at 1/8 width (growth 4): the study's teacher on a CPU budget",
)
def densenet201_narrow(num_classes: int = 10, width: float = 0.125) -> DenseNet:
    return DenseNet((6, 12, 48, 32), num_classes, width)


@register_model(
    "densenet121_tiny",
    family="densenet",
    description="test variant: DenseNet-BC blocks (2,2,2,2), growth 4 (width 0.125)",
    is_tiny=True,
)
def densenet121_tiny(num_classes: int = 10, width: float = 0.125) -> DenseNet:
    return DenseNet((2, 2, 2, 2), num_classes, width)
