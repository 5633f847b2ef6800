"""Quantization numerics: round-trip error bounds, integer ranges, the STE and LSQ gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeslim.errors import ConfigError
from edgeslim.quantization import (
    QAT,
    DynamicQuant,
    FakeQuantize,
    HalfPrecision,
    QConfig,
    QuantSpec,
    StaticQuant,
    dequantize,
    fake_quantize,
    lsq_fake_quantize,
    qparams,
    quant_range,
    quantize_tensor,
)
from edgeslim.quantization.fake_quant import lsq_grad_scale

FAST = settings(max_examples=40, deadline=None)


def _data(seed: int, per_channel: bool, spread: float, offset: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (4, 3, 5) if per_channel else (60,)
    x = torch.randn(shape, generator=g) * spread + offset
    if per_channel:  # channels with very different ranges
        x = x * torch.tensor([0.01, 1.0, 7.0, 100.0]).reshape(4, 1, 1)
    return x


def _range(x: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if per_channel:
        flat = x.reshape(x.shape[0], -1)
        return flat.min(dim=1).values, flat.max(dim=1).values
    return x.min(), x.max()


@FAST
@given(
    bits=st.integers(2, 8),
    symmetric=st.booleans(),
    per_channel=st.booleans(),
    seed=st.integers(0, 10_000),
    spread=st.floats(1e-3, 1e3),
    offset=st.floats(-3.0, 3.0),
)
def test_round_trip_error_is_at_most_half_a_step(
    bits: int, symmetric: bool, per_channel: bool, seed: int, spread: float, offset: float
) -> None:
    x = _data(seed, per_channel, spread, offset * spread)
    lo, hi = _range(x, per_channel)
    scale, zp, qmin, qmax = qparams(lo, hi, bits, symmetric)
    axis = 0 if per_channel else None
    q = quantize_tensor(x, scale, zp, qmin, qmax, axis)
    assert int(q.min()) >= qmin and int(q.max()) <= qmax
    bound = (scale / 2 * (1 + 1e-5)).reshape(-1, 1, 1) if per_channel else scale / 2 * (1 + 1e-5)
    x_hat = dequantize(q, scale, zp, axis)
    assert bool(((x - x_hat).abs() <= bound + 1e-12).all())
    # torch's fused fake-quant op obeys the same bound
    fq = fake_quantize(x, scale, zp, qmin, qmax, axis)
    assert bool(((x - fq).abs() <= bound + 1e-12).all())


@FAST
@given(bits=st.integers(2, 8), seed=st.integers(0, 10_000), per_channel=st.booleans())
def test_symmetric_uses_the_restricted_range_and_zero_point_zero(
    bits: int, seed: int, per_channel: bool
) -> None:
    x = _data(seed, per_channel, 1.0, 0.0)
    lo, hi = _range(x, per_channel)
    scale, zp, qmin, qmax = qparams(lo, hi, bits, True)
    assert (qmin, qmax) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert bool((zp == 0).all())
    assert torch.allclose(scale, torch.maximum(-lo, hi) / (2 ** (bits - 1) - 1))
    q = quantize_tensor(x, scale, zp, qmin, qmax, 0 if per_channel else None)
    assert int(q.abs().max()) <= 2 ** (bits - 1) - 1  # -2^(b-1) is never used inside the range


@FAST
@given(bits=st.integers(2, 8), lo=st.floats(-50, 50), width=st.floats(1e-3, 100))
def test_asymmetric_range_contains_zero_exactly(bits: int, lo: float, width: float) -> None:
    scale, zp, qmin, qmax = qparams(lo, lo + width, bits, False)
    assert (qmin, qmax) == (0, 2**bits - 1)
    assert qmin <= int(zp) <= qmax
    zero = torch.zeros(3)
    assert torch.equal(fake_quantize(zero, scale, zp, qmin, qmax), zero)


def test_qparams_hand_computed() -> None:
    scale, zp, qmin, qmax = qparams(-1.0, 3.0, 8, False)
    assert (qmin, qmax) == (0, 255)
    assert float(scale) == pytest.approx(4.0 / 255)
    assert int(zp) == round(1.0 / (4.0 / 255))  # 64
    scale, zp, qmin, qmax = qparams(-2.0, 1.0, 4, True)
    assert (qmin, qmax) == (-8, 7) and float(scale) == pytest.approx(2.0 / 7) and int(zp) == 0
    scale, _, _, _ = qparams(0.0, 0.0, 8, False)  # an all-zero tensor: no division by zero
    assert float(scale) > 0


def test_quant_range_rejects_bits_outside_2_to_8() -> None:
    for bits in (1, 9):
        with pytest.raises(ConfigError, match="bits"):
            quant_range(bits, True)


@pytest.mark.parametrize("per_channel", [False, True])
def test_ste_gradient_is_one_inside_and_zero_outside(per_channel: bool) -> None:
    scale = torch.tensor([0.1, 0.2]) if per_channel else torch.tensor(0.1)
    zp = torch.zeros_like(scale, dtype=torch.int32)
    qmin, qmax = quant_range(4, True)  # range [-0.8, 0.7] (channel 0), [-1.6, 1.4] (channel 1)
    x = torch.tensor(
        [[-5.0, -0.55, 0.0, 0.33, 0.69, 3.0], [-5.0, -1.2, 0.0, 0.5, 1.3, 3.0]], requires_grad=True
    )
    out = fake_quantize(x, scale, zp, qmin, qmax, axis=0 if per_channel else None)
    out.sum().backward()
    expected = torch.tensor([[0.0, 1, 1, 1, 1, 0], [0.0, 1, 1, 1, 1, 0]])
    if not per_channel:  # one range [-0.8, 0.7] for both rows
        expected[1] = torch.tensor([0.0, 0, 1, 1, 0, 0])
    assert x.grad is not None
    assert torch.equal(x.grad, expected)


def test_lsq_gradients_match_the_paper() -> None:
    scale = torch.tensor(0.5, requires_grad=True)
    zp = torch.tensor(0, dtype=torch.int32)
    qmin, qmax = quant_range(4, True)  # [-8, 7] -> clipped above 3.5, below -4.0
    x = torch.tensor([0.3, -1.1, 10.0, -10.0], requires_grad=True)
    out = lsq_fake_quantize(x, scale, zp, qmin, qmax, grad_scale=1.0)
    assert torch.allclose(out, fake_quantize(x.detach(), scale.detach(), zp, qmin, qmax))
    out.sum().backward()
    v = x.detach() / 0.5
    inside = torch.round(v[:2]) - v[:2]  # round(x/s) - x/s inside the range
    expected = float(inside.sum()) + qmax + qmin  # + q_max - z (clipped above) + q_min - z (below)
    assert scale.grad is not None and float(scale.grad) == pytest.approx(expected, abs=1e-5)
    assert x.grad is not None and torch.equal(x.grad, torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_lsq_default_gradient_scale() -> None:
    x = torch.randn(8, 4)
    assert lsq_grad_scale(x, 127) == pytest.approx(1 / (32 * 127) ** 0.5)
    assert lsq_grad_scale(x, 127, axis=0) == pytest.approx(1 / (4 * 127) ** 0.5)


def test_learnable_fake_quantize_trains_its_scale() -> None:
    fq = FakeQuantize(4, symmetric=True, learnable=True)
    assert isinstance(fq.scale, torch.nn.Parameter)
    x = torch.randn(256) * 3
    fq(x)  # first batch: the observer initializes the scale, then observing stops
    assert fq.initialized and not fq.observe
    loss = (fq(x) - x).pow(2).sum()
    loss.backward()
    assert fq.scale.grad is not None and float(fq.scale.grad.abs()) > 0
    assert set(fq.state_dict()) == {"scale", "zero_point"}
    fq.set_learnable(False)
    assert not isinstance(fq.scale, torch.nn.Parameter) and "scale" in dict(fq.named_buffers())


def test_fake_quantize_module_flags() -> None:
    fq = FakeQuantize(8, symmetric=False)
    x = torch.linspace(-1, 3, 101)
    fq.enabled = False
    assert torch.equal(fq(x), x)  # calibration: observe only
    assert fq.observer.has_data and not fq.initialized
    fq.freeze()
    assert fq.initialized and not fq.observe and fq.enabled
    scale, zp, _, _ = qparams(-1.0, 3.0, 8, False)
    assert torch.equal(fq.scale, scale) and torch.equal(fq.zero_point, zp)
    assert fq.storage_dtype == torch.uint8
    assert torch.equal(fq.dequantize(fq.quantize(x)), fq(x))


def test_per_channel_qparams_load_into_a_placeholder() -> None:
    src = FakeQuantize(8, True, axis=0)
    src(torch.randn(5, 3))
    dst = FakeQuantize(8, True, axis=0)  # channel count unknown: 0-length placeholder
    dst.load_state_dict(src.state_dict())
    assert torch.equal(dst.scale, src.scale) and dst.scale.shape == (5,) and dst.initialized


def test_configs_validate_and_round_trip() -> None:
    with pytest.raises(ConfigError, match=r"StaticQuant\.bits"):
        StaticQuant(bits=1)
    with pytest.raises(ConfigError, match=r"QAT\.act_bits"):
        QAT(act_bits=9)
    with pytest.raises(ConfigError, match="observer"):
        StaticQuant(observer="moving_average")
    with pytest.raises(ConfigError, match="observer"):
        StaticQuant(observer="histogram")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="engine"):
        DynamicQuant(bits=4, engine="torch")
    with pytest.raises(ConfigError, match="dtype"):
        HalfPrecision(dtype="fp8")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="calibration_batches"):
        StaticQuant(calibration_batches=0)
    for config in (
        StaticQuant(bits=4, scope="all_layers", observer="entropy"),
        QAT(weight_bits=4),
        DynamicQuant(),
    ):
        assert type(config).from_yaml(config.to_yaml()) == config
    qconfig = QConfig(weight=QuantSpec(bits=4, per_channel=True), activation=None)
    assert QConfig.from_dict(qconfig.to_dict()) == qconfig
    # defaults: int8 symmetric per-channel weights, asymmetric activations (ONNX Runtime's fast path)
    default = StaticQuant()
    assert default.symmetric and default.per_channel and not default.act_symmetric and default.bits == 8
