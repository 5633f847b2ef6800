"""Where a number was measured: CPU, threads and library versions, with a short stable hash.

Latencies are only comparable between identical fingerprints, so every measurement carries one.
Optional runtimes are looked up with ``importlib.metadata`` (never imported: importing OpenVINO or
TensorRT is slow and may print).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

OPTIONAL_PACKAGES = ("onnx", "onnxruntime", "openvino", "tensorrt")
_ISA_FLAGS = (
    "avx2",
    "avx_vnni",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "asimddp",
    "sve",
)


def _cpuinfo_text() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def _cpuinfo() -> tuple[str | None, list[str]]:
    """The CPU's model name and the ISA flags edgeslim reports, in one pass over /proc/cpuinfo. A name
    without a model number (``AMD EPYC`` on some VMs, which covers Zen 3 (AVX2) and Zen 4 (AVX-512,
    BF16) alike, about 3x apart in training speed) gets the first processor's family, model and
    widest vector ISA appended."""
    model: str | None = None
    family: str | None = None
    number: str | None = None
    flags: set[str] = set()
    for line in _cpuinfo_text().splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "cpu model") and model is None:
            model = value or None
        elif key in ("flags", "Features"):
            flags.update(value.split())
        elif key == "cpu family" and family is None:
            family = value
        elif key == "model" and number is None:
            number = value
    isa = [f for f in _ISA_FLAGS if f in flags]
    has_number = model is not None and re.search(r"\b(?=[\w-]*\d)[\w-]{3,}\b", model)
    if model is not None and not has_number and family is not None and number is not None:
        widest = next((f for f in ("avx512_bf16", "avx512f", "avx2") if f in isa), "no avx2")
        model += f" (family {family} model {number}, {widest})"
    return model, isa


def cpu_model() -> str:
    """The CPU's model name (what every figure is reported next to; see :func:`_cpuinfo`)."""
    model, _isa = _cpuinfo()
    return model or platform.processor() or platform.machine() or "unknown"


def int8_dot_product_exact() -> bool:
    """Whether int8 runtimes can multiply-accumulate u8 x s8 without saturating here.

    x86 CPUs without VNNI (AVX2 only, e.g. some AMD EPYC instances) run ONNX Runtime's and OpenVINO's
    u8 x s8 kernels on VPMADDUBSW, whose 16-bit pairwise sums saturate (255 x 127 x 2 > 32767), so
    deployed int8 outputs drift further from the fake-quantized model than on VNNI CPUs or on ARM
    (dot-product instructions accumulate in 32 bits). Tests and reports use this to state which case
    they measured.
    """
    _model, isa = _cpuinfo()
    if any(f in isa for f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")):
        return True
    return not ("avx2" in isa or "avx512f" in isa)  # not x86 (or unknown): assume exact


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def env_fingerprint() -> dict[str, Any]:
    """Plain-data description of the machine and software; ``hash`` covers all other fields."""
    _model, isa = _cpuinfo()
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        capability = None
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_isa": isa,
        "int8_dot_exact": int8_dot_product_exact(),
        "torch_cpu_capability": capability,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "torch_threads": torch.get_num_threads(),
        "torch_version": str(torch.__version__),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in OPTIONAL_PACKAGES},
    }
    info["hash"] = fingerprint_hash(info)
    return info


def fingerprint_hash(info: dict[str, Any]) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of ``info`` without its ``hash`` key."""
    payload = json.dumps({k: v for k, v in info.items() if k != "hash"}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]
