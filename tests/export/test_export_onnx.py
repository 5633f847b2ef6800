"""Every tiny zoo model exports to ONNX and matches PyTorch in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeslim.export import check_parity, export_onnx, ort_latency, ort_session
from edgeslim.models import create_model, list_models, model_info

pytest.importorskip("onnxruntime")

TINY = [n for n in list_models(tiny=True) if model_info(n).is_tiny]


@pytest.mark.parametrize("name", TINY)
def test_tiny_model_onnx_parity(name: str, tmp_path: Path) -> None:
    model = create_model(name).eval()
    export = export_onnx(model, tmp_path / f"{name}.onnx")
    assert export.path.stat().st_size == export.size_bytes > 0
    session = ort_session(export.path, threads=1)
    # dynamic batch: batch sizes other than the export example work
    parity = check_parity(model, session, torch.randn(5, 3, 32, 32), tolerance=1e-4)
    assert parity.max_abs_diff <= 1e-4, parity
    assert parity.top1_agreement == 1.0
    assert parity.ok


def test_latency_and_failed_parity_flag(tmp_path: Path) -> None:
    model = create_model("resnet20_tiny").eval()
    export = export_onnx(model, tmp_path / "m.onnx")
    session = ort_session(export.path, threads=1)
    stats = ort_latency(session, (3, 32, 32), (1, 4), warmup=1, runs=3)
    assert set(stats) == {1, 4}
    assert stats[4].min_ms <= stats[4].median_ms <= stats[4].p90_ms
    with torch.no_grad():  # a different model must fail parity, not pass silently
        for p in model.parameters():
            p.add_(0.5)
    assert not check_parity(model, session, torch.randn(4, 3, 32, 32)).ok
