"""Jobs in-process: the real start/prune/quantize/measure nodes of a sweep, and isolation of failures."""

from __future__ import annotations

import dataclasses
import math
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sweep_helpers import FAST_METRICS, experiment_yaml

from edgeslim import tasks
from edgeslim.bench import Measurement, count_nonzero_params, count_params
from edgeslim.engine.jobs import Outcome, TrialJob, TrialOutput, execute, non_finite, run_node
from edgeslim.engine.plan import Node
from edgeslim.engine.records import TrialResult
from edgeslim.models import create_model, load_model_from_checkpoint
from edgeslim.sweep import expand, parse_experiment


def run_nodes(nodes: list[Node], tmp_path: Path) -> dict[str, Outcome]:
    """Run ``nodes`` in order, each on its parent's output, as the runner would (one process)."""
    outcomes: dict[str, Outcome] = {}
    for node in nodes:
        parent = outcomes.get(node.depends_on or "")
        given = None
        if parent is not None:
            assert parent.status == "done", parent.error
            given = {
                "artifact": parent.artifact,
                "kind": parent.metrics["artifact_kind"],
                "files": parent.metrics["files"],
            }
        job = TrialJob(
            1, node.key, node.name, node.kind, node.config(), given, str(tmp_path / node.key), threads=1
        )
        outcomes[node.key] = execute(job, run_node)
    return outcomes


def _by_name(nodes: list[Node], outcomes: dict[str, Outcome]) -> dict[str, Outcome]:
    return {n.name: outcomes[n.key] for n in nodes}


@pytest.mark.slow  # ONNX and int8 QDQ exports, fresh-process memory probes: about 20 s
def test_start_prune_int8_and_measure_nodes(tiny_cifar: Path, tmp_path: Path) -> None:
    text = experiment_yaml(
        tiny_cifar,
        methods=[{"prune": {"method": "l1", "ratio": 0.5}}, {"quantize": {"method": "static", "bits": 8}}],
        finetune={"epochs": 1, "lr": 0.01, "batch_size": 32},
        measure={"runtimes": ["torch", "ort"], "batch_sizes": [1, 4], "latency_runs": 3, "warmup": 1},
    )
    nodes = expand(parse_experiment(text))
    out = _by_name(nodes, run_nodes(nodes, tmp_path))
    assert all(o.status == "done" for o in out.values()), {k: o.error for k, o in out.items()}
    start = out["resnet20_tiny/start"]
    assert Path(start.artifact or "").is_file() and "random initial weights" in start.metrics["note"]
    base = out["resnet20_tiny/baseline"]
    assert base.artifact == start.artifact  # a measure step hands its input on
    reference = create_model("resnet20_tiny")
    torch_m, ort_m = (Measurement.from_dict(m) for m in base.measurements)
    assert (torch_m.runtime, ort_m.runtime) == ("torch", "ort")
    assert torch_m.params == ort_m.params == count_params(reference)
    assert torch_m.size_bytes == Path(start.artifact or "").stat().st_size  # the torch runtime's artifact
    assert set(torch_m.latency) == set(ort_m.latency) == {1, 4}
    assert (
        ort_m.size_bytes == Path(str(ort_m.artifact)).stat().st_size and ort_m.extra["export"]["parity"]["ok"]
    )
    assert ort_m.top1 == pytest.approx(torch_m.top1 or 0, abs=2.0)  # accuracy really run on ONNX Runtime
    for m in (torch_m, ort_m):  # memory: a fresh process loading the artifact, not this long-lived one
        assert m.extra["memory"] == "fresh process: runtime + load + one batch of 4"
        assert 0 < m.extra["rss_increase_bytes"] < (m.peak_rss_bytes or 0) < 2e9
    assert base.env["hash"] and base.env["worker_threads"] == 1

    pruned = out["resnet20_tiny/l1 ratio=0.5"]
    model, _ = load_model_from_checkpoint(out["resnet20_tiny/l1 ratio=0.5 [prune]"].artifact or "")
    p_torch = Measurement.from_dict(pruned.measurements[0])
    assert p_torch.params == count_params(model) < (torch_m.params or 0)
    assert p_torch.nonzero_params == count_nonzero_params(model) and (p_torch.macs or 0) < (torch_m.macs or 0)

    quant = out["resnet20_tiny/static bits=8"]
    q_torch, q_ort = (Measurement.from_dict(m) for m in quant.measurements)
    assert q_torch.simulated and q_torch.latency == {} and "simulation" in " ".join(q_torch.notes)
    assert not q_ort.simulated and str(q_ort.artifact).endswith(".onnx") and set(q_ort.latency) == {1, 4}
    assert 0 < (q_ort.params or 0) <= (torch_m.params or 0)  # the same weights in fewer bits (BN folded in)
    assert (
        0 < (q_ort.size_bytes or 0) < (torch_m.size_bytes or 0)
    )  # the int8 file (graph overhead dominates here)


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
    return TrialJob(trial_id=1, key="k", name=fn_name, kind="prune", config={}, input=None, workdir=".", **kw)


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


