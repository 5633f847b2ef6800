"""ImageNet architectures with torchvision's exact layout, so torchvision's weights load strictly.

Registered under timm-style names that say what they are: ``resnet50.tv_in1k`` is torchvision's
ResNet-50 (7x7 stem, max-pool, ``fc`` head) whose pretrained weights are torchvision's ImageNet-1k
ones. The CIFAR ports keep the bare names (``resnet50`` has a 3x3 stem and a ``linear`` head).

State_dict keys, shapes and parameter counts equal torchvision's (``resnet50.tv_in1k``:
25,557,032; ``vgg16.tv_in1k``: 138,357,544; ``mobilenet_v2.tv_in1k``: 3,504,872;
``densenet121.tv_in1k``: 7,978,856; ``googlenet.tv_in1k``: 6,624,904 (no auxiliary heads);
``efficientnet_b0.tv_in1k``: 5,288,548; ``alexnet.tv_in1k``: 61,100,840). Differences that carry no
parameters: every activation is its own (not in-place) module so torch.fx, BN folding and filter
pruning see them; EfficientNet's stochastic depth is left out (it is the identity at inference).

``create_model("resnet50.tv_in1k", num_classes=10, pretrained=True)`` loads the ImageNet backbone
and gives a freshly initialized 10-class classifier (:data:`CLASSIFIERS` names it per family).
The models take any input of at least 32x32 pixels (AlexNet: 63x63); they were trained at 224.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from edgeslim.models._common import check_num_classes, check_rate, make_divisible
from edgeslim.models.mobilenet import mobilenet_init
from edgeslim.models.zoo import register_model

__all__ = [
    "CLASSIFIERS",
    "IMAGENET_INPUT_SIZE",
    "PRETRAINED_KWARGS",
    "TVVGG",
    "TV_MODELS",
    "TVAlexNet",
    "TVDenseNet",
    "TVEfficientNet",
    "TVGoogLeNet",
    "TVMobileNetV2",
    "TVResNet",
    "classifier_keys",
    "convert_torchvision_state",
]

IMAGENET_INPUT_SIZE: tuple[int, int, int] = (3, 224, 224)
TAG = "tv_in1k"

# model name -> dotted path of the final nn.Linear (the head that num_classes replaces)
CLASSIFIERS: dict[str, str] = {}
# model name -> factory kwargs the pretrained weights need (GoogLeNet was trained with transform_input)
PRETRAINED_KWARGS: dict[str, dict[str, Any]] = {}
# model names registered here, in the order of this file
TV_MODELS: list[str] = []


def _register(
    arch: str, family: str, description: str, classifier: str, **pretrained_kwargs: Any
) -> Callable[[Any], Any]:
    name = f"{arch}.{TAG}"
    CLASSIFIERS[name] = classifier
    PRETRAINED_KWARGS[name] = dict(pretrained_kwargs)
    TV_MODELS.append(name)
    return register_model(
        name,
        family=family,
        description=f"torchvision {description} (ImageNet layout, 224 px; pretrained=True: {TAG} weights)",
        input_size=IMAGENET_INPUT_SIZE,
    )


def _init_like_torchvision(model: nn.Module, linear_std: float | None = None) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0, linear_std)
            nn.init.zeros_(m.bias)


# -- ResNet ---------------------------------------------------------------------------------------


def _downsample(in_planes: int, out_planes: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class TVBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(in_planes, planes, stride)
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class TVBottleneck(nn.Module):
    """torchvision's ResNet V1.5 bottleneck: the stride is on the 3x3 conv."""

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
        self.downsample = _downsample(in_planes, out_planes, stride)
        self.relu3 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + identity)


