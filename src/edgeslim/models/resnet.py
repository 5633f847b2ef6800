"""ResNet-18/50 with a CIFAR stem (3x3 conv, stride 1, no max-pool), as in kuangliu/pytorch-cifar.

Stages have 64/128/256/512 planes (times ``width``); downsampling shortcuts are 1x1 conv + BN
(option B). Key names follow kuangliu: ``conv1``, ``bn1``, ``layer{1..4}``, ``shortcut``, ``linear``.
"""

from __future__ import annotations

from torch import Tensor, nn

from edgeslim.models._common import check_num_classes, check_width, init_conv_bn, scale_channels
from edgeslim.models.zoo import register_model

__all__ = ["BasicBlock", "Bottleneck", "ResNet"]


def _projection(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _projection(in_planes, planes, stride)
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4 (ResNet-50+)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _projection(in_planes, out_planes, stride)
        self.relu3 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + self.shortcut(x))


class ResNet(nn.Module):
    """ImageNet-style ResNet body with a CIFAR stem; ``layers`` blocks per stage."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 10,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        width = check_width(width)
        planes = [scale_channels(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, planes[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU()
        in_planes = planes[0]
        stages = []
        for i, (p, n) in enumerate(zip(planes, layers, strict=True)):
            blocks: list[nn.Module] = []
            for j in range(n):
                blocks.append(block(in_planes, p, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = p * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(in_planes, num_classes)
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(self.flatten(self.avgpool(out)))


@register_model(
    "resnet18",
    family="resnet",
    description="ResNet-18, CIFAR stem (3x3 s1, no max-pool), BasicBlocks [2,2,2,2]",
)
def resnet18(num_classes: int = 10, width: float = 1.0) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, width)


@register_model(
    "resnet50",
    family="resnet",
    description="ResNet-50, CIFAR stem (3x3 s1, no max-pool), Bottlenecks [3,4,6,3]",
)
def resnet50(num_classes: int = 10, width: float = 1.0) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, width)


@register_model(
    "resnet18_tiny",
    family="resnet",
    description="test variant: ResNet-18 blocks, one per stage, width 1/16 (4/8/16/32 planes)",
    is_tiny=True,
)
def resnet18_tiny(num_classes: int = 10, width: float = 0.0625) -> ResNet:
    return ResNet(BasicBlock, (1, 1, 1, 1), num_classes, width)


@register_model(
    "resnet50_tiny",
    family="resnet",
    description="test variant: ResNet-50 Bottlenecks [2,1,1,1], width 1/16 (4/8/16/32 planes, x4 out)",
    is_tiny=True,
)
def resnet50_tiny(num_classes: int = 10, width: float = 0.0625) -> ResNet:
    return ResNet(Bottleneck, (2, 1, 1, 1), num_classes, width)
