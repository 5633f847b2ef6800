"""Sparse state_dict files: bitwise round trips in COO/CSR/CSC, small index dtypes, real size gains."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeslim.errors import CheckpointError, ConfigError
from edgeslim.io import atomic_torch_save
from edgeslim.models import create_model
from edgeslim.models.sparse_formats import (
    LAYOUTS,
    decode_tensor,
    encode_sparse,
    encode_tensor,
    index_dtype,
    load_sparse,
    save_sparse,
)
from edgeslim.pruning.configs import MagnitudePruning
from edgeslim.pruning.unstructured import magnitude_prune
from edgeslim.select import LayerSelection

ALL = LayerSelection(include_classifier=True)


def sparse_like(shape: tuple[int, ...], keep: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random values with a ``keep`` share left; the others are +0.0 (as magnitude_prune writes)."""
    t = torch.randn(shape).to(dtype)
    return t.masked_fill(torch.rand(shape) >= keep, 0)


def bits(t: torch.Tensor) -> torch.Tensor:
    """A view that compares bit patterns (-0.0 != 0.0, NaN == NaN)."""
    if t.is_floating_point():
        return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
    return t


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(bits(a[k].contiguous()), bits(b[k].contiguous())), k


def mixed_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    weird = sparse_like((40, 30), 0.05)
    weird[0, 0], weird[1, 2], weird[3, 4] = -0.0, float("nan"), float("-inf")
    big = torch.zeros(100, 100)
    big[::7, ::3] = 1.5
    return OrderedDict(
        [
            ("conv.weight", sparse_like((32, 16, 3, 3), 0.1)),
            ("conv_wide.weight", sparse_like((8, 300, 3, 3), 0.05)),  # 2700 columns: uint16 indices
            ("fc.weight", sparse_like((10, 64), 0.2)),
            ("fc.bias", torch.randn(10)),
            ("bn.weight", torch.ones(32)),
            ("bn.bias", torch.zeros(32)),
            ("bn.running_mean", torch.randn(32)),
            ("bn.running_var", torch.rand(32)),
            ("bn.num_batches_tracked", torch.tensor(123)),
            ("zero_conv.weight", torch.zeros(16, 16, 3, 3)),
            ("zero_vector", torch.zeros(5000)),
            ("sparse_vector", sparse_like((3000,), 0.02)),
            ("empty", torch.empty(0, 3)),
            ("scalar", torch.tensor(2.5)),
            ("weird", weird),
            ("transposed", sparse_like((64, 48), 0.05).t()),
            ("slice", big[10:20]),
            ("half", sparse_like((64, 64), 0.1, torch.float16)),
            ("bf16", sparse_like((64, 64), 0.1, torch.bfloat16)),
            ("double", sparse_like((32, 32), 0.1, torch.float64)),
            ("ints", (torch.randint(0, 50, (100, 50)) * (torch.rand(100, 50) < 0.05)).to(torch.int32)),
            ("flags", torch.rand(64, 64) < 0.02),
            ("uint8", torch.randint(0, 3, (7, 9), dtype=torch.uint8)),
        ]
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_round_trip_is_bitwise(tmp_path: Path, layout: str) -> None:
    state = mixed_state_dict()
    path = tmp_path / f"m.{layout}.pt"
    info = save_sparse(path, state, layout, meta={"model": {"name": "x", "kwargs": {"n": 1}}, "s": 0.9})
    back, meta = load_sparse(path)
    assert_bitwise_equal(back, state)
    assert meta == {"model": {"name": "x", "kwargs": {"n": 1}}, "s": 0.9}
    assert info.bytes == os.path.getsize(path)
    assert info.tensors == len(state)
    assert os.listdir(tmp_path) == [path.name]  # written atomically, no temporary left

    raw = torch.load(path, weights_only=True)  # plain data only
    kinds = {name: entry["kind"] for name, entry in raw["tensors"].items()}
    assert raw["layout"] == layout and raw["format"] == "edgeslim.sparse"
    for name in ("conv.weight", "conv_wide.weight", "zero_conv.weight", "zero_vector", "sparse_vector"):
        assert kinds[name] == layout, name
    for name in ("fc.bias", "bn.weight", "bn.running_var", "bn.num_batches_tracked", "empty", "scalar"):
        assert kinds[name] == "dense", name
    assert info.sparse_tensors == sum(k != "dense" for k in kinds.values())


def test_index_dtypes_are_the_smallest_that_fit() -> None:
    assert index_dtype(0) == torch.uint8 and index_dtype(255) == torch.uint8
    assert index_dtype(256) == torch.uint16 and index_dtype(65535) == torch.uint16
    assert index_dtype(65536) == torch.int32 and index_dtype(2**31 - 1) == torch.int32
    assert index_dtype(2**31) == torch.int64

    torch.manual_seed(1)
    w = sparse_like((32, 16, 3, 3), 0.1)  # 32 x 144 matrix
    nnz = int(torch.count_nonzero(w))
    coo = encode_tensor(w, "coo")
    assert (coo["rows"].dtype, coo["cols"].dtype, coo["values"].dtype) == (torch.uint8, torch.uint8, w.dtype)
    assert coo["values"].numel() == nnz and coo["shape"] == [32, 16, 3, 3]
    csr = encode_tensor(w, "csr")
    assert csr["crow"].numel() == 33 and csr["crow"].dtype == index_dtype(nnz)
    assert csr["cols"].dtype == torch.uint8 and int(csr["crow"][-1]) == nnz
    csc = encode_tensor(w, "csc")
    assert csc["ccol"].numel() == 145 and csc["rows"].dtype == torch.uint8

    wide = sparse_like((8, 300, 3, 3), 0.05)  # 2700 columns
    assert encode_tensor(wide, "csr")["cols"].dtype == torch.uint16
    assert encode_tensor(wide, "csc")["rows"].dtype == torch.uint8
    for layout in LAYOUTS:
        assert torch.equal(decode_tensor(encode_tensor(wide, layout)), wide)


def test_hand_built_csr_and_csc() -> None:
    w = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [3.0, 0.0, 4.0]])
    w = torch.cat([w, torch.zeros(397, 3)])  # large enough that sparse is smaller than dense
    csr = encode_tensor(w, "csr")
    assert csr["values"].tolist() == [2.0, 3.0, 4.0]
    assert csr["cols"].tolist() == [1, 0, 2]
    assert csr["crow"].tolist()[:4] == [0, 1, 1, 3] and csr["crow"].tolist()[-1] == 3
    csc = encode_tensor(w, "csc")
    assert csc["values"].tolist() == [3.0, 2.0, 4.0]
    assert csc["rows"].tolist() == [2, 0, 2]
    assert csc["ccol"].tolist() == [0, 1, 2, 3]
    coo = encode_tensor(w, "coo")
    assert (coo["rows"].tolist(), coo["cols"].tolist()) == ([0, 2, 2], [1, 0, 2])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pruned_model_file_is_much_smaller_and_loads_back(tmp_path: Path, layout: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(16, 32, 3),
        nn.BatchNorm2d(32),
        nn.Conv2d(32, 32, 3),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    magnitude_prune(model, MagnitudePruning(0.9), ALL)
    info = save_sparse(tmp_path / "s.pt", model, layout)
    dense_path = atomic_torch_save(model.state_dict(), tmp_path / "dense.pt")
    assert info.dense_bytes == os.path.getsize(dense_path) == 61122
    # 14,240 weights, 1,424 non-zero: values 4 B + indices (COO 2 B, CSR/CSC ~1.1-1.5 B) + overhead
    assert info.ratio is not None and info.ratio < 0.26
    if layout != "coo":
        assert info.ratio < 0.24
    back, _ = load_sparse(info.path)
    fresh = nn.Sequential(
        nn.Conv2d(16, 32, 3), nn.BatchNorm2d(32), nn.Conv2d(32, 32, 3), nn.Flatten(), nn.Linear(32, 10)
    )
    fresh.load_state_dict(back)
    x = torch.randn(2, 16, 5, 5)
    model.eval()
    fresh.eval()
    assert torch.equal(model(x), fresh(x))


def test_tiny_resnet_at_high_sparsity(tmp_path: Path) -> None:
    model = create_model("resnet20_tiny")
    magnitude_prune(model, MagnitudePruning(0.9), ALL)
    info = save_sparse(tmp_path / "r.pt", model.state_dict(), "csr", compare_dense=True)
    # 116 tensors, mostly tiny BN vectors: the per-tensor zip overhead bounds the gain here
    assert info.ratio is not None and info.ratio < 0.55
    assert info.tensors == 116 and info.sparse_tensors >= 10
    back, _ = load_sparse(info.path)
    assert_bitwise_equal(back, model.state_dict())
    assert save_sparse(tmp_path / "n.pt", model, compare_dense=False).dense_bytes is None


def test_dense_tensors_stay_dense_when_smaller() -> None:
    model = create_model("resnet20_tiny")  # unpruned
    payload = encode_sparse(model, "csr")
    assert all(entry["kind"] == "dense" for entry in payload["tensors"].values())


def test_negative_zeros_are_kept_bitwise_or_dropped_on_request(tmp_path: Path) -> None:
    torch.manual_seed(2)
    dense = torch.randn(64, 64)
    pruned = dense * (torch.rand(64, 64) < 0.1)  # weight * mask: -0.0 where a negative was pruned
    assert int(torch.signbit(pruned[pruned == 0]).sum()) > 1000
    with pytest.warns(UserWarning, match="signed_zeros=False"):
        exact = save_sparse(tmp_path / "exact.pt", {"w": pruned})
    assert torch.equal(bits(load_sparse(exact.path)[0]["w"]), bits(pruned))
    loose = save_sparse(tmp_path / "loose.pt", {"w": pruned}, signed_zeros=False)
    back = load_sparse(loose.path)[0]["w"]
    assert torch.equal(back, pruned) and not torch.signbit(back[back == 0]).any()
    assert loose.bytes < 0.4 * exact.bytes


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="layout must be one of coo, csr, csc"):
        save_sparse(tmp_path / "x.pt", {"a": torch.zeros(3)}, "bsr")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"state_dict\['a'\] is a list"):
        save_sparse(tmp_path / "x.pt", {"a": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="meta"):
        save_sparse(tmp_path / "x.pt", {"a": torch.zeros(3)}, meta={"path": tmp_path})
    assert not (tmp_path / "x.pt").exists()

    plain = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(3)}, plain)
    with pytest.raises(CheckpointError, match="not an edgeslim sparse file"):
        load_sparse(plain)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_sparse(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_sparse(tmp_path / "junk.pt")

    payload = encode_sparse({"w": sparse_like((64, 64), 0.05)}, "csr")
    payload["tensors"]["w"]["cols"] = payload["tensors"]["w"]["cols"][:-1]
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="tensor 'w' is corrupt"):
        load_sparse(tmp_path / "bad.pt")
    payload["version"] = 2
    torch.save(payload, tmp_path / "v2.pt")
    with pytest.raises(CheckpointError, match="version 2"):
        load_sparse(tmp_path / "v2.pt")
