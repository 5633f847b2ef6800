"""Fixtures of the pruning tests."""

from __future__ import annotations

import pytest

from edgeslim import tasks


@pytest.fixture
def prune_configs(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The configs ``edgeslim prune`` hands to ``tasks.prune_task``, which is replaced by a recorder
    (the CLI's translation of flags is tested without pruning anything)."""
    configs: list[object] = []

    class Outcome:
        def to_dict(self) -> dict[str, int]:
            return {}

    def record(model_source: object, config: object, **kw: object) -> Outcome:
        configs.append(config)
        return Outcome()

    monkeypatch.setattr(tasks, "prune_task", record)
    return configs
