"""Packed low-bit weight files: exact bit packing, exact sizes, bitwise reload of fake-quant models."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from edgeslim.errors import CheckpointError, ConfigError
from edgeslim.quantization.packing import (
    PACKED_FORMAT,
    load_packed,
    pack_int,
    packed_nbytes,
    save_packed,
    storage_bits,
    unpack_int,
)

modules = pytest.importorskip("edgeslim.quantization.modules")
configs = pytest.importorskip("edgeslim.quantization.configs")
fuse = pytest.importorskip("edgeslim.quantization.fuse")

SPEC = {"name": "small", "kwargs": {}}


@st.composite
def codes(draw: st.DrawFn) -> tuple[torch.Tensor, int, bool]:
    bits = draw(st.sampled_from([2, 3, 4, 5, 8]))
    signed = draw(st.booleans())
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    values = draw(st.lists(st.integers(lo, hi), min_size=0, max_size=67))
    dtype = torch.int8 if signed else torch.uint8
    return torch.tensor(values, dtype=dtype), bits, signed


@settings(max_examples=150, deadline=None)
@given(codes())
def test_pack_unpack_roundtrip(case: tuple[torch.Tensor, int, bool]) -> None:
    values, bits, signed = case
    packed = pack_int(values, bits, signed=signed)
    assert packed.dtype == torch.uint8 and packed.dim() == 1
    assert (
        packed.numel() == packed_nbytes(values.numel(), bits) == -(-values.numel() * storage_bits(bits) // 8)
    )
    out = unpack_int(packed, bits, values.numel(), signed)
    assert out.dtype == (torch.int8 if signed else torch.uint8)
    assert torch.equal(out, values)
    # the range check is optional: the same bytes come out without it
    assert torch.equal(pack_int(values.to(torch.int64), bits), packed)


def test_packing_layout_and_errors() -> None:
    # little-endian within a byte: code i in bits [i*w, (i+1)*w)
    assert pack_int(torch.tensor([1, -2, 0, -1]), 2, signed=True).tolist() == [0b11_00_10_01]
    assert pack_int(torch.tensor([1, 2, 0, 3, 2]), 2, signed=False).tolist() == [0b11_00_10_01, 0b10]
    assert pack_int(torch.tensor([1, 15, 7]), 4).tolist() == [0xF1, 0x07]
    assert [storage_bits(b) for b in range(1, 9)] == [2, 2, 4, 4, 8, 8, 8, 8]
    with pytest.raises(ValueError, match="do not fit"):
        pack_int(torch.tensor([8]), 4, signed=True)
    with pytest.raises(ValueError, match="do not fit"):
        pack_int(torch.tensor([-9, 3]), 4)
    with pytest.raises(ValueError, match="integer"):
        pack_int(torch.tensor([0.5]), 4)
    with pytest.raises(ValueError, match="bits"):
        storage_bits(9)
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_int(torch.zeros(3, dtype=torch.uint8), 4, 7, True)


class SmallQuantNet(nn.Module):
    """conv-BN (folded) - ReLU - conv - BN (kept) - ReLU - linear, with real quantized layers."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        qc = configs.QConfig(
            weight=configs.QuantSpec(bits=bits, symmetric=True, per_channel=True),
            activation=configs.QuantSpec(bits=8, symmetric=False),
        )
        self.conv1 = modules.QuantConv2d(3, 8, 3, padding=1, bias=True, qconfig=qc)
        self.conv2 = modules.QuantConv2d(8, 13, 3, stride=2, padding=1, bias=False, qconfig=qc)
        self.bn2 = nn.BatchNorm2d(13)
        self.fc = modules.QuantLinear(13, 7, qconfig=qc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def make_model(bits: int, seed: int = 0) -> SmallQuantNet:
    torch.manual_seed(seed)
    model = SmallQuantNet(bits)
    mean, var = model.bn2.running_mean, model.bn2.running_var
    assert mean is not None and var is not None
    with torch.no_grad():
        mean.uniform_(-0.1, 0.1)
        var.uniform_(0.5, 2.0)
    model.train()
    with torch.no_grad():  # observe and quantize, then freeze
        model(torch.randn(16, 3, 12, 12))
    for m in model.modules():
        if isinstance(m, modules.FakeQuantize):
            m.freeze()
    return model.eval()


def stored(t: torch.Tensor) -> int:
    """Bytes a dense tensor takes in a packed file: its size, or 0 when every bit is zero."""
    raw = t.contiguous().reshape(-1).view(torch.uint8)
    return raw.numel() if bool(raw.any()) else 0


def quantized_numels(model: nn.Module) -> list[int]:
    return [m.weight.numel() for m in model.modules() if isinstance(m, modules.QUANT_LAYERS)]


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_reload_reproduces_fake_quant_outputs_bitwise(bits: int, tmp_path: Path) -> None:
    model = make_model(bits)
    x = torch.randn(8, 3, 12, 12)
    with torch.no_grad():
        expected = model(x)
    info = save_packed(tmp_path / "m.pt", model, model_spec=SPEC, meta={"quantization": {"bits": bits}})
    assert info.bits == (bits,) and info.quantized_tensors == 3

    raw = torch.load(info.path, weights_only=True)  # plain data, no pickled classes
    assert raw["format"] == PACKED_FORMAT and raw["model"] == SPEC

    state, meta = load_packed(info.path)
    assert meta["quantization"] == {"bits": bits} and meta["model"] == SPEC
    fresh = make_model(bits, seed=1)  # other weights and qparams until loaded
    fresh.load_state_dict(state, strict=True)
    with torch.no_grad():
        assert torch.equal(fresh(x), expected)
        for name, m in model.named_modules():
            if isinstance(m, modules.QUANT_LAYERS):  # weights come back on the grid
                assert torch.equal(state[f"{name}.weight"], m.fake_quantized_weight())
    # everything that is not a quantized weight is stored as it is
    own = model.state_dict()
    for key in ("bn2.running_var", "bn2.num_batches_tracked", "conv1.bias", "conv2.weight_fake_quant.scale"):
        assert torch.equal(state[key], own[key]) and state[key].dtype == own[key].dtype


def test_file_size_is_exact_payload_plus_small_overhead(tmp_path: Path) -> None:
    sizes = {}
    for bits in (2, 4, 8):
        model = make_model(bits)
        info = save_packed(tmp_path / f"m{bits}.pt", model, model_spec=SPEC)
        numels = quantized_numels(model)
        assert info.quantized_params == sum(numels)
        assert info.packed_bytes == sum(-(-n * bits // 8) for n in numels)
        assert info.ideal_bytes == -(-sum(numels) * bits // 8) + info.qparam_bytes + info.other_bytes
        # qparams = per-channel float32 scales (symmetric zero points are all 0: stored as a shape);
        # other = every other state_dict tensor at its own size (all-zero ones cost nothing)
        own = model.state_dict()
        weights = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, modules.QUANT_LAYERS)}
        channels = sum(m.weight.shape[0] for m in model.modules() if isinstance(m, modules.QUANT_LAYERS))
        assert (
            info.qparam_bytes
            == channels * 4
            == sum(stored(v) for k, v in own.items() if "weight_fake_quant." in k)
        )
        assert info.other_bytes == sum(
            stored(v) for k, v in own.items() if k not in weights and "weight_fake_quant." not in k
        )
        assert info.bytes == info.path.stat().st_size
        assert 0 < info.bytes - info.bound_bytes < 4096  # zip headers, entry table, alignment
        sizes[bits] = info.bytes
    # going from 8 to 4 to 2 bits removes exactly the packed bytes (the container does not change size
    # except for the few bytes of the pickled bits/offsets)
    numels = quantized_numels(make_model(8))
    assert abs((sizes[8] - sizes[4]) - sum(n - -(-n // 2) for n in numels)) <= 64
    assert abs((sizes[4] - sizes[2]) - sum(-(-n // 2) - -(-n // 4) for n in numels)) <= 64


class StandInFQ(nn.Module):
    """Duck-typed per-channel quantizer with fixed qparams (what packing relies on, nothing more)."""

    scale: torch.Tensor
    zero_point: torch.Tensor

    def __init__(self, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale)
        self.register_buffer("zero_point", torch.zeros(scale.shape, dtype=torch.int32))
        self.axis, self.qmin, self.qmax = 0, -8, 7

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_channel_affine(x, self.scale, self.zero_point, 0, self.qmin, self.qmax)


def test_stand_in_quantizer(tmp_path: Path) -> None:
    layer = nn.Linear(5, 3)
    layer.weight_fake_quant = StandInFQ(layer.weight.detach().abs().amax(1) / 7)
    info = save_packed(tmp_path / "m.pt", nn.Sequential(layer), model_spec=SPEC)
    assert info.bits == (4,) and info.packed_bytes == 8  # 15 codes, 2 per byte
    state, _ = load_packed(info.path)
    assert torch.equal(state["0.weight"], layer.weight_fake_quant(layer.weight).detach())
    assert torch.equal(state["0.bias"], layer.bias)


def test_disabled_quantizer_and_plain_model(tmp_path: Path) -> None:
    """A disabled quantizer leaves its weight dense; a model without quantizers is stored as is."""
    model = make_model(4)
    model.fc.weight_fake_quant.enabled = False
    info = save_packed(tmp_path / "m.pt", model, model_spec=SPEC)
    assert info.quantized_tensors == 2
    state, _ = load_packed(info.path)
    assert torch.equal(state["fc.weight"], model.fc.weight)
    plain = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    info = save_packed(tmp_path / "plain.pt", plain, model_spec=SPEC)
    state, _ = load_packed(info.path)
    assert info.quantized_tensors == 0
    assert all(torch.equal(state[k], v) for k, v in plain.state_dict().items())


def test_observing_quantizers_warn(tmp_path: Path) -> None:
    model = make_model(4)
    model.conv2.weight_fake_quant.observe = True
    with pytest.warns(UserWarning, match="still observe"):
        save_packed(tmp_path / "m.pt", model, model_spec=SPEC)


def test_bad_files_and_arguments(tmp_path: Path) -> None:
    model = make_model(4)
    with pytest.raises(ConfigError, match="model_spec"):
        save_packed(tmp_path / "m.pt", model, model_spec={"kwargs": {}})
    with pytest.raises(ConfigError, match="not plain data"):
        save_packed(tmp_path / "m.pt", model, model_spec=SPEC, meta={"x": object()})
    assert not (tmp_path / "m.pt").exists()
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an edgeslim packed file"):
        load_packed(tmp_path / "other.pt")
    info = save_packed(tmp_path / "m.pt", model, model_spec=SPEC)
    obj = torch.load(info.path, weights_only=True)
    broken = copy.deepcopy(obj)
    broken["packed"] = broken["packed"][:-5]
    torch.save(broken, tmp_path / "truncated.pt")
    with pytest.raises(CheckpointError, match="past the end"):
        load_packed(tmp_path / "truncated.pt")
    obj["version"] = 99
    torch.save(obj, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version"):
        load_packed(tmp_path / "future.pt")
