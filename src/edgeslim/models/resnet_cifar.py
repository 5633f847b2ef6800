"""CIFAR ResNet-20/32/44/56 (He et al. 2016, section 4.2) with "option A" shortcuts.

The layout and key names are exactly those of akamaster/pytorch_resnet_cifar10, so its pretrained
files load strictly: ``conv1``, ``bn1``, ``layer{1,2,3}.{i}.conv1/bn1/conv2/bn2``, ``linear``.
The parameter-free downsampling shortcut is a named module (:class:`PadShortcut`) with an explicit
channel index map, so filter pruning can remove channels on either side of it correctly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeslim.errors import ModelError
from edgeslim.models._common import check_int, check_num_classes, check_width, scale_channels
from edgeslim.models.zoo import register_model

__all__ = ["BasicBlockA", "PadShortcut", "ResNetCifar", "gather_shortcut"]


def gather_shortcut(x: Tensor, stride: int, channel_index: Tensor) -> Tensor:
    """Subsample by ``stride``, then output channel ``c`` = input channel ``channel_index[c]``, where
    index ``x.shape[1]`` is a zero channel. Pad + index_select (ONNX Pad + Gather) rather than a
    Python loop: exportable and traceable."""
    x = x[:, :, ::stride, ::stride]
    x = F.pad(x, (0, 0, 0, 0, 0, 1), "constant", 0.0)
    return torch.index_select(x, 1, channel_index)


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample ``x[:, :, ::stride, ::stride]`` and zero-pad the new channels.

    With ``in_planes=16, planes=32`` this pads 8 channels on each side, i.e. ``planes // 4`` as in
    the reference code. Internally the padding is an explicit channel index map (output channel
    ``c`` copies input channel ``index_map[c]``, or is zero where that is -1), so filter pruning can
    remove input and output channels independently (:meth:`set_index_map`). The map is derived
    state, not a parameter: the state_dict has no keys for this module, pruned or not, and pruned
    models save the map in their channel spec (``edgeslim.models.channels``).
    """

    channel_index: Tensor
    in_planes: int
    planes: int

    def __init__(self, in_planes: int, planes: int, stride: int = 2) -> None:
        super().__init__()
        if planes < in_planes:
            raise ModelError(f"PadShortcut cannot shrink channels ({in_planes} -> {planes})")
        self.stride = stride
        front = (planes - in_planes) // 2
        back = planes - in_planes - front
        self.register_buffer("channel_index", torch.zeros(0, dtype=torch.long), persistent=False)
        self.set_index_map([-1] * front + list(range(in_planes)) + [-1] * back, in_planes)

    @property
    def index_map(self) -> list[int]:
        """Input channel copied to each output channel; -1 means that output channel is zero (a copy)."""
        return list(self._index_map)

    @property
    def pad_front(self) -> int:
        """Leading zero channels (the reference layout's front padding while unpruned)."""
        return next((i for i, c in enumerate(self._index_map) if c >= 0), len(self._index_map))

    @property
    def pad_back(self) -> int:
        """Trailing zero channels."""
        return next((i for i, c in enumerate(reversed(self._index_map)) if c >= 0), 0)

    def set_index_map(self, index_map: Sequence[int], in_planes: int | None = None) -> None:
        """Rewire the shortcut: ``planes`` becomes ``len(index_map)``; ``in_planes`` may change too."""
        in_planes = self.in_planes if in_planes is None else in_planes
        if isinstance(in_planes, bool) or not isinstance(in_planes, int) or in_planes < 1:
            raise ModelError(f"PadShortcut in_planes must be an integer >= 1, got {in_planes!r}")
        entries = list(index_map)
        bad = [c for c in entries if isinstance(c, bool) or not isinstance(c, int) or not -1 <= c < in_planes]
        if bad or not entries:
            raise ModelError(
                f"PadShortcut index_map must be a non-empty list of ints in [-1, {in_planes}), "
                f"got {bad[:5] if bad else entries}"
            )
        self.in_planes = in_planes
        self.planes = len(entries)
        self._index_map = entries
        # the zero channel is appended at position in_planes by forward(); -1 selects it
        gather = torch.tensor([c if c >= 0 else in_planes for c in entries], dtype=torch.long)
        self.channel_index = gather.to(self.channel_index.device)

    def forward(self, x: Tensor) -> Tensor:
        return gather_shortcut(x, self.stride, self.channel_index)

    def extra_repr(self) -> str:
        return f"{self.in_planes}, {self.planes}, stride={self.stride}"


