"""Load any artifact and run it; evaluate and benchmark artifacts on their runtimes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeslim import tasks
from edgeslim.bench import count_macs
from edgeslim.checkpoint import save_checkpoint
from edgeslim.errors import ConfigError, ExportError
from edgeslim.export import (
    Parity,
    benchmark_artifact,
    default_runtime,
    export,
    inspect_artifact,
    load_packed_model,
    open_runner,
    runtime_status,
)
from edgeslim.models import create_model

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

X = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_model("resnet20_tiny").eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "r.pt", model, model_name="resnet20_tiny")


def test_default_runtime_policy() -> None:
    assert default_runtime("int8", candidates=["torch", "ort", "openvino"]) == "openvino"  # coverage unknown
    assert default_runtime("int8", candidates=["ort", "openvino"], ort_float_layers=0) == "ort"
    int8 = {"candidates": ["ort", "openvino"], "ort_float_layers": 0}
    assert default_runtime("int8", macs_per_image=40_551_040, **int8) == "ort"  # resnet20: a tie, ORT
    assert default_runtime("int8", macs_per_image=125_485_696, **int8) == "openvino"  # resnet56: 1.29x
    assert default_runtime("int8", candidates=["ort", "openvino"], ort_float_layers=9) == "openvino"
    assert (
        default_runtime("int4", candidates=["ort", "openvino"], batch_size=32, ort_float_layers=0)
        == "openvino"
    )
    assert default_runtime("fp32", candidates=["torch", "ort", "openvino"], batch_size=1) == "ort"
    assert default_runtime("fp32", candidates=["torch", "ort", "openvino"], batch_size=32) == "openvino"
    both = ["ort", "openvino"]
    assert default_runtime("fp32", batch_size=1, macs_per_image=4_400_000_000, candidates=both) == "openvino"
    assert (
        default_runtime("fp32", batch_size=32, macs_per_image=7_700_000, candidates=both) == "ort"
    )  # 0.25 GMAC
    assert default_runtime(
        "int8", batch_size=32, macs_per_image=7_700_000, candidates=both, ort_float_layers=0
    ) == ("openvino")
    assert (
        default_runtime("fp32", batch_size=4, macs_per_image=40_000_000, candidates=["ort", "openvino"])
        == "ort"
    )
    assert default_runtime("fp32", candidates=["ort", "torch"], batch_size=32) == "ort"
    assert default_runtime("fp32", candidates=["torch", "ort", "openvino", "tensorrt"]) == "tensorrt"
    assert default_runtime("fp16", candidates=["torch"]) == "torch"
    with pytest.raises(ExportError, match="no runtime"):
        default_runtime("fp32", candidates=[])
    with pytest.raises(ConfigError, match="precision"):
        default_runtime("bf8", candidates=["ort"])


def test_packed_file_rebuilds_the_fake_quantized_model(tmp_path: Path) -> None:
    from edgeslim.quantization import StaticQuant, quantize, save_packed

    model = create_model("resnet20_tiny").eval()
    config = StaticQuant(bits=4, act_bits=8, calibration_batches=2, scope="all_layers")
    qmodel = quantize(model, config, calibration=[X[:8], X[8:]], example_inputs=X[:2]).model
    spec = {"name": "resnet20_tiny", "kwargs": {"num_classes": 10}}
    path = save_packed(
        tmp_path / "q.pt", qmodel, model_spec=spec, meta={"quantization": config.to_dict()}
    ).path
    info = inspect_artifact(path)
    assert (info.kind, info.precision, info.runtimes, info.simulated) == ("packed", "int4", ("torch",), True)
    rebuilt, meta = load_packed_model(path)
    assert meta["model"] == spec
    with torch.no_grad():
        assert torch.equal(rebuilt(X), qmodel(X))  # bitwise: same grid, same scales
    runner = open_runner(path)
    assert runner.runtime == "torch" and runner.simulated
    with pytest.raises(ConfigError, match="export it first"):
        open_runner(path, "ort")


def test_pruned_sparse_file_and_bad_files(tmp_path: Path) -> None:
    from edgeslim.pruning import MagnitudePruning, prune, save_pruned

    model = create_model("resnet20_tiny").eval()
    prune(model, MagnitudePruning(sparsity=0.8), example_inputs=X[:1])
    saved = save_pruned(
        tmp_path / "s.pt", model, model_spec={"name": "resnet20_tiny", "kwargs": {}}, layout="csr"
    )
    info = inspect_artifact(saved.path)
    assert (info.kind, info.model) == ("checkpoint", "resnet20_tiny")
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(open_runner(saved.path).run(X.numpy())), model(X), atol=1e-5)
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ExportError, match=r"ModelSource.weights with a ModelSource.name"):
        inspect_artifact(tmp_path / "bare.pt")
    with pytest.raises(ExportError, match="does not exist"):
        inspect_artifact(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(ExportError, match="not a readable ONNX file"):
        inspect_artifact(tmp_path / "junk.onnx")


def test_evaluate_artifact_matches_pytorch(checkpoint: Path, tiny_cifar: Path, tmp_path: Path) -> None:
    data = tasks.DataSource(path=str(tiny_cifar), split="test", val_fraction=0.0)
    reference = tasks.evaluate_task(tasks.ModelSource(checkpoint=checkpoint), data, progress=False)
    model, _ = tasks.ModelSource(checkpoint=checkpoint).build()
    onnx = export(model, "onnx", X[:2], out=tmp_path / "m.onnx", check=False)
    for path, runtime in ((onnx.path, "ort"), (onnx.path, "openvino"), (checkpoint, "torch")):
        m = tasks.evaluate_artifact_task(path, data, runtime=runtime, batch_size=64, progress=False)
        assert m.runtime == runtime and m.num_images == 100
        assert m.top1 == pytest.approx(reference.top1, abs=1.0)  # at most one image on a near tie
        assert m.size_bytes == path.stat().st_size
    torch_m = tasks.evaluate_artifact_task(checkpoint, data, progress=False)
    assert torch_m.params == reference.params and torch_m.macs == reference.macs


def test_benchmark_all_runtimes_of_a_checkpoint(checkpoint: Path) -> None:
    result = benchmark_artifact(checkpoint, "all", batch_sizes=(1, 4), warmup=0, runs=2, memory="inline")
    measured = {m.runtime for m in result.measurements}
    assert {"torch", "ort", "openvino"} <= measured
    absent = {name for name, reason in runtime_status().items() if reason is not None}
    assert set(result.failed) == absent and measured.isdisjoint(absent)
    assert set(result.parity) == {"ort", "openvino"} and all(p["ok"] for p in result.parity.values())
    assert set(result.fastest) == {1, 4} and set(result.fastest.values()) <= measured
    assert result.macs_per_image == count_macs(create_model("resnet20_tiny"), (1, 3, 32, 32))
    assert result.default == {
        b: default_runtime(
            "fp32", candidates=sorted(measured), batch_size=b, macs_per_image=result.macs_per_image
        )
        for b in (1, 4)
    }
    for m in result.measurements:
        assert set(m.latency) == {1, 4} and all(s.runs == 2 and s.median_ms > 0 for s in m.latency.values())
        assert m.extra["rss_increase_bytes"] >= 0 and m.peak_rss_bytes and m.size_bytes
    assert result.to_dict()["fastest"].keys() == {"1", "4"}


def test_failed_parity_is_never_benchmarked(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeslim.export.api as api

    def broken(*_: object, **__: object) -> Parity:
        return Parity(max_abs_diff=3.0, top1_agreement=0.5, num_inputs=64, tolerance=1e-3)

    monkeypatch.setattr(api, "compare_outputs", broken)
    result = benchmark_artifact(
        checkpoint, ["torch", "ort"], batch_sizes=(2,), warmup=0, runs=1, memory="inline"
    )
    assert [m.runtime for m in result.measurements] == ["torch"]
    assert result.failed["ort"].startswith("parity FAILED")
    assert result.parity["ort"]["ok"] is False


def test_runtime_choices_for_files(checkpoint: Path, tmp_path: Path) -> None:
    ir = export(
        tasks.ModelSource(checkpoint=checkpoint).build()[0], "openvino", X[:2], out=tmp_path / "m.xml"
    )
    with pytest.raises(ConfigError, match="runs only on openvino"):
        benchmark_artifact(ir.path, "ort")
    result = benchmark_artifact(ir.path, "default", batch_sizes=(1,), warmup=0, runs=1)
    assert [m.runtime for m in result.measurements] == ["openvino"]
    # memory from a fresh process that imports only OpenVINO (never torch): runtime + model + one batch
    m = result.measurements[0]
    assert m.extra["memory"].startswith("fresh process")
    assert m.peak_rss_bytes is not None and 0 < m.extra["rss_increase_bytes"] < m.peak_rss_bytes
    assert m.extra["rss_baseline_bytes"] + m.extra["rss_increase_bytes"] == m.peak_rss_bytes
    with pytest.raises(ConfigError, match=r"benchmark_artifact.runtimes: 'tflite'") as exc:
        benchmark_artifact(ir.path, "tflite")
    assert exc.value.field == "benchmark_artifact.runtimes"
