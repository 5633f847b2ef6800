"""Hardware-aware neural architecture search on measured latency (``edgeslim nas``).

A weight-sharing supernet over a :class:`~edgeslim.nas.space.ResNetSpace` is trained once
(:func:`train_supernet`: sandwich rule, in-place distillation from the largest subnet, initialised
from a pretrained net); :func:`search_subnet` then finds the most accurate subnet under a latency
budget on a real runtime (the device profile of ``edgeslim profile``), and exports it as an ordinary
checkpoint that prune, quantize, export and bench take unchanged.
"""

from edgeslim.nas.space import SPACES, ResNetSpace, Subnet, get_space
from edgeslim.nas.supernet import ResNetSupernet, extract_subnet, load_supernet, save_supernet, sort_channels

__all__ = [
    "SPACES",
    "ResNetSpace",
    "ResNetSupernet",
    "Subnet",
    "extract_subnet",
    "get_space",
    "load_supernet",
    "save_supernet",
    "sort_channels",
]
