"""Size on disk of a model artifact (a file, a directory, or an OpenVINO .xml/.bin pair)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from torch import nn

from edgeslim.errors import EdgeslimError


def file_size_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of a file; the sum over all files below a directory; .xml plus its .bin for OpenVINO IR."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    if not p.is_file():
        raise EdgeslimError(f"cannot measure the size of {str(p)!r}: no such file or directory")
    size = p.stat().st_size
    if p.suffix.lower() == ".xml":
        weights = p.with_suffix(".bin")
        if weights.is_file():
            size += weights.stat().st_size
    return size


def state_dict_size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the size when no artifact file exists yet."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
