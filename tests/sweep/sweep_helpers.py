"""Experiment files for sweep tests (a module, so tests can import it)."""

from __future__ import annotations

from pathlib import Path

import yaml


def experiment_yaml(data: Path, **overrides: object) -> str:
    """A tiny experiment: resnet20_tiny, L1 at two rates, no fine-tuning, torch latency at batch 1.

    One thread per trial: on a busy machine two-thread OpenMP runs can be many times slower.
    """
    doc: dict[str, object] = {
        "name": "tiny",
        "models": [{"name": "resnet20_tiny"}],
        "data": {"path": str(data), "train_limit": 120, "test_limit": 60},
        "layers": {"types": ["conv"]},
        "methods": [{"prune": {"method": "l1", "ratio": [0.25, 0.5]}}],
        "measure": {"runtimes": ["torch"], "batch_sizes": [1], "latency_runs": 3, "warmup": 1},
        "execution": {"workers": 2, "threads": 1},
    }
    doc.update(overrides)
    return yaml.safe_dump(doc, sort_keys=False)
