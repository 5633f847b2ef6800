"""Low-bit weights on disk: integer codes packed several to a byte, plus their scales.

Fake quantization keeps float32 weights in memory, so a 4-bit model saved as a state_dict is as big
as the float one. :func:`save_packed` writes the integer codes of every fake-quantized weight packed
into bytes (2 bits: 4 codes per byte, 4 bits: 2 per byte, 8 bits: 1), and everything else (biases,
BatchNorm, the quantizers' scales and zero points, other buffers) exactly as it is.

Storage widths are 2, 4 and 8 bits, so a byte never holds a split code: 3-bit codes are stored in 4
bits and 5..7-bit codes in 8 (the file is then as big as a 4- or 8-bit one; the values keep their
own range). Codes are little-endian within a byte (code ``i`` of a byte in its lowest bits) and
signed codes are two's complement in their storage width.

The file is a plain dict that ``torch.load(weights_only=True)`` reads. Its tensors are gathered in
two byte blobs and the table describing them is zlib-compressed JSON, because torch.save's cost per
tensor (~200 bytes) and per pickled table entry (~120 bytes) would otherwise add 10-40% to a 2-bit
CIFAR ResNet::

    {"format": "edgeslim.packed", "version": 1, "model": {"name", "kwargs"}, "meta": {...},
     "packed": uint8 tensor,   # all packed codes, one byte-aligned segment per weight
     "dense": uint8 tensor,    # every other tensor's raw bytes, 8-byte aligned
     "table": uint8 tensor}    # zlib(JSON list of entries), in state_dict order:
        {"name", "kind": "packed"|"dense"|"aux", "dtype", "shape", "offset", "nbytes",
         dense/aux: "zeros": true for an all-zero tensor (stored as its shape only),
         packed only: "bits", "storage_bits", "signed", "axis", "scale", "zero_point"}

Read the table with ``json.loads(zlib.decompress(obj["table"].numpy().tobytes()))``.

A packed entry names the entries holding its scale and zero point (the quantizer's own buffers, so
they are stored once); "aux" entries hold qparams that are not in the state_dict and are not
returned. :func:`load_packed` gives back a state_dict whose weights are ``(q - z) * s``: loading it
into the fake-quantized model reproduces its outputs bitwise (fake quantization of an on-grid
weight is the identity).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from edgeslim.checkpoint import find_unloadable, read_file
from edgeslim.errors import CheckpointError, ConfigError
from edgeslim.io import atomic_write

PACKED_FORMAT = "edgeslim.packed"
PACKED_VERSION = 1
STORAGE_BITS = (2, 4, 8)
_ALIGN = 8  # dense tensors start at multiples of 8 bytes so .view(dtype) works for every dtype

_DTYPES: dict[str, torch.dtype] = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.bool,
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
    )
}

__all__ = [
    "PackedFileInfo",
    "QuantParams",
    "fake_quant_params",
    "is_fake_quant",
    "load_packed",
    "pack_int",
    "packed_nbytes",
    "quantized_weights",
    "save_packed",
    "still_observing",
    "storage_bits",
    "unpack_int",
]


# ---------------------------------------------------------------------------------------------
# bit packing


def storage_bits(bits: int) -> int:
    """Bits a code of ``bits`` bits occupies on disk: 2, 4 or 8 (1..2 -> 2, 3..4 -> 4, 5..8 -> 8)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an integer from 1 to 8, got {bits!r}")
    return next(s for s in STORAGE_BITS if bits <= s)


