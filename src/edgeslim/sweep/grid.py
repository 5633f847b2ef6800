"""Grid expansion: an experiment becomes one baseline per model plus one trial per grid point.

Every trial depends on its model's baseline (computed once, shared by all of that model's
trials). A trial's ``key`` is a hash of everything that decides its result (model, data, layers,
compression config, fine-tune budget, what is measured), so a rerun recognizes finished trials
and a changed setting makes a new trial instead of silently reusing an old result.

Files enter the key as written in the experiment file plus a cheap fingerprint of their contents
(:func:`path_fingerprint`), not as absolute paths: moving the checkout or pointing
``$EDGESLIM_DATA`` at another copy of the same data keeps every key, while changed weights or data
make new trials. The trial's config (what a worker runs) holds today's resolved paths.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
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


#: Bytes of each file hashed for its fingerprint, and the most files of a folder hashed that way.
FINGERPRINT_BYTES = 1 << 20
FINGERPRINT_MAX_HASHED = 64


def _head_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read(FINGERPRINT_BYTES)).hexdigest()[:16]


def path_fingerprint(path: str | os.PathLike[str]) -> str:
    """A cheap content fingerprint of a file or folder, independent of where it lives.

    A file: its size and the SHA-256 of its first MiB. A folder: the relative name and size of every
    file under it, plus the first-MiB hash of each when there are at most 64 files (a CIFAR pickle
    folder; a tree of 60,000 images is fingerprinted by names and sizes in well under a second).
    Modification times are left out: a copy of the same files has the same fingerprint.
    """
    root = Path(path)
    if root.is_file():
        return f"{root.stat().st_size}:{_head_digest(str(root))}"
    files: list[tuple[str, int, str]] = []
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.is_file():
                    files.append((os.path.relpath(entry.path, root), entry.stat().st_size, entry.path))
    files.sort()
    hashed = len(files) <= FINGERPRINT_MAX_HASHED
    listing = [(name, size, _head_digest(full) if hashed else "") for name, size, full in files]
    digest = hashlib.sha256(json.dumps(listing).encode("utf-8")).hexdigest()[:16]
    return f"{len(files)} files:{digest}"


def _key_model(entry: dict[str, Any]) -> dict[str, Any]:
    """A model entry as the key sees it: weights as written plus their fingerprint."""
    out = {k: v for k, v in entry.items() if k not in ("weights", "weights_source")}
    if entry.get("weights"):
        out["weights"] = {
            "file": entry.get("weights_source"),
            "fingerprint": path_fingerprint(entry["weights"]),
        }
    return out


def _key_data(data: dict[str, Any]) -> dict[str, Any]:
    """The data spec as the key sees it: the path as written plus the data's fingerprint."""
    out = {k: v for k, v in data.items() if k not in ("path", "source")}
    out["path"] = {"as_written": data.get("source"), "fingerprint": path_fingerprint(data["path"])}
    return out


def _value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def expand(experiment: Experiment) -> list[TrialSpec]:
    """Baselines first (one per model), then every grid point of every method block per model."""
    specs: list[TrialSpec] = []
    measure = experiment.measure.to_dict()
    data = experiment.data.to_dict()
    layers = experiment.layers.to_dict()
    key_data = _key_data(data)
    for entry in experiment.models:
        base_config = {"model": entry.to_dict(), "data": data, "measure": measure}
        base_key = {**base_config, "model": _key_model(entry.to_dict()), "data": key_data}
        baseline = TrialSpec(
            key=trial_key({"kind": "baseline", **base_key}),
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
                key = trial_key({"kind": "compress", **config, **base_key})
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
