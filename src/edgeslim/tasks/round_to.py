"""``round_to`` chosen from measurement: which channel multiple the deployment runtime runs fastest.

Runtimes vectorize over channels (AVX2: 8 floats, AVX-512: 16; oneDNN blocks of 8 or 16), so a conv
whose channel count is not a multiple of the block may cost as much as the next multiple. Whether
that matters differs per CPU and runtime, so :func:`choose_round_to` times one 3x3 conv (batch 32,
16x16 feature maps) at every width from ``base - 15`` to ``base`` on the runtime, and picks the
smallest multiple ``m`` (of 2, 4, 8, 16) that gets nearly the best saving per channel-MAC of its
widths over the other widths, if that saving is at least ``min_gain``; 1 when no multiple helps.
The timings are cached per CPU, runtime and runtime version in
``~/.cache/edgeslim/round_to.json`` (``$EDGESLIM_CACHE``), so a second call costs nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeslim.bench import env_fingerprint
from edgeslim.errors import ConfigError
from edgeslim.export import export
from edgeslim.export.runners import open_runner

CANDIDATES = (1, 2, 4, 8, 16)
RUNTIMES = ("ort", "openvino")


@dataclasses.dataclass(frozen=True)
class RoundToChoice:
    """The chosen multiple and the timings behind it (ms per batch of 32, by width)."""

    round_to: int
    runtime: str
    base: int
    timings_ms: dict[int, float]
    gains: dict[int, float]  # multiple -> per-channel-MAC saving of its widths vs the others (0.05 = 5%)
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "round_to": self.round_to,
            "runtime": self.runtime,
            "base_width": self.base,
            "timings_ms": {str(k): v for k, v in self.timings_ms.items()},
            "gains": {str(k): v for k, v in self.gains.items()},
            "cached": self.cached,
        }


def _cache_file() -> Path:
    root = Path(os.environ.get("EDGESLIM_CACHE", Path.home() / ".cache" / "edgeslim"))
    return root / "round_to.json"


def _cache_key(runtime: str, base: int, batch: int) -> str:
    env = env_fingerprint()
    version = (env.get("packages") or {}).get("onnxruntime" if runtime == "ort" else "openvino")
    return f"{env.get('cpu_model')}|{runtime}|{version}|{base}|{batch}|{torch.get_num_threads()}"


def time_widths(
    runtime: str, widths: list[int], *, batch: int = 32, spatial: int = 16, runs: int = 15
) -> dict[int, float]:
    """Median ms of one 3x3 conv (``w`` -> ``w`` channels) on ``runtime`` for each width."""
    out: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for w in widths:
            conv = nn.Sequential(nn.Conv2d(w, w, 3, padding=1, bias=False), nn.ReLU()).eval()
            example = torch.randn(1, w, spatial, spatial)
            path = Path(tmp) / f"conv{w}.onnx"
            export(conv, "onnx", example, out=path, check=False)
            runner = open_runner(path, runtime)
            stats = runner.latency((w, spatial, spatial), (batch,), warmup=3, runs=runs)
            out[w] = float(stats[batch].median_ms)
    return out


def pick_multiple(timings_ms: dict[int, float], min_gain: float = 0.05) -> tuple[int, dict[int, float]]:
    """The smallest multiple whose widths cost about the most less per channel-MAC than the rest."""
    cost = {w: t / (w * w) for w, t in timings_ms.items()}  # a conv's MACs grow with w_in * w_out
    gains: dict[int, float] = {}
    for m in CANDIDATES[1:]:
        on = [c for w, c in cost.items() if w % m == 0]
        off = [c for w, c in cost.items() if w % m != 0]
        if on and off:
            gains[m] = 1.0 - statistics.median(on) / statistics.median(off)
    top = max(gains.values(), default=0.0)
    if top < min_gain:
        return 1, gains
    # the smallest multiple that gets (nearly) all of the gain: coarser rounding costs accuracy
    best = min(m for m, g in gains.items() if g >= top - min_gain / 2)
    return best, gains


def choose_round_to(
    runtime: str = "ort", *, base: int = 64, batch: int = 32, min_gain: float = 0.05, use_cache: bool = True
) -> RoundToChoice:
    """Time widths ``base - 15 .. base`` of one conv on ``runtime`` (cached) and pick ``round_to``."""
    if runtime not in RUNTIMES:
        raise ConfigError(
            f"round_to auto times ort or openvino, not {runtime!r}", field="FilterPruning.round_to"
        )
    if base < 16:
        raise ConfigError(f"choose_round_to.base must be >= 16, got {base}")
    key = _cache_key(runtime, base, batch)
    cache_path = _cache_file()
    cache: dict[str, Any] = {}
    if use_cache and cache_path.is_file():
        try:
            cache = json.loads(cache_path.read_text())
        except (OSError, ValueError):
            cache = {}
    cached = key in cache
    if cached:
        timings = {int(k): float(v) for k, v in cache[key].items()}
    else:
        timings = time_widths(runtime, list(range(base - 15, base + 1)), batch=batch)
        if use_cache:
            cache[key] = {str(k): v for k, v in timings.items()}
            try:
                cache_path.parent.mkdir(parents=True, exist_ok=True)
                cache_path.write_text(json.dumps(cache, indent=1))
            except OSError:
                pass  # a read-only home: measure again next time
    best, gains = pick_multiple(timings, min_gain)
    return RoundToChoice(best, runtime, base, timings, gains, cached=cached)


__all__ = ["CANDIDATES", "RoundToChoice", "choose_round_to", "pick_multiple", "time_widths"]
