"""EfficientNet-B0 for CIFAR (torchvision block structure, CIFAR strides).

MBConv blocks (1x1 expand, kxk depthwise, squeeze-excitation, 1x1 projection; SiLU) with the B0
stage table, a 1x1 head conv to 4x the last stage (1280), global pool, dropout and ``classifier``.
For 32x32 inputs the stem and the second stage use stride 1 (total stride 8, as in
kuangliu/pytorch-cifar). Stochastic depth is not implemented (it is off for B0 inference anyway).
``width`` scales channels, rounded to multiples of 8 as torchvision does.
"""

from __future__ import annotations

from torch import Tensor, nn

from edgeslim.models._common import check_num_classes, check_rate, check_width, make_divisible
from edgeslim.models.zoo import register_model

__all__ = ["EfficientNet", "MBConv", "SqueezeExcite"]

# (expand ratio, kernel, stride, out channels, repeats); strides 2 -> 1 in the first two rows for CIFAR
B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 1, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


class ConvBNAct(nn.Sequential):
    """conv-BN[-SiLU]; ``groups=channels`` makes it depthwise."""

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_planes, out_planes, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_planes),
        ]
        if act:
            layers.append(nn.SiLU())
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel gate: pool, 1x1 reduce, SiLU, 1x1 expand, sigmoid, multiply."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = nn.SiLU()
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.gate(self.expand(self.act(self.reduce(self.avgpool(x)))))
        return x * scale


class MBConv(nn.Module):
    """Inverted residual with SE; residual when stride 1 and channels match."""

    def __init__(
        self, in_planes: int, out_planes: int, kernel_size: int, stride: int, expand_ratio: int
    ) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_planes == out_planes
        hidden = make_divisible(in_planes * expand_ratio)
        layers: list[nn.Module] = []
        if hidden != in_planes:
            layers.append(ConvBNAct(in_planes, hidden, 1))
        layers += [
            ConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden),
            SqueezeExcite(hidden, max(1, in_planes // 4)),
            ConvBNAct(hidden, out_planes, 1, act=False),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.block(x)
        return self.block(x)


class EfficientNet(nn.Module):
    """``features`` (stem, MBConv stages, head conv), global pool, ``dropout``, ``classifier``."""

    def __init__(
        self,
        num_classes: int = 10,
        width: float = 1.0,
        drop_rate: float = 0.2,
        stages: tuple[tuple[int, int, int, int, int], ...] = B0_STAGES,
    ) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        width = check_width(width)
        drop_rate = check_rate(drop_rate, "drop_rate")
        in_planes = make_divisible(32 * width)
        layers: list[nn.Module] = [ConvBNAct(3, in_planes, 3, stride=1)]
        for expand, kernel, stride, channels, repeats in stages:
            out_planes = make_divisible(channels * width)
            stage = []
            for i in range(repeats):
                stage.append(MBConv(in_planes, out_planes, kernel, stride if i == 0 else 1, expand))
                in_planes = out_planes
            layers.append(nn.Sequential(*stage))
        head = 4 * in_planes
        layers.append(ConvBNAct(in_planes, head, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(head, num_classes)
        for module in self.modules():  # torchvision's init
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / module.out_features**0.5
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.flatten(self.avgpool(self.features(x)))
        return self.classifier(self.dropout(out))


@register_model(
    "efficientnet_b0",
    family="efficientnet",
    description="EfficientNet-B0, CIFAR strides (stem s1, stage 2 s1), SiLU + SE, 1280 head, dropout 0.2",
)
def efficientnet_b0(num_classes: int = 10, width: float = 1.0, drop_rate: float = 0.2) -> EfficientNet:
    return EfficientNet(num_classes, width, drop_rate)


# one block per stage except a repeated stage 2, so the residual path is exercised too
_TINY_STAGES: tuple[tuple[int, int, int, int, int], ...] = tuple(
    (e, k, s, c, 2 if i == 1 else 1) for i, (e, k, s, c, _) in enumerate(B0_STAGES)
)


@register_model(
    "efficientnet_b0_tiny",
    family="efficientnet",
    description="test variant: the seven B0 stages with one block each (two in stage 2), width 0.125",
    is_tiny=True,
)
def efficientnet_b0_tiny(num_classes: int = 10, width: float = 0.125, drop_rate: float = 0.2) -> EfficientNet:
    return EfficientNet(num_classes, width, drop_rate, stages=_TINY_STAGES)
