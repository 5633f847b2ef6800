"""Observers on hand-built data: exact minmax, outlier-robust percentile, mse/entropy clipping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeslim.errors import ConfigError
from edgeslim.quantization import (
    EntropyObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PercentileObserver,
    fake_quantize,
    make_observer,
    qparams,
)
from edgeslim.quantization.observers import Histogram, kl_threshold


def _laplace(n: int = 100_000) -> torch.Tensor:
    """Unit Laplace samples (inverse CDF): exponential tails, much heavier than a Gaussian's."""
    u = torch.rand(n, generator=torch.Generator().manual_seed(0)) - 0.5
    return -torch.sign(u) * torch.log1p(-2 * u.abs())


def test_minmax_is_exact_over_batches_per_tensor_and_per_channel() -> None:
    obs = MinMaxObserver()
    obs(torch.tensor([1.0, -2.0, 3.0]))
    obs(torch.tensor([0.5, 4.0]))
    lo, hi = obs.calculate_range()
    assert (float(lo), float(hi)) == (-2.0, 4.0)

    per_ch = MinMaxObserver(axis=1)
    per_ch(torch.tensor([[1.0, -1.0], [2.0, 5.0]]))
    per_ch(torch.tensor([[-3.0, 0.0], [0.0, 1.0]]))
    lo, hi = per_ch.calculate_range()
    assert lo.tolist() == [-3.0, -1.0] and hi.tolist() == [2.0, 5.0]


def test_moving_average_follows_the_formula() -> None:
    obs = MovingAverageMinMaxObserver(averaging_constant=0.5)
    obs(torch.tensor([-1.0, 1.0]))
    obs(torch.tensor([-3.0, 5.0]))
    lo, hi = obs.calculate_range()
    assert (float(lo), float(hi)) == (-2.0, 3.0)
    latest = MovingAverageMinMaxObserver(averaging_constant=1.0)  # QAT weights: the current tensor
    latest(torch.tensor([-9.0, 9.0]))
    latest(torch.tensor([-1.0, 2.0]))
    assert [float(v) for v in latest.calculate_range()] == [-1.0, 2.0]


def test_percentile_clips_an_outlier() -> None:
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(1))
    x[123] = 1000.0
    minmax, pct = MinMaxObserver(), PercentileObserver(percentile=99.99)
    for chunk in x.chunk(5):  # the outlier widens the histogram mid-way: bins merge exactly
        minmax(chunk)
        pct(chunk)
    assert float(minmax.calculate_range()[1]) == 1000.0
    lo, hi = pct.calculate_range()
    assert 3.0 < float(hi) < 5.0 and -5.0 < float(lo) < -3.0
    sym = PercentileObserver(symmetric=True, percentile=99.99)
    sym(x)
    lo, hi = sym.calculate_range()
    assert 3.0 < float(hi) < 5.0 and float(lo) == -float(hi)


def test_percentile_per_channel() -> None:
    x = torch.randn(3, 10_000, generator=torch.Generator().manual_seed(2))
    x[1, 7] = 500.0
    obs = PercentileObserver(axis=0, percentile=99.9)
    obs(x)
    _, hi = obs.calculate_range()
    assert float(hi.max()) < 5.0


@pytest.mark.parametrize("cls", [MSEObserver, EntropyObserver])
@pytest.mark.parametrize("symmetric", [False, True])
def test_mse_and_entropy_clip_a_heavy_tailed_distribution(cls: type, symmetric: bool) -> None:
    x = _laplace()  # 100k samples: |x| reaches about ln(100k) = 11.5
    minmax = MinMaxObserver()
    minmax(x)
    mm_lo, mm_hi = (float(v) for v in minmax.calculate_range())
    for bits, shrink in ((8, 0.9), (4, 0.6)):
        obs = cls(bits, symmetric)
        for chunk in x.chunk(4):
            obs(chunk)
        lo, hi = (float(v) for v in obs.calculate_range())
        assert mm_lo <= lo < 0 < hi <= mm_hi
        assert hi - lo < shrink * (mm_hi - mm_lo)
        if bits == 4:  # the MSE-optimal clip of a unit Laplace at 4 bits is about 5 (Banner et al.)
            assert 3.5 < hi < 6.5


def test_mse_choice_is_near_the_brute_force_optimum() -> None:
    x = _laplace(20_000)

    def mse(amax: float) -> float:
        s, z, qmin, qmax = qparams(-amax, amax, 4, True)
        return float((fake_quantize(x, s, z, qmin, qmax) - x).pow(2).mean())

    obs = MSEObserver(4, True)
    obs(x)
    lo, hi = obs.calculate_range()
    chosen = mse(max(-float(lo), float(hi)))
    amax = float(x.abs().max())
    best = min(mse(amax * k / 400) for k in range(1, 401))
    assert chosen <= 1.03 * best
    assert chosen < 0.5 * mse(amax)


def test_mse_per_channel_shrinks_each_channel_only_when_it_helps() -> None:
    g = torch.Generator().manual_seed(3)
    w = torch.cat([_laplace(2 * 4096).reshape(2, 4096), torch.rand(2, 4096, generator=g) * 2 - 1])
    obs = MSEObserver(4, True, axis=0)
    obs(w)
    _, hi = obs.calculate_range()
    amax = w.abs().max(dim=1).values
    assert bool((hi[:2] < 0.7 * amax[:2]).all())  # heavy tails: clip
    assert bool((hi[2:] > 0.8 * amax[2:]).all())  # uniform: keep (nearly) the full range


def test_entropy_ignores_relu_zeros_and_is_per_tensor_only() -> None:
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(4)).relu()
    obs = EntropyObserver()
    obs(x)
    lo, hi = obs.calculate_range()
    assert float(lo) == 0.0 and 3.0 < float(hi) <= float(x.max())
    with pytest.raises(ConfigError, match="per tensor"):
        EntropyObserver(axis=0)


def test_kl_threshold_keeps_everything_for_a_uniform_histogram() -> None:
    hist = np.ones(1024)
    assert kl_threshold(hist, 128) == 1024
    assert kl_threshold(np.ones(100), 128) == 100


def test_histogram_growth_merges_bins_exactly() -> None:
    h = Histogram(bins=64)
    h.add(torch.linspace(0, 1, 1000))
    h.add(torch.tensor([-50.0, 300.0]))  # much wider: bins double until the range fits
    assert h.counts.sum() == 1002 and h.total == 1002
    assert h.counts.size <= 128
    edges = h.edges
    assert edges[0] <= -50.0 and edges[-1] > 300.0
    folded = h.folded()
    assert folded.sum() == 1002
    assert h.quantile(0.5) == pytest.approx(0.5, abs=h.width)


def test_make_observer_by_name() -> None:
    for name in ("minmax", "moving_average", "percentile", "mse", "entropy"):
        assert make_observer(name, 8, False).name == name
    with pytest.raises(ConfigError, match="observer"):
        make_observer("histogram", 8, False)
