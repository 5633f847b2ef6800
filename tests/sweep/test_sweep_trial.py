"""Trials in-process: the real baseline/prune/quantize trial, and isolation of failing trials."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from sweep_helpers import FAST_METRICS, experiment_yaml

from edgeslim.bench import Measurement, count_nonzero_params, count_params
from edgeslim.models import create_model, load_model_from_checkpoint
from edgeslim.sweep import TrialJob, TrialOutput, execute, expand, parse_experiment, run_trial
from edgeslim.sweep.trial import non_finite


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


@pytest.mark.slow  # ONNX and int8 QDQ exports, fresh-process memory probes: about 15 s
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
    assert (m["simulated"], m["init"], m["top1_runtime"]) == (False, "random", "torch")
    assert [x["runtime"] for x in base.measurements] == ["torch", "onnxruntime"]
    ort = base.measurements[1]
    assert (
        ort["size_bytes"] == Path(ort["artifact"]).stat().st_size
        and ort["extra"]["onnx_parity_max_abs_diff"] < 1e-3
        and ort["extra"]["onnx_parity"]["ok"]
    )
    # memory: a fresh process loading the artifact on the runtime, not this long-lived process
    for x in base.measurements:
        assert x["extra"]["memory"] == "fresh process: runtime + load + one batch of 4"
        assert 0 < x["extra"]["rss_increase_bytes"] < x["peak_rss_bytes"] < 2e9
    assert m["peak_rss_bytes"] == base.measurements[0]["peak_rss_bytes"]
    assert any("random initial weights" in n for n in base.measurements[0]["notes"])
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
    assert (q["simulated"], q["top1_runtime"]) == (False, "onnxruntime")  # deployed int8 accuracy
    assert q["top1"] == q["top1_deployed"] and q["peak_rss_bytes"] is None  # torch: not measured
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


def _modest(job: TrialJob) -> TrialOutput:
    block = bytearray(20_000_000)  # 20 MB, held while the watchdog looks
    time.sleep(0.3)
    return TrialOutput(metrics={"top1": float(len(block) > 0)})


def test_memory_limit_interrupts_the_trial() -> None:
    outcome = execute(_job_for("hungry", memory_mb=300), _hungry)
    assert outcome.status == "failed"
    assert outcome.error is not None and "over the limit of 300 MB" in outcome.error
    assert "growth of the worker process's resident memory since the trial started" in outcome.error


def test_the_memory_limit_counts_only_what_the_trial_adds() -> None:
    """A long-lived worker already holds earlier trials' memory; that must not fail the next trial."""
    import psutil

    held_mb = psutil.Process().memory_info().rss / 1e6  # torch and earlier tests: hundreds of MB
    outcome = execute(_job_for("modest", memory_mb=held_mb / 4), _modest)
    assert held_mb / 4 > 40 and outcome.status == "done", outcome.error


def test_non_finite_finds_numpy_numbers_lists_and_measurements() -> None:
    metrics = {
        "a": np.float32("nan"),
        "b": [1.0, math.inf, {"c": np.float64(-np.inf)}],
        "fine": [np.int64(3), True, 10**400, "nan", None, np.float16(2.0)],
    }
    assert non_finite(metrics) == ["a", "b[1]", "b[2].c"]
    assert non_finite(Measurement(model="m", top1=math.nan), "m") == ["m.top1"]
    assert non_finite((1.0, 2.0)) == [] and non_finite(np.float32(1.5)) == []

    def bad_measurement(job: TrialJob) -> TrialOutput:
        return TrialOutput(
            metrics={"top1": 50.0},
            measurements=[
                {"runtime": "torch"},
                {"runtime": "ort", "latency": {"1": {"median_ms": math.nan}}},
            ],
        )

    outcome = execute(_job_for("bad"), bad_measurement)
    assert (outcome.status, outcome.error) == (
        "failed",
        "the trial produced NaN/inf in measurements[1].latency.1.median_ms",
    )
    numpy_nan = execute(_job_for("np"), lambda job: TrialOutput(metrics={"top1": np.float32("nan")}))
    assert (numpy_nan.status, numpy_nan.error) == ("failed", "the trial produced NaN/inf in top1")


