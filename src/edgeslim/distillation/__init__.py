"""Knowledge distillation: Hinton KD, activation-boundary transfer (AB) and FitNets hints.

    >>> from edgeslim.distillation import KD, distill
    >>> result = distill(student, teacher, KD(alpha=0.1, temperature=4.0), loader,
    ...                  train_config=TrainConfig(epochs=30))

The losses are plain modules (:class:`KDLoss`, :class:`ABLoss`, :class:`HintLoss`,
:class:`Connector`); :class:`FeatureCapture` records activations by layer name (strictly);
:func:`distill` trains through the trainer's callback hooks with the teacher frozen.
"""

from edgeslim.distillation.capture import (
    CaptureMode,
    CapturePoint,
    FeatureCapture,
    capture_point,
    rectifier_calls,
)
from edgeslim.distillation.configs import (
    AB,
    KD,
    METHODS,
    DistillConfig,
    Finish,
    Hint,
    method_name,
    parse_layer_pairs,
)
from edgeslim.distillation.distill import (
    DistillResult,
    FeatureTransferCallback,
    KDCallback,
    StudentWithConnectors,
    TeacherForward,
    TeacherLogitCache,
    build_connectors,
    distill,
    resolve_layer_pairs,
)
from edgeslim.distillation.losses import ABLoss, Connector, HintLoss, KDLoss, boundary_agreement
from edgeslim.distillation.pairing import (
    LAST_RELU,
    PAIRING_RULES,
    PairingRule,
    auto_layer_pairs,
    pairing_rule,
)

__all__ = [
    "AB",
    "KD",
    "LAST_RELU",
    "METHODS",
    "PAIRING_RULES",
    "ABLoss",
    "CaptureMode",
    "CapturePoint",
    "Connector",
    "DistillConfig",
    "DistillResult",
    "FeatureCapture",
    "FeatureTransferCallback",
    "Finish",
    "Hint",
    "HintLoss",
    "KDCallback",
    "KDLoss",
    "PairingRule",
    "StudentWithConnectors",
    "TeacherForward",
    "TeacherLogitCache",
    "auto_layer_pairs",
    "boundary_agreement",
    "build_connectors",
    "capture_point",
    "distill",
    "method_name",
    "pairing_rule",
    "parse_layer_pairs",
    "rectifier_calls",
    "resolve_layer_pairs",
]
