"""One vocabulary for inference runtimes: every layer (export, bench, engine, store, report, CLI)
spells a runtime the same way, as a :class:`Runtime` value.

Older edgeslim files said ``onnxruntime`` where everything else said ``ort``; :func:`parse_runtime`
refuses the old spelling with a one-line message saying what to write instead (and stores written by
that version are upgraded when opened), so there is no second name in use anywhere.
"""

from __future__ import annotations

import enum

from edgeslim.config import short_repr
from edgeslim.errors import ConfigError


class Runtime(enum.StrEnum):
    TORCH = "torch"  # eager PyTorch on the edgeslim checkpoint
    ORT = "ort"  # ONNX Runtime, CPU
    OPENVINO = "openvino"  # OpenVINO, CPU
    TENSORRT = "tensorrt"  # TensorRT, NVIDIA GPUs
    LITERT = "litert"  # LiteRT (TensorFlow Lite), CPU

    @property
    def display_name(self) -> str:
        return _DISPLAY[self]


_DISPLAY = {
    Runtime.TORCH: "PyTorch (eager)",
    Runtime.ORT: "ONNX Runtime",
    Runtime.OPENVINO: "OpenVINO",
    Runtime.TENSORRT: "TensorRT",
    Runtime.LITERT: "LiteRT",
}

#: Every runtime name, in the order tables list them.
RUNTIME_NAMES: tuple[str, ...] = tuple(r.value for r in Runtime)

#: Spellings earlier versions wrote, and the name that replaced each.
RENAMED = {"onnxruntime": "ort"}


def parse_runtime(value: object, field: str = "runtime") -> Runtime:
    """``value`` as a :class:`Runtime`; the error names ``field`` and the valid names."""
    text = str(value)
    if text in RENAMED:
        raise ConfigError(f"{field}: {text!r} is now called {RENAMED[text]!r}; rename it")
    try:
        return Runtime(text)
    except ValueError:
        raise ConfigError(f"{field}: {short_repr(text)} is not one of {', '.join(RUNTIME_NAMES)}") from None


__all__ = ["RENAMED", "RUNTIME_NAMES", "Runtime", "parse_runtime"]
