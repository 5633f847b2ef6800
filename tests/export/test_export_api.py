"""export(model, format, ...): every format on its runtime, parity-checked, failures reported as failed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeslim.bench import count_params
from edgeslim.errors import ConfigError, ExportError
from edgeslim.export import (
    Parity,
    compare_outputs,
    default_tolerance,
    export,
    inspect_artifact,
    litert_status,
    open_runner,
    tensorrt_status,
)
from edgeslim.models import create_model

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

X = torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet20_tiny").eval()


@pytest.mark.parametrize(
    ("fmt", "precision", "name", "kind", "runtime"),
    [
        ("onnx", "fp32", "m.onnx", "onnx", "ort"),
        ("openvino", "fp32", "m.xml", "openvino", "openvino"),
        ("openvino", "fp16", "h.xml", "openvino", "openvino"),
        ("pt2", "fp32", "m.pt2", "exported_program", "torch"),
        ("torchscript", "fp32", "m.ts", "torchscript", "torch"),
    ],
)
def test_float_formats_match_pytorch(
    model: torch.nn.Module, fmt: str, precision: str, name: str, kind: str, runtime: str, tmp_path: Path
) -> None:
    result = export(model, fmt, X[:2], out=tmp_path / name, precision=precision, parity_inputs=X)
    assert result.status == "ok" and result.ok and result.runtime == runtime
    parity = result.parity
    assert parity is not None and parity.num_inputs == 24
    # fp32 artifacts reorder float arithmetic only; fp16 weights round to 11-bit mantissas
    assert parity.max_abs_diff <= (1e-4 if precision == "fp32" else 5e-2), parity
    assert parity.top1_agreement == 1.0
    info = inspect_artifact(result.path)
    assert (info.kind, info.precision) == (kind, precision)
    assert all(f.is_file() for f in result.files)
    on_disk = sum(f.stat().st_size for f in result.files)
    assert result.size_bytes == on_disk == info.size_bytes
    if fmt == "openvino":  # the .bin holds the weights: 4 bytes each in fp32, 2 in fp16
        per_weight = result.path.with_suffix(".bin").stat().st_size / count_params(model)
        assert per_weight == pytest.approx(4.0 if precision == "fp32" else 2.0, rel=0.05)
    # a dynamic batch: another batch size than the export example runs too
    assert open_runner(result.path, runtime, trust_artifact=True).run(X[:5].numpy()).shape == (5, 10)


def test_int8_on_ort_and_openvino(model: torch.nn.Module, tmp_path: Path) -> None:
    """int8 from calibration batches (static PTQ inside export) and from an already quantized model."""
    from edgeslim.quantization import StaticQuant, quantize

    calibration = [X[i : i + 8] for i in range(0, 24, 8)]
    with pytest.warns(UserWarning, match="calibration yielded 3"):
        onnx = export(
            model,
            "onnx",
            X[:2],
            out=tmp_path / "q.onnx",
            precision="int8",
            calibration=calibration,
            parity_inputs=X,
        )
    config = StaticQuant(bits=8, calibration_batches=3, scope="all_layers")
    qmodel = quantize(model, config, calibration=calibration, example_inputs=X[:2]).model
    ir = export(qmodel, "openvino", X[:2], out=tmp_path / "q.xml", parity_inputs=X)  # fp32 asked: int8 given
    assert any("fake-quantized: exported as int8" in n for n in ir.notes)
    for result in (onnx, ir):
        assert result.precision == "int8" and result.ok, result.parity
        assert result.parity is not None and result.parity.reference == "fake-quantized model"
        assert result.parity.max_abs_diff <= result.parity.tolerance
        assert inspect_artifact(result.path).precision == "int8"
    assert any("agreement of the fake-quantized model with the FP32 model" in n for n in onnx.notes)
    # every conv/linear weight is stored as one int8 byte
    import onnx as onnx_lib

    graph = onnx_lib.load(str(onnx.path)).graph
    int8 = sum(
        int(np.prod(t.dims))
        for t in graph.initializer
        if t.data_type == onnx_lib.TensorProto.INT8 and len(t.dims) > 1
    )
    layers = (torch.nn.Conv2d, torch.nn.Linear)
    assert int8 == sum(m.weight.numel() for m in model.modules() if isinstance(m, layers))


def test_int8_needs_a_quantized_model_or_calibration(model: torch.nn.Module, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="calibration"):
        export(model, "onnx", X[:2], out=tmp_path / "q.onnx", precision="int8")
    assert not (tmp_path / "q.onnx").exists()


def test_failed_parity_is_reported_failed(model: torch.nn.Module, tmp_path: Path) -> None:
    result = export(model, "onnx", X[:2], out=tmp_path / "m.onnx", parity_inputs=X, tolerance=0.0)
    assert result.parity is not None and result.parity.max_abs_diff > 0.0
    assert result.status == "failed" and not result.ok
    assert result.to_dict()["ok"] is False and result.to_dict()["status"] == "failed"


def test_parity_rules() -> None:
    expected = np.array([[4.0, 1.0, 0.0], [0.0, 2.0, 1.0]], np.float32)
    assert default_tolerance("fp32", expected) == pytest.approx((1e-3 + 4e-4, 0.99))
    assert default_tolerance("int8", expected) == pytest.approx((0.4, 0.95))
    same = compare_outputs(expected, expected + 1e-4)
    assert same.ok and same.top1_agreement == 1.0
    flipped = compare_outputs(expected, expected[:, ::-1].copy(), precision="int8")
    assert not flipped.ok and flipped.top1_agreement == 0.5  # row 2 keeps its arg-max (the middle)
    nan = compare_outputs(expected, np.full_like(expected, np.nan))
    assert not nan.ok and nan.max_abs_diff == float("inf")
    assert not Parity(0.0, 0.98, 100, 1.0).ok and Parity(0.0, 0.98, 100, 1.0, min_agreement=0.95).ok
    with pytest.raises(ExportError, match="shape"):
        compare_outputs(expected, expected[:1])


@pytest.mark.parametrize(
    ("fmt", "precision", "name", "needle"),
    [
        ("tflite", "fp32", "m.tflite", "export.format must be one of"),
        ("onnx", "fp32", "m.xml", "export.out for onnx must end in .onnx"),
        ("pt2", "fp16", "m.pt2", "not available for pt2"),
        ("onnx", "fp16", "m.onnx", "not available for onnx"),
    ],
)
def test_bad_arguments(
    model: torch.nn.Module, fmt: str, precision: str, name: str, needle: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=needle):
        export(model, fmt, X[:2], out=tmp_path / name, precision=precision)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(
    tensorrt_status() is None, reason="TensorRT and CUDA are present: the GPU test runs instead"
)
def test_tensorrt_without_cuda_is_a_clear_error(model: torch.nn.Module, tmp_path: Path) -> None:
    reason = tensorrt_status()
    assert reason is not None and ("TensorRT" in reason or "CUDA" in reason)
    with pytest.raises(ExportError, match="cannot build a TensorRT engine here"):
        export(model, "tensorrt", X[:2], out=tmp_path / "m.engine", precision="fp16")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(tensorrt_status() is not None, reason=f"needs CUDA and TensorRT: {tensorrt_status()}")
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tensorrt_engine_parity(model: torch.nn.Module, precision: str, tmp_path: Path) -> None:
    calibration = [X[i : i + 8] for i in range(0, 24, 8)]
    result = export(
        model,
        "tensorrt",
        X[:2],
        out=tmp_path / "m.engine",
        precision=precision,
        calibration=calibration,
        parity_inputs=X,
    )
    assert result.ok, result.parity
    assert inspect_artifact(result.path).precision == precision
    assert open_runner(result.path, "tensorrt").run(X[:3].numpy()).shape == (3, 10)


@pytest.mark.skipif(litert_status() is not None, reason=f"optional: {litert_status()}")
def test_litert_flatbuffer_parity(model: torch.nn.Module, tmp_path: Path) -> None:
    result = export(model, "litert", X[:2], out=tmp_path / "m.tflite", parity_inputs=X)
    assert result.ok, result.parity
    info = inspect_artifact(result.path)
    assert (info.kind, info.runtimes) == ("litert", ("litert",))
    assert open_runner(result.path).run(X[:3].numpy()).shape == (3, 10)  # batch-1 file, fed slice by slice


def test_litert_missing_is_a_clear_error(
    model: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "litert_torch", None)
    monkeypatch.setattr(
        "importlib.util.find_spec", lambda name, *a: None if name == "litert_torch" else object()
    )
    with pytest.raises(ExportError, match="pip install litert-torch"):
        export(model, "litert", X[:2], out=tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []
