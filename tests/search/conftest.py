from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from search_helpers import MS_PER_MAC, graph_macs

from edgeslim.search import LatencyTable, LayerShape
from edgeslim.search import calibrate as calibrate_module


@pytest.fixture
def fake_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Layer tables and end-to-end timings from MACs (see ``search_helpers``); cache in tmp_path."""
    monkeypatch.setenv("EDGESLIM_CACHE", str(tmp_path / "cache"))

    def measure(self: LatencyTable, shape: LayerShape) -> float:
        self.entries[shape.key()] = shape.macs() * MS_PER_MAC
        return self.entries[shape.key()]

    def end_to_end(self: Any, runner: Any) -> float:
        return graph_macs(runner.path) * MS_PER_MAC

    monkeypatch.setattr(LatencyTable, "measure", measure)
    monkeypatch.setattr(LatencyTable, "overhead", lambda self, shape: 0.0)
    monkeypatch.setattr(calibrate_module.PairedTimer, "_once", end_to_end)
