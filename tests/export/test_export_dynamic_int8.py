"""A dynamic-int8 packed file runs on torch's real int8 kernels (bench, eval); other bit widths stay simulated."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgeslim.export import benchmark_artifact, inspect_artifact, load_packed_model, open_runner
from edgeslim.models import create_model
from edgeslim.quantization import DynamicQuant, QuantLinear, quantize, save_packed
from edgeslim.quantization.dynamic import REAL_INT8_NOTE, to_torch_dynamic
from edgeslim.quantization.packing import quantized_weights

X = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(5))
SPEC = {"name": "small_cnn_tiny", "kwargs": {"num_classes": 10}}


def _packed(tmp_path: Path, bits: int) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    model = create_model("small_cnn_tiny").eval()
    config = DynamicQuant(bits=bits)
    qmodel = quantize(model, config).model.eval()
    path = save_packed(
        tmp_path / f"dyn{bits}.pt", qmodel, model_spec=SPEC, meta={"quantization": config.to_dict()}
    ).path
    return path, qmodel


def _dynamic_linears(model: nn.Module) -> list[nn.Module]:
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    return [m for m in model.modules() if isinstance(m, dynamic)]


def test_dynamic_int8_file_runs_real_int8_kernels(tmp_path: Path) -> None:
    path, qmodel = _packed(tmp_path, 8)
    info = inspect_artifact(path)
    assert (info.kind, info.precision, info.simulated) == ("packed", "int8", False)
    runner = open_runner(path, "torch")
    assert runner.runtime == "torch" and not runner.simulated
    assert runner.notes == (REAL_INT8_NOTE,)
    assert "simulated" not in runner.describe()
    real = _dynamic_linears(runner.model)
    assert len(real) == 2 and not any(isinstance(m, QuantLinear) for m in runner.model.modules())
    # the int8 weight codes are the file's own, not re-observed by torch
    codes = {q.quantizer.removesuffix(".weight_fake_quant"): q.codes for q in quantized_weights(qmodel)}
    for name, module in runner.model.named_modules():
        if name in codes:
            assert torch.equal(module.weight().int_repr().to(torch.int32), codes[name]), name
    with torch.no_grad():
        expected = qmodel(X)
    got = torch.from_numpy(runner.run(X.numpy()))
    assert torch.allclose(got, expected, atol=0.05 * float(expected.abs().max()))
    assert torch.equal(got.argmax(1), expected.argmax(1))


def test_loading_for_export_stays_simulated(tmp_path: Path) -> None:
    path, qmodel = _packed(tmp_path, 8)
    model, _ = load_packed_model(path)  # what export converts: the fake-quantized model
    assert any(isinstance(m, QuantLinear) for m in model.modules()) and not _dynamic_linears(model)
    with torch.no_grad():
        assert torch.equal(model(X), qmodel(X))


def test_low_bit_dynamic_file_is_simulated(tmp_path: Path) -> None:
    path, qmodel = _packed(tmp_path, 4)
    info = inspect_artifact(path)
    assert (info.precision, info.simulated) == ("int4", True)
    runner = open_runner(path, "torch")
    assert runner.simulated and runner.notes == () and "simulated" in runner.describe()
    with torch.no_grad():
        assert torch.equal(torch.from_numpy(runner.run(X.numpy())), qmodel(X))
    with pytest.raises(Exception, match="bits must be 8"):
        to_torch_dynamic(qmodel, DynamicQuant(bits=4))


def test_bench_says_real_int8(tmp_path: Path) -> None:
    path, _ = _packed(tmp_path, 8)
    result = benchmark_artifact(path, "torch", batch_sizes=(2,), warmup=1, runs=2, memory="inline")
    (m,) = result.measurements
    assert m.runtime == "torch" and m.precision == "int8" and not m.simulated
    assert REAL_INT8_NOTE in m.notes