class BasicBlockA(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut, then ReLU (post-activation, as in the paper)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module
        if stride != 1 or in_planes != planes:
            self.shortcut = PadShortcut(in_planes, planes, stride)
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: 16/32/64 channels (times ``width``), n blocks per stage.

    ``blocks`` (three counts, e.g. ``(3, 5, 9)``) replaces ``depth`` with blocks per stage: the
    architectures a search over depths finds (``edgeslim nas``) are ordinary models of this class.
    """

    def __init__(
        self, depth: int = 20, num_classes: int = 10, width: float = 1.0, blocks: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        if blocks is None:
            check_int(depth, "depth", minimum=8)
            if (depth - 2) % 6:
                raise ModelError(f"depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
            blocks = [(depth - 2) // 6] * 3
        if isinstance(blocks, str) or len(blocks) != 3:
            raise ModelError(f"blocks must be three blocks-per-stage counts, e.g. [3, 3, 3], got {blocks!r}")
        for n in blocks:
            check_int(n, "blocks", minimum=1)
        num_classes = check_num_classes(num_classes)
        width = check_width(width)
        c1, c2, c3 = (scale_channels(c, width) for c in (16, 32, 64))
        self.conv1 = nn.Conv2d(3, c1, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu = nn.ReLU()
        self.layer1 = self._make_layer(c1, c1, blocks[0], stride=1)
        self.layer2 = self._make_layer(c1, c2, blocks[1], stride=2)
        self.layer3 = self._make_layer(c2, c3, blocks[2], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(c3, num_classes)
        for module in self.modules():  # the reference init (kaiming_normal_, fan_in)
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight)

    @staticmethod
    def _make_layer(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlockA(in_planes, planes, stride)]
        layers += [BasicBlockA(planes, planes, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(self.flatten(self.avgpool(out)))


def _describe(depth: int) -> str:
    return f"CIFAR ResNet-{depth}, option-A shortcuts, 16/32/64 channels (akamaster-compatible keys)"


@register_model("resnet20", family="resnet_cifar", description=_describe(20))
def resnet20(num_classes: int = 10, width: float = 1.0) -> ResNetCifar:
    return ResNetCifar(20, num_classes, width)


@register_model("resnet32", family="resnet_cifar", description=_describe(32))
def resnet32(num_classes: int = 10, width: float = 1.0) -> ResNetCifar:
    return ResNetCifar(32, num_classes, width)


@register_model("resnet44", family="resnet_cifar", description=_describe(44))
def resnet44(num_classes: int = 10, width: float = 1.0) -> ResNetCifar:
    return ResNetCifar(44, num_classes, width)


@register_model("resnet56", family="resnet_cifar", description=_describe(56))
def resnet56(num_classes: int = 10, width: float = 1.0) -> ResNetCifar:
    return ResNetCifar(56, num_classes, width)


@register_model(
    "resnet_cifar",
    family="resnet_cifar",
    description="CIFAR ResNet with explicit blocks per stage (what edgeslim nas exports); 16/32/64 channels",
)
def resnet_cifar(num_classes: int = 10, width: float = 1.0, blocks: Sequence[int] = (3, 3, 3)) -> ResNetCifar:
    return ResNetCifar(num_classes=num_classes, width=width, blocks=list(blocks))


@register_model(
    "resnet20_tiny",
    family="resnet_cifar",
    description="test variant: ResNet-20 structure at width 0.25 (4/8/16 channels)",
    is_tiny=True,
)
def resnet20_tiny(num_classes: int = 10, width: float = 0.25) -> ResNetCifar:
    return ResNetCifar(20, num_classes, width)
