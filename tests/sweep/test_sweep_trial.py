"""Trials in-process: the real baseline/prune/quantize trial, and isolation of failing trials."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from sweep_helpers import experiment_yaml

from edgeslim.bench import count_nonzero_params, count_params
from edgeslim.models import create_model, load_model_from_checkpoint
from edgeslim.sweep import TrialJob, TrialOutput, execute, expand, parse_experiment, run_trial


def _job(spec, tmp_path: Path, baseline: dict | None = None, **kw) -> TrialJob:  # type: ignore[no-untyped-def,type-arg]
    return TrialJob(
        trial_id=1,
        key=spec.key,
        name=spec.name,
        kind=spec.kind,
        config=spec.config,
        baseline=baseline,
        workdir=str(tmp_path / spec.key),
        threads=1,
        **kw,
    )


@pytest.mark.slow  # two ONNX exports and an int8 QDQ export: about 10 s
def test_baseline_prune_and_int8_trials_measure_against_the_baseline(
    tiny_cifar: Path, tmp_path: Path
) -> None:
    text = experiment_yaml(
        tiny_cifar,
        methods=[{"prune": {"method": "l1", "ratio": 0.5}}, {"quantize": {"method": "static", "bits": 8}}],
        finetune={"epochs": 1, "lr": 0.01, "batch_size": 32},
        measure={"runtimes": ["torch", "onnxruntime"], "batch_sizes": [1, 4], "latency_runs": 3, "warmup": 1},
    )
    base_spec, prune_spec, quant_spec = expand(parse_experiment(text))
    base = execute(_job(base_spec, tmp_path), run_trial)
    assert base.status == "done", base.error
    m = base.metrics
    reference = create_model("resnet20_tiny")
    assert m["params"] == count_params(reference) and m["top1_drop"] == 0.0
    assert m["size_bytes"] == Path(base.artifact or "").stat().st_size  # the torch runtime's artifact
    assert set(m["latency_ms_by_batch"]) == {"1", "4"} and m["latency_batch_size"] == 1
    assert [x["runtime"] for x in base.measurements] == ["torch", "onnxruntime"]
    ort = base.measurements[1]
    assert (
        ort["size_bytes"] == Path(ort["artifact"]).stat().st_size
        and ort["extra"]["onnx_parity_max_abs_diff"] < 1e-3
    )
    assert base.env["hash"] and base.env["worker_threads"] == 1
    baseline = {"artifact": base.artifact, "metrics": base.metrics}

    pruned = execute(_job(prune_spec, tmp_path, baseline), run_trial)
    assert pruned.status == "done", pruned.error
    p = pruned.metrics
    model, _ = load_model_from_checkpoint(pruned.artifact or "")
    assert p["params"] == count_params(model) < m["params"]
    assert p["param_reduction_ratio"] == pytest.approx(1 - count_nonzero_params(model) / m["nonzero_params"])
    assert p["macs"] < m["macs"] and p["mac_reduction"] == pytest.approx(m["macs"] / p["macs"])
    assert p["top1_drop"] == pytest.approx(m["top1"] - p["top1"]) and p["rate"] == 0.5
    assert p["finetune_epochs"] == 1 and p["baseline_size_bytes"] == m["size_bytes"]

    quant = execute(_job(quant_spec, tmp_path, baseline), run_trial)
    assert quant.status == "done", quant.error
    q = quant.metrics
    assert q["bits"] == 8 and q["params"] == m["params"] and q["param_reduction_ratio"] == 0.0
    torch_m, ort_m = quant.measurements
    assert torch_m["latency"] == {} and "fake quantization" in " ".join(torch_m["notes"])
    assert ort_m["artifact"].endswith(".onnx") and set(ort_m["latency"]) == {"1", "4"}
    assert q["latency_ms"] is None  # primary runtime torch: int8 QDQ does not run there for real
    assert q["size_bytes"] < m["size_bytes"] / 2  # the packed int8 file


def _sleepy(job: TrialJob) -> TrialOutput:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        time.sleep(0.01)
    return TrialOutput(metrics={"top1": 1.0})


def _hungry(job: TrialJob) -> TrialOutput:
    hog = []
    for _ in range(200):
        hog.append(bytearray(10_000_000))
        time.sleep(0.005)
    return TrialOutput(metrics={"top1": float(len(hog))})


def _nan(job: TrialJob) -> TrialOutput:
    return TrialOutput(metrics={"top1": 50.0, "latency_ms_by_batch": {"1": math.nan}})


def _raises(job: TrialJob) -> TrialOutput:
    raise ValueError("bad thing\nsecond line")


def _job_for(fn_name: str, **kw) -> TrialJob:  # type: ignore[no-untyped-def]
    return TrialJob(
        trial_id=1, key="k", name=fn_name, kind="compress", config={}, baseline=None, workdir=".", **kw
    )


def test_time_limit_interrupts_the_trial() -> None:
    t0 = time.perf_counter()
    outcome = execute(_job_for("sleepy", timeout_s=0.3), _sleepy)
    assert outcome.status == "failed"
    assert outcome.error == "ran past the time limit of 0.3 s (limits.trial_timeout_s)"
    assert time.perf_counter() - t0 < 5


def test_memory_limit_interrupts_the_trial() -> None:
    import psutil

    limit_mb = psutil.Process().memory_info().rss / 1e6 + 300
    outcome = execute(_job_for("hungry", memory_mb=limit_mb), _hungry)
    assert outcome.status == "failed"
    assert outcome.error is not None and f"over the limit of {limit_mb:g} MB" in outcome.error


def test_nan_and_exceptions_become_failed_outcomes() -> None:
    nan = execute(_job_for("nan"), _nan)
    assert (nan.status, nan.error) == ("failed", "the trial produced NaN/inf in latency_ms_by_batch.1")
    boom = execute(_job_for("raises"), _raises)
    assert (boom.status, boom.error) == ("failed", "ValueError: bad thing")
    assert boom.traceback is not None and "_raises" in boom.traceback
