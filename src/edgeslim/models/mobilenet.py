"""MobileNetV2 for CIFAR (torchvision block structure, CIFAR strides).

Changes from the ImageNet net, as in the common CIFAR ports: the stem conv has stride 1 and the
first stride-2 stage (24 channels) has stride 1, so a 32x32 input leaves the body at 4x4. Blocks
are torchvision's ``InvertedResidual`` (residual only when stride 1 and channels match; ReLU6).
Unlike torchvision, ``width`` also scales the 1280-channel last conv (the paper keeps it for
width < 1); that keeps the tiny variant tiny and makes "width" mean every layer. The head is a
single ``Linear`` named ``classifier`` (no dropout).

``mobilenet_v2_blocks`` takes every block explicitly (expand ratio, channels, depthwise kernel,
stride): the architectures ``edgeslim nas`` finds in a MobileNetV2 space (per-block expand ratio and
kernel, blocks per stage) are ordinary models of this class, so every other command loads them.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from edgeslim.errors import ModelError
from edgeslim.models._common import check_int, check_num_classes, check_width, make_divisible, scale_channels
from edgeslim.models.zoo import register_model

__all__ = ["CIFAR_BLOCKS", "ConvBNReLU", "InvertedResidual", "MobileNetV2", "mobilenet_init"]

# (expansion t, output channels c, repeats n, stride s); the second row has stride 1 for CIFAR.
CIFAR_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# The same net block by block: (expand t, output channels c, depthwise kernel k, stride s).
CIFAR_BLOCKS: tuple[tuple[int, int, int, int], ...] = tuple(
    (t, c, 3, s if i == 0 else 1) for t, c, n, s in CIFAR_SETTINGS for i in range(n)
)


class ConvBNReLU(nn.Sequential):
    """conv-BN-ReLU6; ``groups=in`` makes it depthwise."""

    def __init__(
        self, in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_planes),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Module):
    """1x1 expand (if t != 1) - kxk depthwise (3x3 by default) - 1x1 linear projection, residual
    when shapes allow."""

    def __init__(
        self, in_planes: int, out_planes: int, stride: int, expand_ratio: int, kernel_size: int = 3
    ) -> None:
        super().__init__()
        hidden = round(in_planes * expand_ratio)
        self.use_res_connect = stride == 1 and in_planes == out_planes
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(in_planes, hidden, kernel_size=1))
        layers += [
            ConvBNReLU(hidden, hidden, kernel_size=kernel_size, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_planes, 1, bias=False),
            nn.BatchNorm2d(out_planes),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


def mobilenet_init(model: nn.Module) -> None:
    """torchvision's MobileNetV2 init, in place (also what a MobileNetV2 supernet starts from)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


def _check_blocks(blocks: object) -> list[tuple[int, int, int, int]]:
    """Explicit blocks: a list of [expand, channels, kernel, stride], kernel odd, stride 1 or 2."""
    if isinstance(blocks, str) or not isinstance(blocks, Sequence) or not blocks:
        raise ModelError(f"blocks must be a list of [expand, channels, kernel, stride], got {blocks!r}")
    checked = []
    for block in blocks:
        if isinstance(block, str) or not isinstance(block, Sequence) or len(block) != 4:
            raise ModelError(f"each block must be [expand, channels, kernel, stride], got {block!r}")
        t, c, k, s = (
            check_int(v, name)
            for v, name in zip(block, ("expand", "channels", "kernel", "stride"), strict=True)
        )
        if k % 2 == 0 or s > 2:
            raise ModelError(f"a block's kernel must be odd and its stride 1 or 2, got {list(block)!r}")
        checked.append((t, c, k, s))
    return checked


class MobileNetV2(nn.Module):
    """``features`` (stem, inverted residuals, 1x1 last conv), global pool, ``classifier``.

    ``blocks`` (expand, channels, kernel, stride per block) replaces ``settings``; its channels,
    ``stem`` and ``last_channel`` are then scaled by ``width`` without rounding to multiples of 8
    (width 1: exactly as given), as an explicit architecture asks.
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: float = 1.0,
        settings: tuple[tuple[int, int, int, int], ...] = CIFAR_SETTINGS,
        last_channel: int = 1280,
        *,
        blocks: Sequence[Sequence[int]] | None = None,
        stem: int = 32,
    ) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        width = check_width(width)
        check_int(last_channel, "last_channel")
        check_int(stem, "stem")
        if blocks is None:
            in_planes = make_divisible(stem * width)
            self.last_channel = make_divisible(last_channel * width)
            specs = [
                (t, make_divisible(c * width), 3, s if i == 0 else 1)
                for t, c, n, s in settings
                for i in range(n)
            ]
        else:
            in_planes = scale_channels(stem, width)
            self.last_channel = scale_channels(last_channel, width)
            specs = [(t, scale_channels(c, width), k, s) for t, c, k, s in _check_blocks(blocks)]
        layers: list[nn.Module] = [ConvBNReLU(3, in_planes, stride=1)]
        for t, out_planes, k, s in specs:
            layers.append(InvertedResidual(in_planes, out_planes, s, t, kernel_size=k))
            in_planes = out_planes
        layers.append(ConvBNReLU(in_planes, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(self.last_channel, num_classes)
        mobilenet_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


@register_model(
    "mobilenet_v2",
    family="mobilenet_v2",
    description="MobileNetV2, CIFAR strides (stem s1, 24-ch stage s1), torchvision blocks, Linear head",
)
def mobilenet_v2(num_classes: int = 10, width: float = 1.0) -> MobileNetV2:
    return MobileNetV2(num_classes, width)


# Fewer repeats but every block kind: t=1 and t=6, stride 1 and 2, with and without residual.
_TINY_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 2, 2),
    (6, 64, 1, 2),
    (6, 96, 1, 1),
    (6, 160, 1, 2),
    (6, 320, 1, 1),
)


@register_model(
    "mobilenet_v2_tiny",
    family="mobilenet_v2",
    description="test variant: MobileNetV2 blocks, fewer repeats, width 0.125, last conv 80",
    is_tiny=True,
)
def mobilenet_v2_tiny(num_classes: int = 10, width: float = 0.125) -> MobileNetV2:
    return MobileNetV2(num_classes, width, settings=_TINY_SETTINGS, last_channel=640)


@register_model(
    "mobilenet_v2_blocks",
    family="mobilenet_v2",
    description="MobileNetV2 with explicit blocks [expand, channels, kernel, stride] (what edgeslim nas "
    "exports); default: mobilenet_v2",
)
def mobilenet_v2_blocks(
    num_classes: int = 10,
    width: float = 1.0,
    blocks: Sequence[Sequence[int]] = CIFAR_BLOCKS,
    stem: int = 32,
    last_channel: int = 1280,
) -> MobileNetV2:
    return MobileNetV2(num_classes, width, last_channel=last_channel, blocks=blocks, stem=stem)
