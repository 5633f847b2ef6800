"""The CPU named next to every figure: a generic VM name gets its family, model and vector ISA."""

from __future__ import annotations

import pytest

import edgeslim.bench.env as env

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx fma avx2 sha_ni

processor\t: 1
cpu family\t: 99
model\t\t: 99
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx fma avx2 sha_ni
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ZEN3, "AMD EPYC (family 25 model 1, avx2)"),
        (
            ZEN3.replace("model\t\t: 1\n", "model\t\t: 17\n").replace("avx2", "avx2 avx512f avx512_bf16"),
            "AMD EPYC (family 25 model 17, avx512_bf16)",
        ),
        (ZEN3.replace("AMD EPYC", "AMD EPYC 9B14"), "AMD EPYC 9B14"),  # a model number says enough
        ("processor\t: 0\nModel\t\t: Raspberry Pi 5\nFeatures\t: asimd\n", "Raspberry Pi 5"),
    ],
)
def test_cpu_model_tells_generations_apart(monkeypatch: pytest.MonkeyPatch, text: str, expected: str) -> None:
    monkeypatch.setattr(env, "_cpuinfo_text", lambda: text)
    assert env.cpu_model() == expected
