"""Compact on-disk storage of pruned state_dicts in COO, CSR or CSC layout.

Unstructured pruning leaves the dense tensors in place (zeros still cost 4 bytes each), so the
saving only shows on disk when the zeros are not written. A file written by :func:`save_sparse` is
a plain ``torch.save`` dict (``torch.load(weights_only=True)`` reads it)::

    {"format": "edgeslim.sparse", "version": 1, "layout": "csr", "meta": {...},
     "tensors": {name: entry, ...}}   # in state_dict order

Each entry is ``{"kind": "dense", "data": tensor}`` or a sparse matrix of the tensor viewed as 2-D
``[shape[0], numel / shape[0]]`` (conv weights ``[O, I*kh*kw]``; 1-D tensors as one row, or one
column for CSC)::

    coo: {"kind": "coo", "shape", "values", "rows", "cols"}
    csr: {"kind": "csr", "shape", "values", "crow", "cols"}   # crow: R + 1 row pointers
    csc: {"kind": "csc", "shape", "values", "ccol", "rows"}   # ccol: C + 1 column pointers

Values keep the tensor's dtype; every index array uses the smallest integer dtype that holds its
largest value (uint8, uint16, int32, else int64). A tensor is stored sparsely only when that is
estimated to be smaller than dense (so BN parameters, buffers and unpruned layers stay dense).
"Zero" means all bits zero, so ``-0.0`` is kept as a value and :func:`load_sparse` gives back
bitwise-identical tensors (values, dtype, shape; tensors come back contiguous). Weights pruned by
``weight * mask`` (e.g. ``torch.nn.utils.prune``) are full of -0.0: a warning suggests
``signed_zeros=False``, which stores them as zeros (they load back as +0.0: equal, not bitwise).
edgeslim's own pruning writes +0.0.

The format lives with the models because :func:`~edgeslim.models.load_model_from_checkpoint` reads
it and models never import a technique; :mod:`edgeslim.pruning` writes it and re-exports it.
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import nn

from edgeslim.checkpoint import find_unloadable, read_file
from edgeslim.errors import CheckpointError, ConfigError
from edgeslim.io import atomic_torch_save

SPARSE_FORMAT = "edgeslim.sparse"
SPARSE_VERSION = 1

Layout = Literal["coo", "csr", "csc"]
LAYOUTS: tuple[str, ...] = get_args(Layout)

# Rough cost of one extra tensor in a torch.save zip (record header, central directory entry,
# pickle reference) and the 64-byte alignment of its data; only used to choose dense vs sparse.
_PER_TENSOR_BYTES = 200
_ALIGN = 64
_PER_ENTRY_BYTES = 100  # the entry dict's keys and shape list

_BITS_DTYPE = {2: torch.int16, 4: torch.int32, 8: torch.int64}
# dtypes whose zeros can be dropped and put back with index_put (others are always stored dense)
_SPARSE_DTYPES = frozenset(
    {
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
    }
)


@dataclasses.dataclass(frozen=True)
class SparseFileInfo:
    """What :func:`save_sparse` wrote: real bytes on disk against a dense ``torch.save``."""

    path: Path
    layout: str
    bytes: int
    dense_bytes: int | None
    tensors: int
    sparse_tensors: int
    numel: int
    stored_values: int

    @property
    def ratio(self) -> float | None:
        """Sparse file size / dense file size (None when the dense size was not measured)."""
        return self.bytes / self.dense_bytes if self.dense_bytes else None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["path"] = str(self.path)
        data["ratio"] = self.ratio
        return data


def index_dtype(max_value: int) -> torch.dtype:
    """The smallest integer dtype that holds 0..max_value (uint16 needs torch >= 2.3)."""
    if max_value <= 0xFF:
        return torch.uint8
    if max_value <= 0xFFFF:
        return torch.uint16
    if max_value <= 0x7FFF_FFFF:
        return torch.int32
    return torch.int64


def _nonzero_mask(flat: torch.Tensor, signed_zeros: bool = True) -> torch.Tensor:
    """Entries to store: bits not all zero (-0.0 kept), or with ``signed_zeros=False`` just ``!= 0``."""
    if flat.is_floating_point() and signed_zeros:
        return flat.view(_BITS_DTYPE[flat.element_size()]) != 0
    return flat != 0


def _matrix_shape(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    if len(shape) == 1:
        return (shape[0], 1) if layout == "csc" else (1, shape[0])
    rows = shape[0]
    return rows, (_numel(shape) // rows if rows else 0)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _cost(nbytes: int) -> int:
    return _PER_TENSOR_BYTES + -(-nbytes // _ALIGN) * _ALIGN


def _can_be_sparse(tensor: torch.Tensor) -> bool:
    return (
        tensor.dim() >= 1
        and tensor.numel() > 0
        and tensor.dtype in _SPARSE_DTYPES
        and tensor.layout == torch.strided
        and not tensor.is_quantized
    )


def _dense_entry(tensor: torch.Tensor) -> dict[str, Any]:
    data = tensor.contiguous()
    if data.untyped_storage().nbytes() != data.numel() * data.element_size():
        data = data.clone()  # a view of a larger storage: torch.save would write all of it
    return {"kind": "dense", "data": data}


def encode_tensor(tensor: torch.Tensor, layout: Layout, *, signed_zeros: bool = True) -> dict[str, Any]:
    """One state_dict entry in ``layout``, or dense when that is not estimated to be smaller.

    With ``signed_zeros=False`` a -0.0 counts as zero and comes back as +0.0 (equal, not bitwise).
    """
    tensor = tensor.detach().to("cpu")
    if not _can_be_sparse(tensor):
        return _dense_entry(tensor)
    shape = tuple(int(s) for s in tensor.shape)
    rows, cols = _matrix_shape(shape, layout)
    flat = tensor.contiguous().flatten()
    matrix_nz = _nonzero_mask(flat, signed_zeros).view(rows, cols)
    if layout == "csc":
        matrix_nz = matrix_nz.t()
    nnz = int(matrix_nz.sum().item())
    value_bytes = nnz * tensor.element_size()
    if layout == "coo":
        index_bytes = [nnz * index_dtype(rows - 1).itemsize, nnz * index_dtype(cols - 1).itemsize]
    else:
        major, minor = (rows, cols) if layout == "csr" else (cols, rows)
        index_bytes = [(major + 1) * index_dtype(nnz).itemsize, nnz * index_dtype(minor - 1).itemsize]
    sparse_cost = _PER_ENTRY_BYTES + sum(_cost(b) for b in [value_bytes, *index_bytes])
    if sparse_cost >= _cost(tensor.numel() * tensor.element_size()):
        return _dense_entry(tensor)

    # positions in the order of the layout (row-major for COO/CSR, column-major for CSC)
    order = torch.nonzero(matrix_nz.flatten()).squeeze(1)
    minor_len = matrix_nz.shape[1]
    major_idx, minor_idx = order // minor_len, order % minor_len
    # for CSC the major index is the column and the minor one the row
    flat_pos = minor_idx * cols + major_idx if layout == "csc" else order
    values = flat[flat_pos].clone()
    entry: dict[str, Any] = {"kind": layout, "shape": list(shape), "values": values}
    if layout == "coo":
        entry["rows"] = major_idx.to(index_dtype(rows - 1))
        entry["cols"] = minor_idx.to(index_dtype(cols - 1))
        return entry
    counts = torch.bincount(major_idx, minlength=matrix_nz.shape[0])
    pointers = torch.zeros(matrix_nz.shape[0] + 1, dtype=torch.int64)
    pointers[1:] = counts.cumsum(0)
    if layout == "csr":
        entry["crow"] = pointers.to(index_dtype(nnz))
        entry["cols"] = minor_idx.to(index_dtype(cols - 1))
    else:
        entry["ccol"] = pointers.to(index_dtype(nnz))
        entry["rows"] = minor_idx.to(index_dtype(rows - 1))
    return entry


def decode_tensor(entry: Mapping[str, Any]) -> torch.Tensor:
    """The dense tensor of one entry written by :func:`encode_tensor`."""
    kind = entry.get("kind")
    if kind == "dense":
        data = entry["data"]
        if not isinstance(data, torch.Tensor):
            raise ValueError("dense entry without a tensor")
        return data
    if kind not in LAYOUTS:
        raise ValueError(f"unknown entry kind {kind!r}")
    shape = tuple(int(s) for s in entry["shape"])
    rows, cols = _matrix_shape(shape, str(kind))
    values: torch.Tensor = entry["values"]
    if kind == "coo":
        r, c = entry["rows"].long(), entry["cols"].long()
    elif kind == "csr":
        c = entry["cols"].long()
        r = torch.repeat_interleave(torch.arange(rows), entry["crow"].long().diff())
    else:
        r = entry["rows"].long()
        c = torch.repeat_interleave(torch.arange(cols), entry["ccol"].long().diff())
    if not (r.numel() == c.numel() == values.numel()):
        raise ValueError("index and value counts differ")
    if values.numel() and (int(r.max()) >= rows or int(c.max()) >= cols):
        raise ValueError("an index is out of range")
    out = torch.zeros(rows * cols, dtype=values.dtype)
    out[r * cols + c] = values
    return out.view(shape)


def _warn_negative_zeros(tensors: Mapping[str, torch.Tensor]) -> None:
    """Weights pruned as ``weight * mask`` hold -0.0 wherever a negative weight was pruned; kept
    bitwise they are stored as values and the file hardly shrinks."""
    worst, name = 0.0, ""
    for key, t in tensors.items():
        if t.is_floating_point() and t.numel():
            share = int(((t == 0) & torch.signbit(t)).sum().item()) / t.numel()
            if share > worst:
                worst, name = share, key
    if worst > 0.05:
        warnings.warn(
            f"{name!r}: {worst:.0%} of its entries are -0.0 (pruned as weight * mask?); they are kept "
            "bit for bit and stored as values. Pass signed_zeros=False to store them as zeros.",
            stacklevel=3,
        )


def _as_state_dict(state_dict: Mapping[str, torch.Tensor] | nn.Module) -> dict[str, torch.Tensor]:
    items = state_dict.state_dict() if isinstance(state_dict, nn.Module) else state_dict
    out: dict[str, torch.Tensor] = {}
    for key, value in items.items():
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"state_dict[{key!r}] is a {type(value).__name__}, not a tensor")
        out[str(key)] = value
    return out


def encode_sparse(
    state_dict: Mapping[str, torch.Tensor] | nn.Module,
    layout: Layout = "csr",
    *,
    meta: Mapping[str, Any] | None = None,
    signed_zeros: bool = True,
) -> dict[str, Any]:
    """The payload :func:`save_sparse` writes (in memory, e.g. to measure a layout's size)."""
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    tensors = _as_state_dict(state_dict)
    if signed_zeros:
        _warn_negative_zeros(tensors)
    meta_dict = dict(meta or {})
    problem = find_unloadable(meta_dict, "meta")
    if problem:
        raise ConfigError(problem)
    return {
        "format": SPARSE_FORMAT,
        "version": SPARSE_VERSION,
        "layout": layout,
        "meta": meta_dict,
        "tensors": {name: encode_tensor(t, layout, signed_zeros=signed_zeros) for name, t in tensors.items()},
    }


def decode_sparse(
    payload: Any, source: str = "sparse file"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, meta)`` from a payload of :func:`encode_sparse`."""
    if not isinstance(payload, dict) or payload.get("format") != SPARSE_FORMAT:
        raise CheckpointError(f"{source} is not an edgeslim sparse file (format {SPARSE_FORMAT!r})")
    if payload.get("version") != SPARSE_VERSION:
        raise CheckpointError(
            f"{source} has sparse format version {payload.get('version')!r}; this edgeslim reads "
            f"version {SPARSE_VERSION}"
        )
    entries = payload.get("tensors")
    if not isinstance(entries, dict):
        raise CheckpointError(f"{source}: 'tensors' is missing")
    state: dict[str, torch.Tensor] = OrderedDict()
    for name, entry in entries.items():
        try:
            state[name] = decode_tensor(entry)
        except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{source}: tensor {name!r} is corrupt ({exc})") from None
    return state, dict(payload.get("meta") or {})


def torch_save_nbytes(obj: object) -> int:
    """Bytes ``torch.save(obj)`` produces (in memory; the file on disk is the same size)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer().nbytes


def _dense_copy(
    original: Mapping[str, torch.Tensor] | nn.Module, tensors: dict[str, torch.Tensor]
) -> Mapping[str, torch.Tensor]:
    """What a plain ``torch.save(state_dict)`` would write, ``_metadata`` (module versions) included."""
    source = original.state_dict() if isinstance(original, nn.Module) else original
    if all(t.device.type == "cpu" for t in tensors.values()):
        return source
    copy: OrderedDict[str, torch.Tensor] = OrderedDict((k, v.detach().cpu()) for k, v in tensors.items())
    metadata = getattr(source, "_metadata", None)
    if metadata is not None:
        copy._metadata = metadata  # type: ignore[attr-defined]
    return copy


def save_sparse(
    path: str | os.PathLike[str],
    state_dict: Mapping[str, torch.Tensor] | nn.Module,
    layout: Layout = "csr",
    *,
    meta: Mapping[str, Any] | None = None,
    compare_dense: bool = True,
    signed_zeros: bool = True,
) -> SparseFileInfo:
    """Write ``state_dict`` (or a model's) with its sparse tensors in ``layout``, atomically.

    With ``compare_dense`` the dense ``torch.save`` of the same state_dict (with its ``_metadata``)
    is serialised in memory to report the size ratio. Both are written through a file object, as
    edgeslim always does; ``torch.save(obj, "name.pt")`` names the records in the zip after the file
    and differs by a few bytes per tensor. ``signed_zeros=False`` stores -0.0 as a zero (it loads
    back as +0.0, equal but not bitwise).
    """
    tensors = _as_state_dict(state_dict)
    payload = encode_sparse(tensors, layout, meta=meta, signed_zeros=signed_zeros)
    target = atomic_torch_save(payload, path)
    dense_bytes = None
    if compare_dense:
        dense_bytes = torch_save_nbytes(_dense_copy(state_dict, tensors))
    entries = payload["tensors"].values()
    return SparseFileInfo(
        path=target,
        layout=layout,
        bytes=target.stat().st_size,
        dense_bytes=dense_bytes,
        tensors=len(tensors),
        sparse_tensors=sum(1 for e in entries if e["kind"] != "dense"),
        numel=sum(t.numel() for t in tensors.values()),
        stored_values=sum(e["values"].numel() if "values" in e else e["data"].numel() for e in entries),
    )


def load_sparse(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, meta)`` of a file written by :func:`save_sparse`, with dense tensors."""
    return decode_sparse(read_file(path), source=repr(str(path)))