class TVResNet(nn.Module):
    """7x7/2 stem, 3x3/2 max-pool, four stages, global pool, ``fc``."""

    def __init__(
        self,
        block: type[TVBasicBlock | TVBottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_planes = 64
        stages = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            blocks: list[nn.Module] = []
            for j in range(n):
                blocks.append(block(in_planes, planes, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(in_planes, num_classes)
        _init_like_torchvision(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


@_register("resnet18", "resnet-tv", "ResNet-18 (BasicBlocks [2,2,2,2], 11.7M params)", "fc")
def resnet18_tv(num_classes: int = 1000) -> TVResNet:
    return TVResNet(TVBasicBlock, (2, 2, 2, 2), num_classes)


@_register("resnet50", "resnet-tv", "ResNet-50 V1.5 (Bottlenecks [3,4,6,3], 25.6M params)", "fc")
def resnet50_tv(num_classes: int = 1000) -> TVResNet:
    return TVResNet(TVBottleneck, (3, 4, 6, 3), num_classes)


# -- VGG / AlexNet --------------------------------------------------------------------------------

_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class TVVGG(nn.Module):
    """``features`` (3x3 convs + ReLU, max-pools), 7x7 adaptive pool, 3-layer ``classifier``."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        dropout = check_rate(dropout, "dropout")
        layers: list[nn.Module] = []
        in_planes = 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                assert isinstance(v, int)
                layers += [nn.Conv2d(in_planes, v, 3, padding=1), nn.ReLU()]
                in_planes = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        _init_like_torchvision(self, linear_std=0.01)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


@_register("vgg16", "vgg-tv", "VGG-16 without BN (138.4M params)", "classifier.6")
def vgg16_tv(num_classes: int = 1000, dropout: float = 0.5) -> TVVGG:
    return TVVGG(num_classes, dropout)


class TVAlexNet(nn.Module):
    """torchvision's one-tower AlexNet (64/192/384/256/256 filters); needs inputs of >= 63 px."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        dropout = check_rate(dropout, "dropout")
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


@_register("alexnet", "alexnet-tv", "AlexNet (61.1M params; inputs >= 63 px)", "classifier.6")
def alexnet_tv(num_classes: int = 1000, dropout: float = 0.5) -> TVAlexNet:
    return TVAlexNet(num_classes, dropout)


# -- MobileNetV2 / EfficientNet-B0 ----------------------------------------------------------------


class ConvNormAct(nn.Sequential):
    """torchvision's Conv2dNormActivation: keys ``0`` (conv, no bias), ``1`` (BN), ``2`` (activation)."""

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: type[nn.Module] | None = nn.ReLU6,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_planes, out_planes, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_planes),
        ]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


class TVInvertedResidual(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(in_planes * expand_ratio)
        self.use_res_connect = stride == 1 and in_planes == out_planes
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(in_planes, hidden, 1))
        layers += [
            ConvNormAct(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_planes, 1, bias=False),
            nn.BatchNorm2d(out_planes),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_planes

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


_MBV2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class TVMobileNetV2(nn.Module):
    """``features`` (stem, 17 inverted residuals, 1x1 conv to 1280), pool, ``classifier`` (dropout, linear)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        dropout = check_rate(dropout, "dropout")
        in_planes, last = 32, 1280
        features: list[nn.Module] = [ConvNormAct(3, in_planes, 3, stride=2)]
        for t, c, n, s in _MBV2_SETTINGS:
            out_planes = make_divisible(c, 8)
            for i in range(n):
                features.append(TVInvertedResidual(in_planes, out_planes, s if i == 0 else 1, t))
                in_planes = out_planes
        features.append(ConvNormAct(in_planes, last, 1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        mobilenet_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


@_register("mobilenet_v2", "mobilenet-tv", "MobileNetV2 (width 1.0, ReLU6, 3.5M params)", "classifier.1")
def mobilenet_v2_tv(num_classes: int = 1000, dropout: float = 0.2) -> TVMobileNetV2:
    return TVMobileNetV2(num_classes, dropout)


class TVSqueezeExcitation(nn.Module):
    """torchvision's SqueezeExcitation: keys ``fc1``, ``fc2`` (1x1 convs with bias)."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.SiLU()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return x * scale


class TVMBConv(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, kernel: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_planes == out_planes
        hidden = make_divisible(in_planes * expand_ratio, 8)
        layers: list[nn.Module] = []
        if hidden != in_planes:
            layers.append(ConvNormAct(in_planes, hidden, 1, act=nn.SiLU))
        layers += [
            ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU),
            TVSqueezeExcitation(hidden, max(1, in_planes // 4)),
            ConvNormAct(hidden, out_planes, 1, act=None),
        ]
        self.block = nn.Sequential(*layers)
        self.out_channels = out_planes

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.block(x)
        return self.block(x)


# (expand ratio, kernel, stride, out channels, repeats)
_B0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


class TVEfficientNet(nn.Module):
    """EfficientNet-B0: ``features`` (stem, 7 MBConv stages, 1x1 head conv), pool, ``classifier``."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        dropout = check_rate(dropout, "dropout")
        in_planes = 32
        layers: list[nn.Module] = [ConvNormAct(3, in_planes, 3, stride=2, act=nn.SiLU)]
        for expand, kernel, stride, channels, repeats in _B0_STAGES:
            stage = []
            for i in range(repeats):
                stage.append(TVMBConv(in_planes, channels, kernel, stride if i == 0 else 1, expand))
                in_planes = channels
            layers.append(nn.Sequential(*stage))
        head = 4 * in_planes
        layers.append(ConvNormAct(in_planes, head, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(head, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / m.out_features**0.5
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


@_register(
    "efficientnet_b0",
    "efficientnet-tv",
    "EfficientNet-B0 (SiLU + SE, 5.3M params; no stochastic depth)",
    "classifier.1",
)
def efficientnet_b0_tv(num_classes: int = 1000, dropout: float = 0.2) -> TVEfficientNet:
    return TVEfficientNet(num_classes, dropout)


# -- DenseNet -------------------------------------------------------------------------------------


class TVDenseLayer(nn.Module):
    """BN-ReLU-conv1x1(bn_size*k)-BN-ReLU-conv3x3(k); returns only the k new channels."""

    def __init__(self, in_planes: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class TVDenseBlock(nn.Module):
    """Layers ``denselayer1..n``; each reads the concatenation [input, new1, ..., new(i-1)]."""

    def __init__(self, num_layers: int, in_planes: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(
                f"denselayer{i + 1}", TVDenseLayer(in_planes + i * growth_rate, growth_rate, bn_size)
            )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.children():
            x = torch.cat([x, layer(x)], 1)
        return x


class TVTransition(nn.Sequential):
    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)


class TVDenseNet(nn.Module):
    """``features`` (conv0/norm0/relu0/pool0, denseblock1..4, transition1..3, norm5), ReLU, pool, ``classifier``."""

    def __init__(
        self,
        block_config: tuple[int, int, int, int],
        num_classes: int = 1000,
        growth_rate: int = 32,
        num_init_features: int = 64,
        bn_size: int = 4,
    ) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, num_init_features, 7, stride=2, padding=3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
        self.features.add_module("relu0", nn.ReLU())
        self.features.add_module("pool0", nn.MaxPool2d(3, stride=2, padding=1))
        planes = num_init_features
        for i, n in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", TVDenseBlock(n, planes, growth_rate, bn_size))
            planes += n * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", TVTransition(planes, planes // 2))
                planes //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(planes))
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.avgpool(self.relu(self.features(x)))))


@_register(
    "densenet121", "densenet-tv", "DenseNet-121 (growth 32, blocks [6,12,24,16], 8.0M params)", "classifier"
)
def densenet121_tv(num_classes: int = 1000) -> TVDenseNet:
    return TVDenseNet((6, 12, 24, 16), num_classes)


@_register(
    "densenet201", "densenet-tv", "DenseNet-201 (growth 32, blocks [6,12,48,32], 20.0M params)", "classifier"
)
def densenet201_tv(num_classes: int = 1000) -> TVDenseNet:
    return TVDenseNet((6, 12, 48, 32), num_classes)


# -- GoogLeNet ------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """conv (no bias) - BN (eps 1e-3) - ReLU, keys ``conv``, ``bn``."""

    def __init__(
        self, in_planes: int, out_planes: int, kernel_size: int, stride: int = 1, padding: int = 0
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_planes, eps=0.001)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class TVInception(nn.Module):
    """Four branches concatenated; "branch3" uses a 3x3 conv, as torchvision's (and its weights) do."""

    def __init__(
        self, in_planes: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_planes, ch1x1, 1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_planes, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3, padding=1)
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_planes, ch5x5red, 1), BasicConv2d(ch5x5red, ch5x5, 3, padding=1)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), BasicConv2d(in_planes, pool_proj, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class TVGoogLeNet(nn.Module):
    """torchvision's GoogLeNet without the auxiliary classifiers (their weights are dropped on load).

    ``transform_input`` re-normalizes ImageNet-normalized inputs to the (x - 0.5) / 0.5 scaling the
    torchvision weights were trained with; ``pretrained=True`` turns it on.
    """

    _in_scale: Tensor
    _in_shift: Tensor

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, transform_input: bool = False) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        dropout = check_rate(dropout, "dropout")
        self.transform_input = bool(transform_input)
        self.conv1 = BasicConv2d(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = TVInception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = TVInception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = TVInception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = TVInception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = TVInception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = TVInception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = TVInception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = TVInception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = TVInception(832, 384, 192, 384, 48, 128, 128)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        for m in self.modules():  # torchvision: truncated normal, std 0.01
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.transform_input:
            scale = torch.tensor([0.229, 0.224, 0.225]) / 0.5
            shift = (torch.tensor([0.485, 0.456, 0.406]) - 0.5) / 0.5
            self.register_buffer("_in_scale", scale.view(1, 3, 1, 1), persistent=False)
            self.register_buffer("_in_shift", shift.view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.transform_input:
            x = x * self._in_scale + self._in_shift
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4d(self.inception4c(self.inception4b(self.inception4a(x))))
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        return self.fc(self.dropout(self.flatten(self.avgpool(x))))


@_register(
    "googlenet",
    "googlenet-tv",
    "GoogLeNet / Inception v1 (no aux heads, 6.6M params)",
    "fc",
    transform_input=True,
)
def googlenet_tv(num_classes: int = 1000, dropout: float = 0.2, transform_input: bool = False) -> TVGoogLeNet:
    return TVGoogLeNet(num_classes, dropout, transform_input)


# -- torchvision weight files ---------------------------------------------------------------------

_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def convert_torchvision_state(name: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a torchvision weights file onto this module's keys.

    DenseNet files use the pre-0.4 key form ``denselayer1.norm.1.weight`` (torchvision renames them
    on load too); GoogLeNet files carry the auxiliary heads, which these models do not have.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if name.startswith("densenet"):
            match = _DENSENET_OLD_KEY.match(key)
            if match:
                key = match.group(1) + match.group(2)
        if name.startswith("googlenet") and key.startswith(("aux1.", "aux2.")):
            continue
        out[key] = value
    return out


def classifier_keys(name: str) -> set[str]:
    """The state_dict keys of the replaceable head of ``name`` (weight and bias of its last Linear)."""
    path = CLASSIFIERS[name]
    return {f"{path}.weight", f"{path}.bias"}
