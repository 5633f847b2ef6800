"""The classic course-project CIFAR CNN: two conv/pool stages and two large linear layers.

conv3x3(3->32)-ReLU-pool, conv3x3(32->64)-ReLU-pool, flatten (64*8*8), Linear(4096->512)-ReLU,
dropout, Linear(512->classes). About 99% of its 2.1M parameters sit in ``fc1``, which makes it the
model where pruning/quantizing linear layers (not convs) is what shrinks the file.
"""

from __future__ import annotations

from torch import Tensor, nn

from edgeslim.models._common import check_num_classes, check_rate, check_width, scale_channels
from edgeslim.models.zoo import register_model

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """``conv1``/``conv2`` feature stages then ``fc1`` (hidden) and ``fc2`` (classifier)."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, drop_rate: float = 0.5) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        width = check_width(width)
        drop_rate = check_rate(drop_rate, "drop_rate")
        c1, c2, hidden = (scale_channels(c, width) for c in (32, 64, 512))
        self.conv1 = nn.Conv2d(3, c1, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, 2)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(c2 * 8 * 8, hidden)
        self.relu3 = nn.ReLU()
        self.dropout = nn.Dropout(drop_rate)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.pool1(self.relu1(self.conv1(x)))
        out = self.pool2(self.relu2(self.conv2(out)))
        out = self.dropout(self.relu3(self.fc1(self.flatten(out))))
        return self.fc2(out)


@register_model(
    "small_cnn",
    family="small_cnn",
    description="course-project CNN: 2 conv/pool stages, Linear(4096->512), Linear(512->classes)",
)
def small_cnn(num_classes: int = 10, width: float = 1.0, drop_rate: float = 0.5) -> SmallCNN:
    return SmallCNN(num_classes, width, drop_rate)


@register_model(
    "small_cnn_tiny", family="small_cnn", description="test variant: small_cnn at width 1/8", is_tiny=True
)
def small_cnn_tiny(num_classes: int = 10, width: float = 0.125, drop_rate: float = 0.5) -> SmallCNN:
    return SmallCNN(num_classes, width, drop_rate)
