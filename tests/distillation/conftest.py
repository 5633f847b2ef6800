"""One intra-op thread for these tiny-model tests.

The models here take microseconds per layer, so a second thread cannot help them; and when other
jobs share the 2 cores, OpenMP threads spin-waiting for a descheduled partner made each step up to
100x slower. The session-wide setting is restored after every test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