def test_a_failed_parity_check_is_a_failed_measurement(
    tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outputs that differ: no ORT accuracy or latency credited, no claim of parity, the failure noted."""
    from edgeslim.export import Parity

    def diverging_export(source: Any, fmt: str, *, out: Path, **kw: Any) -> Any:
        Path(out).write_bytes(b"not really onnx" * 10)
        parity = Parity(3.5, 0.4, 64, 1e-3, inputs="real test images", reference="PyTorch model")
        return types.SimpleNamespace(ok=False, result=types.SimpleNamespace(parity=parity))

    monkeypatch.setattr(tasks, "export_task", diverging_export)
    measure = {"metrics": FAST_METRICS, "runtimes": ["ort", "torch"], "batch_sizes": [1]}
    text = experiment_yaml(tiny_cifar, measure={**measure, "latency_runs": 2, "warmup": 0})
    nodes = [n for n in expand(parse_experiment(text)) if n.name.endswith(("start", "baseline"))]
    base = _by_name(nodes, run_nodes(nodes, tmp_path))["resnet20_tiny/baseline"]
    assert base.status == "done", base.error
    ort, torch_m = (Measurement.from_dict(m) for m in base.measurements)
    assert (ort.runtime, ort.latency, ort.top1, ort.peak_rss_bytes) == ("ort", {}, None, None)
    reason = ort.extra["failed"]
    assert reason.startswith(
        "ort: the exported onnx file does not reproduce the model (parity FAILED: max |diff| 3.5"
    )
    assert ort.notes[-1] == f"not measured: {reason}"
    assert set(torch_m.latency) == {1} and torch_m.top1 is not None
    assert base.metrics["runtime"] == "torch" and base.metrics["runtime_errors"] == {"ort": reason}
    result = TrialResult(
        "b", "k", "done", "m", "m", "baseline", "baseline", {}, (ort, torch_m), ("start", "measure")
    )
    row = result.row()
    assert (row["runtime"], row["latency_ms"], row["top1_runtime"]) == ("ort", None, "torch")
    assert row["runtime_errors"] == {"ort": reason}


def test_rows_say_when_accuracy_is_a_simulation() -> None:
    first = (Measurement(model="m", top1=80.0, nonzero_params=100, macs=1000),)
    base = TrialResult(
        "m/baseline", "b", "done", "m", "m", "baseline", "baseline", {}, first, ("start", "measure")
    )
    fake = Measurement(model="m", runtime="torch", precision="int4", simulated=True, top1=71.5, params=100)
    steps = ("start", "quantize", "measure")
    result = TrialResult(
        "m/q", "q", "done", "m", "m", "quantize", "qat", {"bits": 4}, (fake,), steps, baseline=base
    )
    row = result.row()
    assert (row["top1"], row["simulated"], row["top1_drop"]) == (71.5, True, 8.5)
    deployed = fake.replace(simulated=False, runtime="ort", top1=72.0)
    row = dataclasses.replace(result, measurements=(fake, deployed)).row()
    assert (row["top1"], row["simulated"], row["top1_runtime"]) == (72.0, False, "ort")  # the deployed one


def test_nan_and_exceptions_become_failed_outcomes() -> None:
    nan = execute(_job_for("nan"), _nan)
    assert (nan.status, nan.error) == ("failed", "the trial produced NaN/inf in latency_ms_by_batch.1")
    boom = execute(_job_for("raises"), _raises)
    assert (boom.status, boom.error) == ("failed", "ValueError: bad thing")
    assert boom.traceback is not None and "_raises" in boom.traceback