def packed_nbytes(numel: int, bits: int) -> int:
    """Bytes :func:`pack_int` produces for ``numel`` codes of ``bits`` bits."""
    per_byte = 8 // storage_bits(bits)
    return -(-int(numel) // per_byte)


def _code_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def pack_int(values: Tensor, bits: int, *, signed: bool | None = None) -> Tensor:
    """Pack integer codes into a 1-d uint8 tensor, ``8 // storage_bits(bits)`` codes per byte.

    ``values`` (any integer dtype and shape; flattened) must fit ``bits`` bits, signed or unsigned;
    ``signed`` makes the check exact. The last byte is padded with zero bits.
    """
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise ValueError(f"pack_int needs integer codes, got {values.dtype}")
    sbits = storage_bits(bits)
    flat = values.detach().reshape(-1).to("cpu", torch.int32)
    if flat.numel():
        lo, hi = int(flat.min()), int(flat.max())
        if signed is None:
            ok = lo >= -(2 ** (bits - 1)) and hi <= 2**bits - 1 and not (lo < 0 and hi > 2 ** (bits - 1) - 1)
            allowed = f"[{-(2 ** (bits - 1))}, {2 ** (bits - 1) - 1}] or [0, {2**bits - 1}]"
        else:
            qmin, qmax = _code_range(bits, signed)
            ok = qmin <= lo and hi <= qmax
            allowed = f"[{qmin}, {qmax}]"
        if not ok:
            raise ValueError(f"codes in [{lo}, {hi}] do not fit {bits} bits {allowed}")
    fields = (flat & (2**sbits - 1)).to(torch.uint8)
    per_byte = 8 // sbits
    if per_byte == 1:
        return fields.clone()
    pad = (-flat.numel()) % per_byte
    if pad:
        fields = torch.cat([fields, fields.new_zeros(pad)])
    shifts = torch.arange(per_byte, dtype=torch.uint8) * sbits
    return (fields.view(-1, per_byte) << shifts).sum(dim=1, dtype=torch.int32).to(torch.uint8)


def unpack_int(packed: Tensor, bits: int, numel: int, signed: bool) -> Tensor:
    """Exact inverse of :func:`pack_int`: ``numel`` codes, int8 when ``signed`` else uint8 (1-d)."""
    if packed.dtype != torch.uint8 or packed.dim() != 1:
        raise ValueError(f"packed codes must be a 1-d uint8 tensor, got {packed.dtype} {tuple(packed.shape)}")
    if numel < 0 or packed.numel() != packed_nbytes(numel, bits):
        raise ValueError(
            f"{packed.numel()} bytes cannot hold {numel} codes of {bits} bits "
            f"({packed_nbytes(max(numel, 0), bits)} expected)"
        )
    sbits = storage_bits(bits)
    per_byte = 8 // sbits
    if per_byte == 1:
        fields = packed.clone()
    else:
        shifts = torch.arange(per_byte, dtype=torch.uint8) * sbits
        fields = ((packed.unsqueeze(1) >> shifts) & (2**sbits - 1)).reshape(-1)[:numel]
    if not signed:
        return fields.contiguous()
    wide = fields.to(torch.int16)
    wide = torch.where(wide >= 2 ** (sbits - 1), wide - 2**sbits, wide)  # sign-extend the field
    return wide.to(torch.int8).contiguous()


# ---------------------------------------------------------------------------------------------
# fake-quantized weights -> integer codes


@dataclasses.dataclass(frozen=True)
class QuantParams:
    """A quantizer's parameters, read from its module (scales are positive for enabled quantizers)."""

    scale: Tensor  # float32, 0-d (per-tensor) or 1-d (per-channel)
    zero_point: Tensor  # int32, same shape
    axis: int | None
    qmin: int
    qmax: int
    bits: int
    enabled: bool
    dynamic: bool = False  # range taken from every input at run time (dynamic quantization)

    @property
    def signed(self) -> bool:
        return self.qmin < 0

    def broadcast(self, t: Tensor, like: Tensor) -> Tensor:
        """``t`` (scale or zero point) shaped to broadcast against ``like`` along ``axis``."""
        if self.axis is None or t.dim() == 0:
            return t
        shape = [1] * like.dim()
        shape[self.axis % like.dim()] = -1
        return t.reshape(shape)


def is_fake_quant(module: Any) -> bool:
    """Duck-typed FakeQuantize: scale/zero_point tensors plus qmin, qmax and axis attributes."""
    return (
        isinstance(module, nn.Module)
        and isinstance(getattr(module, "scale", None), Tensor)
        and isinstance(getattr(module, "zero_point", None), Tensor)
        and all(hasattr(module, a) for a in ("qmin", "qmax", "axis"))
    )


def _flag(module: nn.Module, name: str, default: bool = True) -> bool:
    value = getattr(module, name, default)
    return bool(value.item()) if isinstance(value, Tensor) else bool(value)


def fake_quant_params(fq: nn.Module, name: str = "") -> QuantParams:
    """The parameters of a FakeQuantize module (see :func:`is_fake_quant`); ``name`` for errors.

    An enabled quantizer needs positive scales: an LSQ scale trained below zero is rejected (the
    eval-mode forward would use the signed value; :func:`edgeslim.quantization.convert` takes |s|).
    """
    if not is_fake_quant(fq):
        raise ConfigError(f"{type(fq).__name__} is not a fake-quantize module (needs scale, zero_point, ...)")
    qmin, qmax = int(getattr(fq, "qmin")), int(getattr(fq, "qmax"))  # noqa: B009 - duck-typed module
    if not qmin < qmax or qmin < -128 or qmax > 255:
        raise ConfigError(f"quantizer range [{qmin}, {qmax}] is not an 8-bit-or-less integer range")
    axis = getattr(fq, "axis")  # noqa: B009
    derived = (qmax - qmin).bit_length()
    bits = max(int(getattr(fq, "bits", derived)), derived)
    scale = getattr(fq, "scale").detach().to("cpu", torch.float32)  # noqa: B009
    enabled, dynamic = _flag(fq, "enabled"), _flag(fq, "dynamic", False)
    if enabled and not dynamic and scale.numel() and not bool((scale > 0).all()):
        raise ConfigError(
            f"quantizer {name or type(fq).__name__!r} has scales <= 0 (min {float(scale.min()):.3g}); "
            "convert() the model first (LSQ scales are used as |s|)"
        )
    return QuantParams(
        scale=scale,
        zero_point=getattr(fq, "zero_point").detach().to("cpu").round().to(torch.int32),  # noqa: B009
        axis=None if axis is None else int(axis),
        qmin=qmin,
        qmax=qmax,
        bits=bits,
        enabled=enabled,
        dynamic=dynamic,
    )


@contextlib.contextmanager
def no_observation(model: nn.Module) -> Iterator[None]:
    """Run quantizers without updating their statistics (``observe=False``); restore afterwards."""
    changed = [m for m in model.modules() if is_fake_quant(m) and getattr(m, "observe", False) is True]
    for m in changed:
        m.observe = False  # type: ignore[assignment]
    try:
        yield
    finally:
        for m in changed:
            m.observe = True  # type: ignore[assignment]


def still_observing(model: nn.Module) -> list[str]:
    """Names of enabled, static quantizers that still update their qparams in the forward pass."""
    return [
        name
        for name, m in model.named_modules()
        if is_fake_quant(m)
        and getattr(m, "observe", False) is True
        and _flag(m, "enabled")
        and not _flag(m, "dynamic", False)
    ]


@dataclasses.dataclass(frozen=True)
class QuantizedWeight:
    """A fake-quantized parameter: where it lives, its integer codes and its quantizer."""

    key: str  # state_dict key of the float weight, e.g. "layer1.0.conv1.weight"
    quantizer: str  # module path of its FakeQuantize, e.g. "layer1.0.conv1.weight_fake_quant"
    codes: Tensor  # int32, shape of the weight
    params: QuantParams


def weight_codes(weight: Tensor, fq: nn.Module, name: str = "") -> tuple[Tensor, QuantParams]:
    """Integer codes of ``weight`` as ``fq``'s forward pass quantizes it.

    The codes are recovered from the forward output itself (``round(w_hat / s) + z``), so they match
    whatever kernel the quantizer uses (torch's fused fake quant or LSQ's arithmetic).
    """
    params = fake_quant_params(fq, name)
    if params.dynamic:  # qparams come from the tensor itself at every call, not from the buffers
        qparams_of = getattr(fq, "_qparams_of", None)
        if not callable(qparams_of):
            raise ConfigError(f"{type(fq).__name__} is dynamic but cannot report the qparams it uses")
        scale, zero_point = qparams_of(weight.detach())
        params = dataclasses.replace(
            params,
            scale=scale.detach().to("cpu", torch.float32).abs(),
            zero_point=zero_point.detach().to("cpu").round().to(torch.int32),
        )
    with torch.no_grad():
        w_hat = fq(weight.detach()).to("cpu", torch.float32)
    s = params.broadcast(params.scale, w_hat)
    z = params.broadcast(params.zero_point, w_hat)
    codes = (torch.round(w_hat / s) + z).to(torch.int32)
    lo, hi = int(codes.min()), int(codes.max())
    if lo < params.qmin or hi > params.qmax:
        raise ConfigError(
            f"{name or 'weight'}: codes [{lo}, {hi}] fall outside the quantizer range [{params.qmin}, {params.qmax}]"
        )
    return codes, params


def quantized_weights(model: nn.Module) -> list[QuantizedWeight]:
    """Every enabled ``weight_fake_quant`` of the model with the integer codes of its weight."""
    out: list[QuantizedWeight] = []
    with no_observation(model):
        for name, module in model.named_modules():
            fq = getattr(module, "weight_fake_quant", None)
            weight = getattr(module, "weight", None)
            if not is_fake_quant(fq) or not isinstance(weight, Tensor) or fq is None:
                continue
            if not _flag(fq, "enabled"):
                continue
            codes, params = weight_codes(
                weight, fq, f"{name}.weight_fake_quant" if name else "weight_fake_quant"
            )
            prefix = f"{name}." if name else ""
            out.append(QuantizedWeight(f"{prefix}weight", f"{prefix}weight_fake_quant", codes, params))
    return out


# ---------------------------------------------------------------------------------------------
# the packed file


@dataclasses.dataclass(frozen=True)
class PackedFileInfo:
    """What :func:`save_packed` wrote, with the sizes to judge it by.

    ``ideal_bytes`` = bits x quantized params / 8 + their scales and zero points (float32/int32) +
    every other tensor at its dtype: what the content needs with no container overhead. All-zero
    tensors (symmetric zero points, fresh counters) cost nothing and count 0.
    ``bound_bytes`` is the same with codes at their storage width (3 bits stored as 4, ...).
    """

    path: Path
    bytes: int
    quantized_tensors: int
    quantized_params: int
    bits: tuple[int, ...]  # distinct code widths of the quantized weights
    storage_bits: tuple[int, ...]
    packed_bytes: int  # the packed codes alone
    qparam_bytes: int  # scales + zero points of the packed weights
    other_bytes: int  # every other tensor (biases, BN, buffers) as is
    ideal_bytes: int
    bound_bytes: int
    float_bytes: int  # the same tensors with float32 weights (the dense payload)

    @property
    def overhead(self) -> float:
        """File size / ``bound_bytes`` - 1: the container's share (headers, entry table)."""
        return self.bytes / self.bound_bytes - 1.0 if self.bound_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["path"] = str(self.path)
        data["bits"] = list(self.bits)
        data["storage_bits"] = list(self.storage_bits)
        data["overhead"] = self.overhead
        return data


def _raw_bytes(t: Tensor) -> Tensor:
    t = t.detach().to("cpu").contiguous()
    return t.reshape(-1).view(torch.uint8) if t.numel() else torch.zeros(0, dtype=torch.uint8)


def _dtype_name(t: Tensor) -> str:
    name = str(t.dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise ConfigError(f"cannot store a {t.dtype} tensor in a packed file")
    return name


class _Blob:
    """Appends tensors' raw bytes to one buffer and remembers where each one starts."""

    def __init__(self, align: int) -> None:
        self.parts: list[Tensor] = []
        self.size = 0
        self.align = align

    def add(self, raw: Tensor) -> int:
        pad = (-self.size) % self.align
        if pad:
            self.parts.append(torch.zeros(pad, dtype=torch.uint8))
            self.size += pad
        offset = self.size
        self.parts.append(raw)
        self.size += raw.numel()
        return offset

    def tensor(self) -> Tensor:
        return torch.cat(self.parts) if self.parts else torch.zeros(0, dtype=torch.uint8)


def save_packed(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    model_spec: dict[str, Any],
    meta: dict[str, Any] | None = None,
) -> PackedFileInfo:
    """Write ``model`` with packed low-bit weights (see the module docstring); atomic.

    ``model_spec`` is ``{"name": zoo name, "kwargs": {...}}``; ``meta`` (plain data) should say how
    to rebuild the fake-quantized model (its quantization config), since the file holds weights only.
    """
    name = model_spec.get("name") if isinstance(model_spec, dict) else None
    if not isinstance(name, str) or not isinstance(model_spec.get("kwargs", {}), dict):
        raise ConfigError("model_spec must be {'name': str, 'kwargs': dict}")
    spec = {"name": name, "kwargs": dict(model_spec.get("kwargs") or {})}
    meta = dict(meta or {})
    problem = find_unloadable({"model": spec, "meta": meta}, "save_packed")
    if problem:
        raise ConfigError(problem)

    observing = still_observing(model)
    if observing:
        warnings.warn(
            f"{len(observing)} quantizers still observe (e.g. {observing[0]!r}): their qparams move on the "
            "next forward pass, so the saved model is a snapshot; convert() or freeze() them first",
            stacklevel=2,
        )
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    weights = {q.key: q for q in quantized_weights(model)}
    packed, dense = _Blob(1), _Blob(_ALIGN)
    entries: list[dict[str, Any]] = []
    aux: list[tuple[str, Tensor]] = []
    packed_bytes = qparam_bytes = other_bytes = ideal_bits = float_bytes = 0
    qparam_keys: set[str] = set()
    for key, q in weights.items():
        for part, tensor in (("scale", q.params.scale), ("zero_point", q.params.zero_point)):
            own = f"{q.quantizer}.{part}"
            if own in state and torch.equal(state[own].float(), tensor.float()):
                qparam_keys.add(own)
            else:  # not a state_dict entry (or a dynamic quantizer's): keep a copy
                aux.append((f"{key}.__{part}", tensor))

    def add_dense(name: str, kind: str, value: Tensor) -> int:
        """Store ``value`` as is (all-zero tensors, e.g. symmetric zero points, as shape only)."""
        raw = _raw_bytes(value)
        entry = {"name": name, "kind": kind, "dtype": _dtype_name(value), "shape": list(value.shape)}
        if raw.numel() and not bool(raw.any()):
            entries.append({**entry, "zeros": True, "offset": 0, "nbytes": 0})
            return 0
        entries.append({**entry, "offset": dense.add(raw), "nbytes": raw.numel()})
        return raw.numel()

    for key, value in state.items():
        found = weights.get(key)
        if found is None:
            stored = add_dense(key, "dense", value)
            if key in qparam_keys:
                qparam_bytes += stored
            else:
                other_bytes += stored
            float_bytes += value.numel() * value.element_size()
            continue
        q, p = found, found.params
        data = pack_int(q.codes, p.bits, signed=p.signed)
        offset = packed.add(data)
        refs = {}
        for part in ("scale", "zero_point"):
            own = f"{q.quantizer}.{part}"
            refs[part] = own if own in qparam_keys else f"{key}.__{part}"
        entries.append(
            {"name": key, "kind": "packed", "dtype": _dtype_name(value), "shape": list(value.shape),
             "offset": offset, "nbytes": data.numel(), "bits": p.bits, "storage_bits": storage_bits(p.bits),
             "signed": p.signed, "axis": p.axis, "scale": refs["scale"], "zero_point": refs["zero_point"]}
        )  # fmt: skip
        packed_bytes += data.numel()
        ideal_bits += p.bits * value.numel()
        float_bytes += value.numel() * value.element_size()
    for key, value in aux:
        qparam_bytes += add_dense(key, "aux", value)
        float_bytes += value.numel() * value.element_size()

    payload = {
        "format": PACKED_FORMAT,
        "version": PACKED_VERSION,
        "model": spec,
        "meta": meta,
        "packed": packed.tensor(),
        "dense": dense.tensor(),
        "table": torch.frombuffer(
            bytearray(zlib.compress(json.dumps(entries).encode(), 9)), dtype=torch.uint8
        ),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    target = atomic_write(path, lambda fh: fh.write(buffer.getbuffer()))
    bits = tuple(sorted({q.params.bits for q in weights.values()}))
    return PackedFileInfo(
        path=target,
        bytes=target.stat().st_size,
        quantized_tensors=len(weights),
        quantized_params=sum(q.codes.numel() for q in weights.values()),
        bits=bits,
        storage_bits=tuple(sorted({storage_bits(b) for b in bits})),
        packed_bytes=packed_bytes,
        qparam_bytes=qparam_bytes,
        other_bytes=other_bytes,
        ideal_bytes=-(-ideal_bits // 8) + qparam_bytes + other_bytes,
        bound_bytes=packed_bytes + qparam_bytes + other_bytes,
        float_bytes=float_bytes,
    )


def _slice(blob: Tensor, entry: dict[str, Any], source: str) -> Tensor:
    offset, nbytes = entry.get("offset"), entry.get("nbytes")
    if not isinstance(offset, int) or not isinstance(nbytes, int) or offset < 0 or nbytes < 0:
        raise CheckpointError(f"{source}: entry {entry.get('name')!r} has a bad offset/size")
    if offset + nbytes > blob.numel():
        raise CheckpointError(
            f"{source}: entry {entry.get('name')!r} runs past the end of its data (truncated?)"
        )
    return blob[offset : offset + nbytes]


def _dense(blob: Tensor, entry: dict[str, Any], source: str) -> Tensor:
    dtype = _DTYPES.get(str(entry.get("dtype")))
    shape = entry.get("shape")
    if dtype is None or not isinstance(shape, list):
        raise CheckpointError(f"{source}: entry {entry.get('name')!r} has an unknown dtype or shape")
    if entry.get("zeros") is True:
        return torch.zeros([int(s) for s in shape], dtype=dtype)
    raw = _slice(blob, entry, source)
    numel = 1
    for s in shape:
        numel *= int(s)
    if raw.numel() != numel * torch.empty(0, dtype=dtype).element_size():
        raise CheckpointError(
            f"{source}: entry {entry.get('name')!r} has {raw.numel()} bytes for shape {shape}"
        )
    return raw.clone().view(dtype).reshape(shape)


def load_packed(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a :func:`save_packed` file: (state_dict with dequantized float weights, meta).

    ``meta`` also carries ``"model"`` (the spec) so callers can rebuild the model. Weights come back
    as ``(q - z) * s`` in their saved dtype.
    """
    source = repr(str(path))
    obj = read_file(path)
    if not isinstance(obj, dict) or obj.get("format") != PACKED_FORMAT:
        raise CheckpointError(f"{source} is not an edgeslim packed file")
    if obj.get("version") != PACKED_VERSION:
        raise CheckpointError(
            f"{source} has packed-file version {obj.get('version')!r}; expected {PACKED_VERSION}"
        )
    packed, dense, table = obj.get("packed"), obj.get("dense"), obj.get("table")
    if not (isinstance(packed, Tensor) and isinstance(dense, Tensor) and isinstance(table, Tensor)) or any(
        t.dtype != torch.uint8 or t.dim() != 1 for t in (packed, dense, table)
    ):
        raise CheckpointError(f"{source}: packed file is missing its data or entry table")
    try:
        entries = json.loads(zlib.decompress(table.numpy().tobytes()))
    except (zlib.error, ValueError) as exc:
        raise CheckpointError(f"{source}: unreadable entry table ({exc})") from None
    if not isinstance(entries, list):
        raise CheckpointError(f"{source}: the entry table is not a list")
    tensors: dict[str, Tensor] = {}
    for entry in entries:
        if isinstance(entry, dict) and entry.get("kind") in ("dense", "aux"):
            tensors[str(entry["name"])] = _dense(dense, entry, source)
    state: dict[str, Tensor] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kind") not in ("dense", "aux", "packed"):
            raise CheckpointError(f"{source}: bad entry {entry!r:.80}")
        name = str(entry["name"])
        if entry["kind"] == "dense":
            state[name] = tensors[name]
        elif entry["kind"] == "packed":
            state[name] = _dequantize_entry(packed, entry, tensors, source)
    meta = dict(obj.get("meta") or {})
    meta.setdefault("model", obj.get("model"))
    return state, meta


def _dequantize_entry(blob: Tensor, entry: dict[str, Any], tensors: dict[str, Tensor], source: str) -> Tensor:
    name = entry["name"]
    dtype = _DTYPES.get(str(entry.get("dtype")))
    shape, bits, axis = entry.get("shape"), entry.get("bits"), entry.get("axis")
    scale, zero_point = tensors.get(str(entry.get("scale"))), tensors.get(str(entry.get("zero_point")))
    if (
        dtype is None
        or not isinstance(shape, list)
        or not isinstance(bits, int)
        or scale is None
        or zero_point is None
    ):
        raise CheckpointError(f"{source}: packed entry {name!r} is incomplete")
    numel = 1
    for s in shape:
        numel *= int(s)
    try:
        codes = unpack_int(_slice(blob, entry, source), bits, numel, bool(entry.get("signed")))
    except ValueError as exc:
        raise CheckpointError(f"{source}: packed entry {name!r}: {exc}") from None
    q = codes.to(torch.int32).reshape(shape)
    params = QuantParams(scale.float(), zero_point.to(torch.int32), axis, 0, 1, bits, True)
    s = params.broadcast(params.scale, q)
    z = params.broadcast(params.zero_point, q)
    return ((q - z).to(torch.float32) * s).to(dtype)
