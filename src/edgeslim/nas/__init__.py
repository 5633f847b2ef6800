"""Hardware-aware neural architecture search on measured latency (``edgeslim nas``).

A weight-sharing supernet over a search space (:data:`SPACES`: CIFAR ResNets initialised from a
pretrained net, :class:`~edgeslim.nas.space.ResNetSpace`; MobileNetV2-style inverted residual blocks
with elastic kernels, trained from scratch, :class:`~edgeslim.nas.space.MBV2Space`) is trained once
(:func:`train_supernet`: sandwich rule, in-place distillation from the largest subnet);
:func:`search_subnet` then finds the most accurate subnet under a latency budget on a real runtime
(the device profile of ``edgeslim profile``), and exports it as an ordinary checkpoint that prune,
quantize, export and bench take unchanged. Each space type has its supernet class
(:data:`SUPERNETS`); everything else goes through the same code for every space.
"""

from edgeslim.nas.mbv2 import MBV2Supernet
from edgeslim.nas.search import NasOptions, NasResult, search_subnet
from edgeslim.nas.space import SPACES, MBV2Space, MBV2Subnet, ResNetSpace, SearchSpace, Subnet, get_space
from edgeslim.nas.supernet import (
    SUPERNETS,
    ResNetSupernet,
    Supernet,
    build_supernet,
    extract_subnet,
    load_supernet,
    save_supernet,
    sort_channels,
)
from edgeslim.nas.train import SupernetTraining, SupernetTrainResult, train_supernet

__all__ = [
    "SPACES",
    "SUPERNETS",
    "MBV2Space",
    "MBV2Subnet",
    "MBV2Supernet",
    "NasOptions",
    "NasResult",
    "ResNetSpace",
    "ResNetSupernet",
    "SearchSpace",
    "Subnet",
    "Supernet",
    "SupernetTrainResult",
    "SupernetTraining",
    "build_supernet",
    "extract_subnet",
    "get_space",
    "load_supernet",
    "save_supernet",
    "search_subnet",
    "sort_channels",
    "train_supernet",
]
