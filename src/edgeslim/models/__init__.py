"""The model zoo: CIFAR-sized (3x32x32) classifiers built by name.

    >>> from edgeslim.models import create_model, list_models
    >>> model = create_model("resnet20", num_classes=10)

Every family has ``<name>_tiny`` test variants (``model_info(name).is_tiny``) with the same block
structure and a few thousand to tens of thousands of parameters.
"""

from __future__ import annotations

# Family modules register their models on import; keep this list in sync with the files.
from edgeslim.models import (  # noqa: F401
    airbench,
    alexnet,
    densenet,
    efficientnet,
    googlenet,
    mobilenet,
    resnet,
    resnet_cifar,
    small_cnn,
    torchvision_nets,
    vgg,
)
from edgeslim.models.load import load_model_from_checkpoint, load_state, load_weights
from edgeslim.models.resnet_cifar import PadShortcut
from edgeslim.models.zoo import (
    INPUT_SIZE,
    MODELS,
    ModelInfo,
    create_model,
    list_models,
    model_info,
    model_spec,
    register_model,
)

__all__ = [
    "INPUT_SIZE",
    "MODELS",
    "ModelInfo",
    "PadShortcut",
    "create_model",
    "list_models",
    "load_model_from_checkpoint",
    "load_state",
    "load_weights",
    "model_info",
    "model_spec",
    "register_model",
]
