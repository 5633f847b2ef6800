"""Where training runs: bfloat16 autocast only where the CPU runs it natively."""

from __future__ import annotations

import pytest
import torch

import edgeslim.train.device as device_module


def test_bf16_falls_back_to_fp32_with_a_warning_where_the_cpu_would_emulate_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(device_module, "cpu_bf16_fast", lambda: False)
    with pytest.warns(UserWarning, match="no native bfloat16"):
        assert device_module.cpu_bf16(True) is False
    with (
        pytest.warns(UserWarning, match="no native bfloat16"),
        device_module.autocast(torch.device("cpu"), True),
    ):
        assert not torch.is_autocast_enabled("cpu")
    assert device_module.cpu_bf16(False) is False
    monkeypatch.setattr(device_module, "cpu_bf16_fast", lambda: True)
    assert device_module.cpu_bf16(True) is True
    with device_module.autocast(torch.device("cpu"), True):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
