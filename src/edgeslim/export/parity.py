"""Does an exported artifact compute what the PyTorch model computes? Max |diff| and top-1 agreement.

Every export is checked on real inputs before anything is measured on it: an artifact whose
:class:`Parity` is not ``ok`` is reported as failed and never benchmarked as if it were good.
Tolerances depend on what the artifact is allowed to change (see :func:`default_tolerance`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgeslim.errors import ExportError

#: Precisions an artifact may have, with the parity rule each one gets by default.
PRECISIONS = ("fp32", "fp16", "int8")


@dataclasses.dataclass(frozen=True)
class Parity:
    """How closely an artifact reproduces PyTorch on the same inputs."""

    max_abs_diff: float
    top1_agreement: float  # share of inputs with the same arg-max class (0..1)
    num_inputs: int
    tolerance: float
    min_agreement: float = 0.99
    inputs: str = "given"  # where the inputs came from: "real images", "random", ...
    reference: str = "model"  # what the artifact was compared with

    @property
    def ok(self) -> bool:
        finite = bool(np.isfinite(self.max_abs_diff))
        return finite and self.max_abs_diff <= self.tolerance and self.top1_agreement >= self.min_agreement

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}

    def summary(self) -> str:
        """One line for tables and messages."""
        verdict = "ok" if self.ok else "FAILED"
        return (
            f"{verdict}: max |diff| {self.max_abs_diff:.3g} (tolerance {self.tolerance:.3g}), "
            f"top-1 agreement {100 * self.top1_agreement:.1f}% (min {100 * self.min_agreement:.0f}%) "
            f"on {self.num_inputs} inputs ({self.inputs}) vs the {self.reference}"
        )


def default_tolerance(precision: str, expected: np.ndarray) -> tuple[float, float]:
    """(max |diff| tolerance, minimum top-1 agreement) for an artifact of ``precision``.

    fp32: float reordering only, 1e-3 + 1e-4 x the largest |logit|, all top-1 the same (99%).
    fp16: 11-bit mantissas, 1e-3 + 1e-2 x the largest |logit|, 99% agreement.
    int8 (against the fake-quantized model): one-code rounding differences in the integer kernels
    propagate through the depth of the network (see :func:`edgeslim.quantization.deployed_parity`):
    10% of the largest |logit| and 95% agreement. Measured on 64 real images: ResNet-20 0.9-1.5 of
    ~30 and ResNet-56 0.9-1.3 of ~26 with 100% agreement; a broken graph is far outside (a LiteRT
    file fed the wrong batch layout: 38 of 30, 27% agreement).
    """
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    if precision == "fp32":
        return 1e-3 + 1e-4 * scale, 0.99
    if precision == "fp16":
        return 1e-3 + 1e-2 * scale, 0.99
    if precision == "int8":
        return 0.1 * scale, 0.95
    raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")


def compare_outputs(
    expected: np.ndarray,
    got: np.ndarray,
    *,
    precision: str = "fp32",
    tolerance: float | None = None,
    min_agreement: float | None = None,
    inputs: str = "given",
    reference: str = "model",
) -> Parity:
    """Parity of ``got`` (the artifact's logits) against ``expected`` (PyTorch's) on the same inputs."""
    expected = np.asarray(expected, dtype=np.float32)
    got = np.asarray(got, dtype=np.float32)
    if got.shape != expected.shape:
        raise ExportError(
            f"the artifact's output shape {got.shape} differs from the model's {expected.shape}"
        )
    default_tol, default_agree = default_tolerance(precision, expected)
    diff = float(np.abs(expected - got).max()) if expected.size else 0.0
    if np.isnan(got).any():
        diff = float("inf")
    agree = float((expected.argmax(-1) == got.argmax(-1)).mean()) if expected.size else 1.0
    return Parity(
        max_abs_diff=diff,
        top1_agreement=agree,
        num_inputs=int(expected.shape[0]) if expected.ndim else 0,
        tolerance=default_tol if tolerance is None else tolerance,
        min_agreement=default_agree if min_agreement is None else min_agreement,
        inputs=inputs,
        reference=reference,
    )
