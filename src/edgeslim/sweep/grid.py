"""Grid expansion: an experiment becomes one baseline per model plus one trial per grid point.

Every trial depends on its model's baseline (computed once, shared by all of that model's
trials). A trial's ``key`` is a hash of everything that decides its result (model, data, layers,
compression config, fine-tune budget, what is measured), so a rerun recognizes finished trials
and a changed setting makes a new trial instead of silently reusing an old result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Literal

from edgeslim.sweep.experiment import Experiment, method_config

TrialKind = Literal["baseline", "compress"]


@dataclasses.dataclass(frozen=True)
class TrialSpec:
    """One unit of work: its stable key, a readable name and the plain-data config a worker runs."""

    key: str
    name: str
    kind: TrialKind
    model: str
    config: dict[str, Any]
    depends_on: str | None = None


def trial_key(config: dict[str, Any]) -> str:
    """16 hex digits of SHA-256 over the canonical JSON of ``config``."""
    payload = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def expand(experiment: Experiment) -> list[TrialSpec]:
    """Baselines first (one per model), then every grid point of every method block per model."""
    specs: list[TrialSpec] = []
    measure = experiment.measure.to_dict()
    data = experiment.data.to_dict()
    layers = experiment.layers.to_dict()
    for entry in experiment.models:
        base_config = {"model": entry.to_dict(), "data": data, "measure": measure}
        baseline = TrialSpec(
            key=trial_key({"kind": "baseline", **base_config}),
            name=f"{entry.label}/baseline",
            kind="baseline",
            model=entry.label,
            config=base_config,
        )
        specs.append(baseline)
        seen_keys: set[str] = set()
        names: dict[str, int] = {}
        for block in experiment.methods:
            for combo in block.combinations():
                compression = method_config(block, combo)
                method = str(combo["method"])
                family = block.family
                uses_training = family == "prune" or method == "qat"
                config = {
                    **base_config,
                    "layers": layers,
                    "family": family,
                    "method": method,
                    "params": combo,
                    "compression": compression.to_dict(),
                    "finetune": block.finetune if uses_training else None,
                }
                key = trial_key({"kind": "compress", **config})
                if key in seen_keys:  # two blocks produced the same trial
                    continue
                seen_keys.add(key)
                label = " ".join(f"{k}={_value(v)}" for k, v in combo.items() if k != "method")
                name = f"{entry.label}/{method}" + (f" {label}" if label else "")
                names[name] = names.get(name, 0) + 1
                if names[name] > 1:
                    name = f"{name} #{names[name]}"
                specs.append(
                    TrialSpec(
                        key=key,
                        name=name,
                        kind="compress",
                        model=entry.label,
                        config=config,
                        depends_on=baseline.key,
                    )
                )
    return specs