def test_a_failed_onnx_parity_check_is_a_failed_measurement(
    tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outputs that differ: no ORT latency credited, no claim of parity, the failure noted."""
    import edgeslim.export
    from edgeslim.export import ExportResult, Parity

    def diverging_export(model, format, example, *, out, **kw):  # type: ignore[no-untyped-def]
        Path(out).write_bytes(b"not really onnx" * 10)
        inputs = kw["parity_inputs"]
        assert (kw["parity_source"], tuple(inputs.shape)) == ("random", (64, *example.shape[1:]))
        parity = Parity(3.5, 0.4, int(inputs.shape[0]), 1e-3, inputs="random", reference="PyTorch model")
        return ExportResult("onnx", "fp32", Path(out), (Path(out),), 150, "ort", parity, "fake", 0.0)

    monkeypatch.setattr(edgeslim.export, "export", diverging_export)
    measure = {"metrics": FAST_METRICS, "runtimes": ["onnxruntime", "torch"], "batch_sizes": [1]}
    text = experiment_yaml(tiny_cifar, measure={**measure, "latency_runs": 2, "warmup": 0})
    base = execute(_job(expand(parse_experiment(text))[0], tmp_path), run_trial)
    assert base.status == "done", base.error
    ort, torch_m = base.measurements
    assert (ort["runtime"], ort["latency"], ort["top1"], ort["peak_rss_bytes"]) == (
        "onnxruntime",
        {},
        None,
        None,
    )
    reason = ort["extra"]["failed"]
    assert reason.startswith(
        "the exported ONNX file does not reproduce the model (parity FAILED: max |diff| 3.5"
    )
    assert "on 64 inputs (random)" in reason and ort["notes"][-1] == f"not measured: {reason}"
    assert not any("parity" in note and "passed" in note for note in ort["notes"])
    assert ort["extra"]["onnx_parity"]["ok"] is False and ort["size_bytes"] == 150
    assert set(torch_m["latency"]) == {"1"} and torch_m["top1"] == base.metrics["top1"]
    m = base.metrics
    assert (m["runtime"], m["latency_ms"], m["latency_ms_by_batch"]) == ("onnxruntime", None, {})
    assert m["runtime_errors"] == {"onnxruntime": reason}


def test_metrics_say_when_accuracy_is_a_simulation(tiny_cifar: Path, tmp_path: Path) -> None:
    from edgeslim.sweep.trial import _metrics

    spec = expand(parse_experiment(experiment_yaml(tiny_cifar)))[1]
    baseline = {"artifact": "b.pt", "metrics": {"top1": 80.0, "nonzero_params": 100, "macs": 1000}}
    job = _job(spec, tmp_path, baseline)
    fake = Measurement(model="m", runtime="torch", precision="int4", simulated=True, top1=71.5, params=100)
    metrics = _metrics(job, fake, [fake.replace(top1=None)], rate=None, input_size=(3, 32, 32))
    assert (metrics["top1"], metrics["simulated"], metrics["top1_drop"]) == (71.5, True, 8.5)
    real = fake.replace(simulated=False, runtime="onnxruntime")
    assert _metrics(job, real, [real], rate=None, input_size=(3, 32, 32))["simulated"] is False


def test_nan_and_exceptions_become_failed_outcomes() -> None:
    nan = execute(_job_for("nan"), _nan)
    assert (nan.status, nan.error) == ("failed", "the trial produced NaN/inf in latency_ms_by_batch.1")
    boom = execute(_job_for("raises"), _raises)
    assert (boom.status, boom.error) == ("failed", "ValueError: bad thing")
    assert boom.traceback is not None and "_raises" in boom.traceback
