"""``Measurement``: the one record every edgeslim number lives in (eval, bench, export, compare).

Fields that were not measured stay None. ``simulated`` says a number comes from a simulation
(e.g. fake-quantized accuracy) rather than from running a real artifact, so reports never mix them
up. ``to_dict`` is plain JSON data; ``from_dict(json.loads(json.dumps(m.to_dict()))) == m``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from edgeslim.bench.counting import count_macs, count_nonzero_params, count_params
from edgeslim.bench.env import env_fingerprint
from edgeslim.bench.latency import LatencyStats, measure_latency
from edgeslim.bench.latency import threads as _threads
from edgeslim.bench.memory import measure_peak_rss
from edgeslim.bench.size import state_dict_size_bytes

SCHEMA = "edgeslim.measurement"
SCHEMA_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Everything measured about one model artifact on one runtime at one precision."""

    model: str
    artifact: str | None = None
    runtime: str = "torch"
    precision: str = "fp32"
    simulated: bool = False
    params: int | None = None
    nonzero_params: int | None = None
    macs: int | None = None
    size_bytes: int | None = None
    top1: float | None = None
    top5: float | None = None
    num_images: int | None = None
    latency: dict[int, LatencyStats] = dataclasses.field(default_factory=dict)
    peak_rss_bytes: int | None = None
    env: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # Accept lists for notes (from JSON/YAML) while keeping the record hashable-ish and immutable.
        if not isinstance(self.notes, tuple):
            object.__setattr__(self, "notes", tuple(self.notes))
        if any(not isinstance(k, int) or isinstance(k, bool) for k in self.latency):
            object.__setattr__(self, "latency", {int(k): v for k, v in self.latency.items()})

    @property
    def sparsity(self) -> float | None:
        """Share of parameters that are exactly zero (0..1), when both counts are known."""
        if self.params is None or self.nonzero_params is None or self.params == 0:
            return None
        return 1.0 - self.nonzero_params / self.params

    def replace(self, **changes: Any) -> Measurement:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            data[f.name] = getattr(self, f.name)
        data["latency"] = {str(bs): stats.to_dict() for bs, stats in sorted(self.latency.items())}
        data["notes"] = list(self.notes)
        data["env"] = dict(self.env)
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        data = dict(data)
        schema = data.pop("schema", SCHEMA)
        version = data.pop("schema_version", SCHEMA_VERSION)
        if schema != SCHEMA or version != SCHEMA_VERSION:
            raise ValueError(f"not an {SCHEMA} v{SCHEMA_VERSION} record: {schema!r} v{version!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"Measurement: unknown field(s) {', '.join(unknown)}")
        latency = data.get("latency") or {}
        data["latency"] = {
            int(bs): s if isinstance(s, LatencyStats) else LatencyStats.from_dict(s)
            for bs, s in latency.items()
        }
        data["notes"] = tuple(data.get("notes") or ())
        return cls(**data)


def _precision(model: nn.Module, bf16: bool) -> str:
    if bf16:
        return "bf16"
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    names = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float64: "fp64"}
    return names.get(first.dtype, "fp32") if first is not None else "fp32"


def benchmark_torch(
    model: nn.Module,
    input_size: Sequence[int] = (3, 32, 32),
    *,
    model_name: str = "model",
    batch_sizes: Sequence[int] = (1, 32),
    threads: int | None = None,
    warmup: int = 5,
    runs: int = 30,
    min_seconds: float = 0.0,
    channels_last: bool = False,
    bf16: bool = False,
    measure_memory: bool = True,
) -> Measurement:
    """Params, non-zero params, MACs, state_dict size, latency per batch size and peak RSS (eager).

    Runs in eval mode under ``inference_mode`` (mode restored afterwards) with ``threads`` torch
    threads (None: current). ``channels_last`` converts the model in place (values unchanged).
    ``peak_rss_bytes`` is the process peak during one forward pass at the largest batch size, after
    warm-up (``extra`` holds the baseline and the increase). ``size_bytes`` is that of the serialized
    state_dict; replace it with :func:`file_size_bytes` of the real artifact when there is one.
    """
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be positive, got {tuple(batch_sizes)}")
    sample_shape = tuple(int(s) for s in input_size)
    with _threads(threads) as n_threads:
        macs = count_macs(model, (1, *sample_shape))
        first = next((p for p in model.parameters() if p.is_floating_point()), None)
        dtype = first.dtype if first is not None else torch.float32
        if channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        was_training = model.training
        model.eval()
        generator = torch.Generator().manual_seed(0)
        latency: dict[int, LatencyStats] = {}
        memory: dict[str, int] = {}
        try:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                for bs in sorted(set(batch_sizes)):
                    x = torch.randn((bs, *sample_shape), generator=generator).to(dtype)
                    if channels_last and x.dim() == 4:
                        x = x.contiguous(memory_format=torch.channels_last)
                    latency[bs] = measure_latency(model, x, warmup=warmup, runs=runs, min_seconds=min_seconds)
                    if measure_memory and bs == max(batch_sizes):
                        memory = measure_peak_rss(functools.partial(model, x)).to_dict()
        finally:
            model.train(was_training)
        env = env_fingerprint()
    return Measurement(
        model=model_name,
        artifact=None,
        runtime="torch",
        precision=_precision(model, bf16),
        simulated=False,
        params=count_params(model),
        nonzero_params=count_nonzero_params(model),
        macs=macs,
        size_bytes=state_dict_size_bytes(model),
        latency=latency,
        peak_rss_bytes=memory.get("peak_rss_bytes"),
        env=env,
        extra={
            "input_size": list(sample_shape),
            "threads": n_threads,
            "channels_last": channels_last,
            "warmup": warmup,
            "memory_batch_size": max(batch_sizes) if memory else None,
            "rss_baseline_bytes": memory.get("baseline_rss_bytes"),
            "rss_increase_bytes": memory.get("increase_bytes"),
        },
    )
