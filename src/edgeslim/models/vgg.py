"""CIFAR VGG-11/16, with and without BatchNorm (kuangliu/pytorch-cifar layout).

Head choice: after five 2x2 max-pools a 32x32 input is 1x1x512, so the classifier is a single
``Linear(512, num_classes)`` named ``classifier`` (the common CIFAR port; the 4096-4096 ImageNet
head would be ~90% of the weights for no accuracy gain on 32x32 images). Convs keep their bias
in both variants, as torchvision and kuangliu do; that is what the published parameter counts use.
"""

from __future__ import annotations

from torch import Tensor, nn

from edgeslim.models._common import check_num_classes, check_width, init_conv_bn, scale_channels
from edgeslim.models.zoo import register_model

__all__ = ["VGG", "VGG_CONFIGS"]

# ints are 3x3 conv widths, "M" a 2x2 max-pool (standard configurations A and D).
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


class VGG(nn.Module):
    """``features`` (conv[-BN]-ReLU stack with max-pools) then a flat linear ``classifier``."""

    def __init__(
        self,
        config: tuple[int | str, ...],
        num_classes: int = 10,
        width: float = 1.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        width = check_width(width)
        layers: list[nn.Module] = []
        in_channels = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            out_channels = scale_channels(int(item), width)
            layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU())
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(in_channels, num_classes)
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.features(x)))


def _vgg(config: str, num_classes: int, width: float, batch_norm: bool) -> VGG:
    return VGG(VGG_CONFIGS[config], num_classes, width, batch_norm)


@register_model("vgg11", family="vgg", description="VGG-11 (config A), no BN, Linear(512, classes) head")
def vgg11(num_classes: int = 10, width: float = 1.0) -> VGG:
    return _vgg("vgg11", num_classes, width, False)


@register_model("vgg16", family="vgg", description="VGG-16 (config D), no BN, Linear(512, classes) head")
def vgg16(num_classes: int = 10, width: float = 1.0) -> VGG:
    return _vgg("vgg16", num_classes, width, False)


@register_model(
    "vgg11_bn", family="vgg", description="VGG-11 (config A) with BatchNorm, Linear(512, classes) head"
)
def vgg11_bn(num_classes: int = 10, width: float = 1.0) -> VGG:
    return _vgg("vgg11", num_classes, width, True)


@register_model(
    "vgg16_bn", family="vgg", description="VGG-16 (config D) with BatchNorm, Linear(512, classes) head"
)
def vgg16_bn(num_classes: int = 10, width: float = 1.0) -> VGG:
    return _vgg("vgg16", num_classes, width, True)


@register_model(
    "vgg11_tiny", family="vgg", description="test variant: VGG-11 layout, no BN, width 1/16", is_tiny=True
)
def vgg11_tiny(num_classes: int = 10, width: float = 0.0625) -> VGG:
    return _vgg("vgg11", num_classes, width, False)


@register_model(
    "vgg11_bn_tiny", family="vgg", description="test variant: VGG-11 layout with BN, width 1/16", is_tiny=True
)
def vgg11_bn_tiny(num_classes: int = 10, width: float = 0.0625) -> VGG:
    return _vgg("vgg11", num_classes, width, True)
