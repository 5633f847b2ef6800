"""AlexNet for CIFAR, as in bearpaw/pytorch-classification (the usual CIFAR port, ~2.47M params).

Five convs (11x11 stride 4, 5x5, three 3x3) with ReLU and three 2x2 max-pools shrink a 32x32 input
to 1x1x256, then a single ``Linear(256, num_classes)`` named ``classifier``. No LRN, no dropout,
no 4096-wide FC layers (those assume 224x224 inputs). ``width`` scales every conv.
"""

from __future__ import annotations

from torch import Tensor, nn

from edgeslim.models._common import check_num_classes, check_width, init_conv_bn, scale_channels
from edgeslim.models.zoo import register_model

__all__ = ["AlexNet"]


class AlexNet(nn.Module):
    """``features`` conv/ReLU/max-pool stack, then ``classifier``."""

    def __init__(self, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        width = check_width(width)
        c1, c2, c3, c4, c5 = (scale_channels(c, width) for c in (64, 192, 384, 256, 256))
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 11, stride=4, padding=5),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c1, c2, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c2, c3, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c3, c4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c4, c5, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
        )
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(c5, num_classes)
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.features(x)))


@register_model(
    "alexnet", family="alexnet", description="AlexNet, CIFAR port (bearpaw): 5 convs, Linear(256) head"
)
def alexnet(num_classes: int = 10, width: float = 1.0) -> AlexNet:
    return AlexNet(num_classes, width)


@register_model(
    "alexnet_tiny", family="alexnet", description="test variant: AlexNet at width 1/16", is_tiny=True
)
def alexnet_tiny(num_classes: int = 10, width: float = 0.0625) -> AlexNet:
    return AlexNet(num_classes, width)
