"""Dynamic quantization (simulated and torch int8) and 16-bit precision."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from edgeslim.errors import ConfigError
from edgeslim.models import create_model
from edgeslim.quantization import DynamicQuant, HalfPrecision, QuantLinear, quantize
from edgeslim.select import LayerSelection


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run faster on one thread (no per-op sync), also when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


X = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _rel_error(reference: torch.Tensor, approx: torch.Tensor) -> float:
    return float((reference - approx).norm() / reference.norm())


@pytest.fixture(scope="module")
def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return create_model("small_cnn_tiny").eval()


@pytest.mark.parametrize("engine", ["simulated", "torch"])
def test_dynamic_int8_small_cnn_matches_float(small_cnn: nn.Module, engine: str) -> None:
    result = quantize(small_cnn, DynamicQuant(engine=engine))  # type: ignore[arg-type]
    with torch.no_grad():
        y, yq = small_cnn(X), result.model(X)
    assert _rel_error(y, yq) < 0.02  # measured 0.4% (simulated) and 0.9% (torch, 7-bit activations)
    assert result.report.quantized_layers == ["fc1", "fc2"]  # Linear layers only, classifier included
    assert result.report.simulated == (engine == "simulated")
    assert "conv1" not in result.report.skipped_layers  # convs are not candidates of dynamic quantization
    if engine == "simulated":
        fc1 = result.model.fc1
        assert (
            isinstance(fc1, QuantLinear) and fc1.input_fake_quant is not None and fc1.input_fake_quant.dynamic
        )
        assert fc1.weight_fake_quant.axis == 0 and not fc1.weight_fake_quant.observe
    else:
        assert type(result.model.fc1).__module__.startswith("torch.ao.nn.quantized.dynamic")
    assert isinstance(small_cnn.fc1, nn.Linear) and type(small_cnn.fc1) is nn.Linear  # input untouched


def test_dynamic_low_bits_and_selection(small_cnn: nn.Module) -> None:
    result = quantize(small_cnn, DynamicQuant(bits=4), select=LayerSelection(types=("linear",)))
    assert result.report.quantized_layers == ["fc1"]
    assert "include_classifier" in result.report.skipped_layers["fc2"]
    fc1 = result.model.fc1
    codes = fc1.weight / fc1.weight_fake_quant.scale[:, None]
    assert torch.allclose(codes, codes.round(), atol=1e-4) and int(codes.abs().max()) <= 7
    with torch.no_grad():
        assert _rel_error(small_cnn(X), result.model(X)) < 0.2


class _Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(6, 16, batch_first=True)
        self.gru = nn.GRU(16, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        out, _ = self.gru(out)
        return self.head(out[:, -1])


@pytest.mark.parametrize("engine", ["simulated", "torch"])
def test_dynamic_lstm_and_gru(engine: str) -> None:
    torch.manual_seed(0)
    model = _Recurrent().eval()
    x = torch.randn(4, 5, 6)
    result = quantize(model, DynamicQuant(engine=engine))  # type: ignore[arg-type]
    assert result.report.quantized_layers == ["lstm", "gru", "head"]
    with torch.no_grad():
        assert _rel_error(model(x), result.model(x)) < 0.05
    if engine == "simulated":
        w = result.model.lstm.weight_ih_l0
        scale = w.abs().max(dim=1).values / 127
        assert torch.allclose(w / scale[:, None], (w / scale[:, None]).round(), atol=1e-3)


def test_dynamic_needs_linear_layers() -> None:
    with pytest.raises(ConfigError, match="empty"):
        quantize(nn.Sequential(nn.Conv2d(3, 4, 3)), DynamicQuant())


@pytest.mark.parametrize(("dtype", "tolerance"), [("fp16", 0.01), ("bf16", 0.05)])
def test_half_precision_halves_the_state_dict(dtype: str, tolerance: float) -> None:
    torch.manual_seed(0)
    model = create_model("resnet20_tiny").eval()

    def nbytes(m: nn.Module, floating: bool) -> int:
        return sum(
            t.numel() * t.element_size() for t in m.state_dict().values() if t.is_floating_point() == floating
        )

    result = quantize(model, HalfPrecision(dtype=dtype))  # type: ignore[arg-type]
    half = result.model
    assert nbytes(half, True) * 2 == nbytes(model, True)
    assert nbytes(half, False) == nbytes(model, False)  # num_batches_tracked stays int64
    total = nbytes(half, True) + nbytes(half, False)
    assert total < 0.51 * (nbytes(model, True) + nbytes(model, False))
    with torch.no_grad():
        y, yh = model(X), half(X)  # float32 in, float32 out
    assert yh.dtype == torch.float32 and _rel_error(y, yh) < tolerance
    assert not result.report.simulated and result.report.compression == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="select"):
        quantize(model, HalfPrecision(), select=LayerSelection())
