"""Measurement: the shared record type, its JSON round trip, and benchmark_torch."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from edgeslim.bench import LatencyStats, Measurement, benchmark_torch, count_macs


def full_measurement() -> Measurement:
    stats = LatencyStats.from_times([0.002, 0.003, 0.004], batch_size=1)
    return Measurement(
        model="resnet20",
        artifact="runs/resnet20.onnx",
        runtime="onnxruntime",
        precision="int8",
        simulated=True,
        params=272_474,
        nonzero_params=136_000,
        macs=40_800_000,
        size_bytes=300_000,
        top1=91.25,
        top5=99.7,
        num_images=10_000,
        latency={1: stats, 32: LatencyStats.from_times([0.02, 0.03], batch_size=32)},
        peak_rss_bytes=400_000_000,
        env={"hash": "abc", "packages": {"openvino": None}},
        notes=("fake-quant accuracy",),
        extra={"split": "test", "loss": 0.31},
    )


def test_json_round_trip() -> None:
    m = full_measurement()
    data = json.loads(json.dumps(m.to_dict()))
    assert data["latency"]["32"]["batch_size"] == 32
    assert data["schema"] == "edgeslim.measurement"
    assert Measurement.from_dict(data) == m
    assert m.sparsity == pytest.approx(1 - 136_000 / 272_474)


def test_defaults_are_none_and_round_trip() -> None:
    m = Measurement(model="x")
    assert (m.top1, m.latency, m.notes, m.simulated) == (None, {}, (), False)
    assert Measurement.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert m.replace(top1=50.0).top1 == 50.0


def test_from_dict_rejects_unknown_fields() -> None:
    data: dict[str, Any] = Measurement(model="x").to_dict()
    data["acc"] = 1
    with pytest.raises(ValueError, match="acc"):
        Measurement.from_dict(data)


def test_benchmark_torch_fills_fields() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    model.train()
    m = benchmark_torch(model, (3, 8, 8), model_name="tiny", batch_sizes=(1, 4), threads=1, warmup=1, runs=3)
    assert model.training
    assert (m.model, m.runtime, m.precision, m.simulated) == ("tiny", "torch", "fp32", False)
    assert m.params == m.nonzero_params == sum(p.numel() for p in model.parameters())
    assert m.macs == count_macs(model, (1, 3, 8, 8)) == 3 * 4 * 9 * 64 + 256 * 10
    assert sorted(m.latency) == [1, 4] and m.latency[4].runs == 3
    assert m.peak_rss_bytes is not None and m.peak_rss_bytes > 0
    assert m.env["torch_threads"] == 1 and m.extra["threads"] == 1
    assert m.size_bytes is not None and m.size_bytes > 0
    assert Measurement.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_benchmark_torch_bf16_channels_last() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 2))
    m = benchmark_torch(
        model,
        (3, 8, 8),
        batch_sizes=(2,),
        warmup=0,
        runs=2,
        bf16=True,
        channels_last=True,
        measure_memory=False,
    )
    assert m.precision == "bf16" and m.peak_rss_bytes is None and m.extra["channels_last"] is True
