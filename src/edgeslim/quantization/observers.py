"""Observers: accumulate statistics over calibration batches and choose a clipping range (min, max).

* ``minmax``: the exact running min/max (per tensor or per channel); right for weights.
* ``moving_average``: exponential moving average of each batch's min/max (QAT activations: a single
  outlier batch does not widen the range for the rest of training). With ``averaging_constant=1``
  it tracks the latest tensor only (QAT weights, which change every step).
* ``percentile``: the p-th / (100-p)-th percentile (default 99.99) read off a histogram, so a few
  outliers do not stretch the range.
* ``mse``: grid search over shrunk ranges for the one with the smallest quantization MSE.
* ``entropy``: the TensorRT KL-divergence calibration on a 2048-bin histogram of |x|.

Histogram-based observers (percentile, mse, entropy per tensor) keep a histogram anchored at zero
whose bin width doubles (adjacent bins merged, exactly) when new batches widen the range, so every
calibration batch counts, not just the first. Observer state is not in the ``state_dict``: only
the frozen ``scale``/``zero_point`` of a :class:`~edgeslim.quantization.modules.FakeQuantize` are.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from edgeslim.errors import ConfigError
from edgeslim.quantization.fake_quant import check_bits, fake_quantize, qparams

ObserverName = Literal["minmax", "moving_average", "percentile", "mse", "entropy"]
OBSERVERS: tuple[str, ...] = ("minmax", "moving_average", "percentile", "mse", "entropy")


def channels_first(x: Tensor, axis: int) -> Tensor:
    """View ``x`` as [channels, everything else] for per-channel statistics."""
    return x.detach().float().transpose(0, axis % x.dim()).reshape(x.shape[axis], -1)


class Observer(nn.Module):
    """Base class: ``forward(x)`` records ``x`` (and returns it); :meth:`calculate_range` gives
    (min, max) as 0-d tensors (per tensor, ``axis=None``) or 1-d tensors (per channel along ``axis``).

    ``bits``/``symmetric`` describe the quantizer the range is for; range searches (mse, entropy)
    need them, the others ignore them.
    """

    name = "observer"

    def __init__(self, bits: int = 8, symmetric: bool = False, axis: int | None = None) -> None:
        super().__init__()
        self.bits = check_bits(bits)
        self.symmetric = symmetric
        self.axis = axis
        self.min_val: Tensor | None = None
        self.max_val: Tensor | None = None

    @property
    def has_data(self) -> bool:
        return self.min_val is not None

    def forward(self, x: Tensor) -> Tensor:
        if x.numel():
            self.observe(x.detach())
        return x

    def observe(self, x: Tensor) -> None:
        lo, hi = self._batch_minmax(x)
        self._update_minmax(lo, hi)

    def _batch_minmax(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.axis is None:
            lo, hi = torch.aminmax(x.float())
            return lo, hi
        lo, hi = torch.aminmax(channels_first(x, self.axis), dim=1)
        return lo, hi

    def _update_minmax(self, lo: Tensor, hi: Tensor) -> None:
        if self.min_val is None or self.max_val is None or self.min_val.shape != lo.shape:
            self.min_val, self.max_val = lo.clone(), hi.clone()
        else:
            self.min_val = torch.minimum(self.min_val, lo)
            self.max_val = torch.maximum(self.max_val, hi)

    def calculate_range(self) -> tuple[Tensor, Tensor]:
        """The chosen (min, max); the observed min/max unless a subclass searches for a better one."""
        if self.min_val is None or self.max_val is None:
            raise RuntimeError(f"{type(self).__name__} has observed no data yet")
        return self.min_val.clone(), self.max_val.clone()

    def calculate_qparams(self) -> tuple[Tensor, Tensor, int, int]:
        lo, hi = self.calculate_range()
        return qparams(lo, hi, self.bits, self.symmetric)

    def reset(self) -> None:
        self.min_val = self.max_val = None

    def extra_repr(self) -> str:
        return f"bits={self.bits}, symmetric={self.symmetric}, axis={self.axis}"


class MinMaxObserver(Observer):
    """The running min and max of everything observed."""

    name = "minmax"


class MovingAverageMinMaxObserver(Observer):
    """``range <- range + c * (batch range - range)``; the first batch initializes it."""

    name = "moving_average"

    def __init__(
        self,
        bits: int = 8,
        symmetric: bool = False,
        axis: int | None = None,
        averaging_constant: float = 0.01,
    ) -> None:
        super().__init__(bits, symmetric, axis)
        if not 0.0 < averaging_constant <= 1.0:
            raise ConfigError(f"averaging_constant must be in (0, 1], got {averaging_constant}")
        self.averaging_constant = averaging_constant

    def _update_minmax(self, lo: Tensor, hi: Tensor) -> None:
        if self.min_val is None or self.max_val is None or self.min_val.shape != lo.shape:
            self.min_val, self.max_val = lo.clone(), hi.clone()
            return
        c = self.averaging_constant
        self.min_val = self.min_val + c * (lo - self.min_val)
        self.max_val = self.max_val + c * (hi - self.max_val)


class Histogram:
    """Counts of ``x`` in bins ``[k w, (k+1) w)`` for integers ``k`` in ``[kmin, kmin + len)``.

    Anchoring the bins at zero makes two things exact: merging adjacent bin pairs when the range
    grows (width doubles), and folding into a histogram of ``|x|`` (bin k with bin -k-1).
    """

    def __init__(self, bins: int = 2048, track_zeros: bool = False) -> None:
        if bins < 16:
            raise ConfigError(f"a histogram needs at least 16 bins, got {bins}")
        self.bins = bins
        self.width = 0.0
        self.kmin = 0
        self.counts = np.zeros(0, dtype=np.float64)
        self.total = 0.0
        self.track_zeros = track_zeros
        self.zeros = 0.0  # exact zeros (ReLU outputs, padding): in bin 0, and always exact when quantized

    def add(self, x: Tensor) -> None:
        xf = x.detach().reshape(-1).float()
        if not xf.numel():
            return
        lo_t, hi_t = torch.aminmax(xf)
        if not (torch.isfinite(lo_t) and torch.isfinite(hi_t)):
            xf = xf[torch.isfinite(xf)]
            if not xf.numel():
                return
            lo_t, hi_t = torch.aminmax(xf)
        lo, hi = min(float(lo_t), 0.0), max(float(hi_t), 0.0)
        if self.width == 0.0:
            self.width = max((hi - lo) / self.bins, 1e-12)
        while True:  # widen the bins first, so a much wider batch never allocates a huge array
            kmin, kmax = math.floor(lo / self.width), math.floor(hi / self.width)
            if self.counts.size:
                kmin, kmax = min(kmin, self.kmin), max(kmax, self.kmin + self.counts.size - 1)
            if kmax - kmin + 1 <= 2 * self.bins:
                break
            self._coarsen()
        self._extend(kmin, kmax)
        n = self.counts.size
        lo_edge, hi_edge = self.kmin * self.width, (self.kmin + n) * self.width
        counts = torch.histc(xf.clamp(lo_edge, hi_edge), bins=n, min=lo_edge, max=hi_edge)  # one pass
        self.counts += counts.double().numpy()
        if self.track_zeros:
            self.zeros += float(torch.count_nonzero(xf == 0))
        self.total += float(xf.numel())

    def _extend(self, kmin: int, kmax: int) -> None:
        if not self.counts.size:
            self.kmin, self.counts = kmin, np.zeros(kmax - kmin + 1, dtype=np.float64)
            return
        front = self.kmin - kmin
        back = kmax - (self.kmin + self.counts.size - 1)
        self.counts = np.pad(self.counts, (max(front, 0), max(back, 0)))
        self.kmin = min(kmin, self.kmin)

    def _coarsen(self) -> None:
        """Merge bin pairs (2j, 2j+1): the width doubles and the anchor at zero is kept."""
        self.width *= 2.0
        if not self.counts.size:
            return
        if self.kmin % 2:
            self.counts = np.pad(self.counts, (1, 0))
            self.kmin -= 1
        if self.counts.size % 2:
            self.counts = np.pad(self.counts, (0, 1))
        self.counts = self.counts.reshape(-1, 2).sum(axis=1)
        self.kmin //= 2

    def coarsened(self, max_bins: int) -> tuple[np.ndarray, int, float]:
        """(counts, kmin, width) with adjacent bins merged until at most ``max_bins`` remain."""
        counts, kmin, width = self.counts, self.kmin, self.width
        while counts.size > max_bins:
            if kmin % 2:
                counts, kmin = np.pad(counts, (1, 0)), kmin - 1
            counts = np.pad(counts, (0, counts.size % 2)).reshape(-1, 2).sum(axis=1)
            kmin //= 2
            width *= 2.0
        return counts, kmin, width

    @property
    def edges(self) -> np.ndarray:
        return (self.kmin + np.arange(self.counts.size + 1)) * self.width

    def folded(self) -> np.ndarray:
        """Counts of ``|x|`` in bins ``[k w, (k+1) w)``, k = 0, 1, ...: bin k plus bin -k-1."""
        kmax = self.kmin + self.counts.size - 1
        n = max(kmax + 1, -self.kmin, 1)
        out = np.zeros(n, dtype=np.float64)
        k = self.kmin + np.arange(self.counts.size)
        np.add.at(out, np.where(k >= 0, k, -k - 1), self.counts)
        return out

    def quantile(self, q: float) -> float:
        """The value below which a share ``q`` of the counts lies (linear inside a bin)."""
        return _hist_quantile(self.counts, self.edges, q)


def _hist_quantile(counts: np.ndarray, edges: np.ndarray, q: float) -> float:
    cdf = np.cumsum(counts)
    target = q * cdf[-1]
    i = int(np.searchsorted(cdf, target, side="left"))
    i = min(i, counts.size - 1)
    before = cdf[i - 1] if i > 0 else 0.0
    frac = (target - before) / counts[i] if counts[i] > 0 else 0.0
    return float(edges[i] + min(max(frac, 0.0), 1.0) * (edges[i + 1] - edges[i]))


class _HistogramObserver(Observer):
    """Per tensor: a :class:`Histogram` plus the exact min/max."""

    track_zeros = False

    def __init__(self, bits: int = 8, symmetric: bool = False, axis: int | None = None, bins: int = 2048):
        super().__init__(bits, symmetric, axis)
        self.histogram = Histogram(bins, track_zeros=self.track_zeros)

    def observe(self, x: Tensor) -> None:
        super().observe(x)
        if self.axis is None:
            self.histogram.add(x)

    def reset(self) -> None:
        super().reset()
        self.histogram = Histogram(self.histogram.bins, track_zeros=self.track_zeros)

    def _clamped(self, lo: float, hi: float) -> tuple[Tensor, Tensor]:
        """Keep a searched range inside the observed one (never wider than minmax)."""
        min_val, max_val = super().calculate_range()
        lo_t = torch.maximum(torch.tensor(lo, dtype=torch.float32), min_val.float())
        hi_t = torch.minimum(torch.tensor(hi, dtype=torch.float32), max_val.float())
        return lo_t, torch.maximum(hi_t, lo_t)


class PercentileObserver(_HistogramObserver):
    """Clip at the ``percentile``-th value (and the ``100 - percentile``-th below; of |x| when
    symmetric). Per channel: the mean over batches of each batch's per-channel percentiles."""

    name = "percentile"

    def __init__(
        self,
        bits: int = 8,
        symmetric: bool = False,
        axis: int | None = None,
        percentile: float = 99.99,
        bins: int = 2048,
    ) -> None:
        super().__init__(bits, symmetric, axis, bins)
        if not 50.0 < percentile <= 100.0:
            raise ConfigError(f"percentile must be in (50, 100], got {percentile}")
        self.percentile = percentile
        self._channel_sum: tuple[Tensor, Tensor] | None = None
        self._batches = 0

    def observe(self, x: Tensor) -> None:
        super().observe(x)
        if self.axis is not None:
            flat = channels_first(x, self.axis)
            q = self.percentile / 100.0
            if self.symmetric:
                hi = _kth(flat.abs(), q)
                lo = -hi
            else:
                lo, hi = _kth(flat, 1.0 - q), _kth(flat, q)
            if self._channel_sum is None or self._channel_sum[0].shape != lo.shape:
                self._channel_sum, self._batches = (lo, hi), 0
            else:
                self._channel_sum = (self._channel_sum[0] + lo, self._channel_sum[1] + hi)
            self._batches += 1

    def reset(self) -> None:
        super().reset()
        self._channel_sum, self._batches = None, 0

    def calculate_range(self) -> tuple[Tensor, Tensor]:
        if not self.has_data:
            return super().calculate_range()
        if self.axis is not None and self._channel_sum is not None:
            return self._channel_sum[0] / self._batches, self._channel_sum[1] / self._batches
        q = self.percentile / 100.0
        h = self.histogram
        if self.symmetric:
            folded = h.folded()
            amax = _hist_quantile(folded, np.arange(folded.size + 1) * h.width, q)
            return self._clamped(-amax, amax)
        return self._clamped(h.quantile(1.0 - q), h.quantile(q))


def _kth(flat: Tensor, q: float) -> Tensor:
    """Per-row q-quantile (nearest rank) of a [C, N] tensor; kthvalue has no size limit."""
    n = flat.shape[1]
    k = min(max(1, math.ceil(q * n)), n)
    return flat.kthvalue(k, dim=1).values


class MSEObserver(_HistogramObserver):
    """Search ``num_candidates`` ranges ``a * [min, max]`` (a in (0, 1]) for the smallest MSE between
    the data and its quantized version. Per tensor on the histogram (2 points per bin); per channel
    on the latest tensor observed (weights), each channel choosing its own ``a``."""

    name = "mse"

    def __init__(
        self,
        bits: int = 8,
        symmetric: bool = False,
        axis: int | None = None,
        num_candidates: int = 100,
        bins: int = 2048,
    ) -> None:
        super().__init__(bits, symmetric, axis, bins)
        self.num_candidates = num_candidates
        self._latest: Tensor | None = None

    def observe(self, x: Tensor) -> None:
        super().observe(x)
        if self.axis is not None:
            self._latest = channels_first(x, self.axis)

    def reset(self) -> None:
        super().reset()
        self._latest = None

    def _alphas(self) -> Tensor:
        n = self.num_candidates
        return torch.arange(1, n + 1, dtype=torch.float32) / n

    def calculate_range(self) -> tuple[Tensor, Tensor]:
        if not self.has_data:
            return super().calculate_range()
        if self.axis is not None and self._latest is not None:
            return self._per_channel(self._latest)
        counts, kmin, width = self.histogram.coarsened(self.histogram.bins)
        sub = np.array([0.25, 0.75])
        points = torch.from_numpy(((kmin + np.arange(counts.size))[:, None] + sub).reshape(-1) * width)
        weights = torch.from_numpy(np.repeat(counts / 2.0, 2))
        keep = weights > 0
        points, weights = points[keep].float(), weights[keep].float()
        min_val, max_val = super().calculate_range()
        lo, hi = float(min_val), float(max_val)
        alphas = self._alphas()
        # all candidates at once: candidate k is "channel" k of a per-channel fake quantization
        scale, zp, qmin, qmax = qparams(alphas * lo, alphas * hi, self.bits, self.symmetric)
        grid = points.unsqueeze(0).expand(alphas.numel(), -1)
        err = (weights * (fake_quantize(grid, scale, zp, qmin, qmax, axis=0) - grid) ** 2).sum(dim=1)
        best = float(alphas[int(torch.argmin(err))])
        return self._clamped(best * lo, best * hi)

    def _per_channel(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        lo, hi = flat.min(dim=1).values.clamp(max=0), flat.max(dim=1).values.clamp(min=0)
        best_err = torch.full_like(lo, math.inf)
        best_lo, best_hi = lo.clone(), hi.clone()
        for a in self._alphas().tolist():
            scale, zp, qmin, qmax = qparams(a * lo, a * hi, self.bits, self.symmetric)
            err = ((fake_quantize(flat, scale, zp, qmin, qmax, axis=0) - flat) ** 2).mean(dim=1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_lo = torch.where(better, a * lo, best_lo)
            best_hi = torch.where(better, a * hi, best_hi)
        return best_lo, best_hi


class EntropyObserver(_HistogramObserver):
    """TensorRT's entropy calibration: the threshold T on the |x| histogram minimizing
    KL(P || Q), P the clipped reference distribution, Q its quantization into 2^(b-1) levels
    (2^b when the data is non-negative and the quantizer asymmetric). Per tensor only."""

    name = "entropy"
    track_zeros = True

    def __init__(
        self,
        bits: int = 8,
        symmetric: bool = False,
        axis: int | None = None,
        bins: int = 2048,
        stride: int = 1,
    ) -> None:
        if axis is not None:
            raise ConfigError(
                "observer 'entropy' is per tensor only (activations); use 'minmax' or 'mse' for weights"
            )
        super().__init__(bits, symmetric, axis, bins)
        self.stride = max(1, stride)

    def calculate_range(self) -> tuple[Tensor, Tensor]:
        if not self.has_data:
            return super().calculate_range()
        min_val, _ = super().calculate_range()
        h = self.histogram
        unsigned = float(min_val) >= 0.0 and not self.symmetric
        folded = h.folded()
        folded[0] = max(folded[0] - h.zeros, 0.0)  # exact zeros cost nothing at any threshold
        width = h.width
        while folded.size > h.bins:  # the KL search runs on at most `bins` bins
            folded = np.pad(folded, (0, folded.size % 2)).reshape(-1, 2).sum(axis=1)
            width *= 2.0
        levels = 2 ** (self.bits - 1 + int(unsigned))
        threshold = kl_threshold(folded, levels, self.stride) * width
        return self._clamped(-threshold, threshold)


def kl_threshold(hist: np.ndarray, levels: int, stride: int = 1) -> int:
    """Number of leading bins of ``hist`` whose clipping minimizes KL(P || Q) (TensorRT's method)."""
    n = hist.size
    if n <= levels:
        return n
    # ignore empty trailing bins: they cannot matter and only slow the search
    last = int(np.nonzero(hist)[0][-1]) + 1 if hist.any() else n
    if last <= levels:
        return last
    best_i, best_kl = last, math.inf
    suffix = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # suffix[i] = sum(hist[i:])
    for i in range(levels, last + 1, stride):
        ref = hist[:i].copy()
        ref[-1] += suffix[i]
        nonzero = hist[:i] != 0
        chunk = (np.arange(i) * levels) // i  # which of the `levels` quantized bins each bin joins
        sums = np.bincount(chunk, weights=hist[:i], minlength=levels)
        used = np.bincount(chunk[nonzero], minlength=levels)
        q = np.where(nonzero, sums[chunk] / np.maximum(used[chunk], 1), 0.0)
        p_sum, q_sum = ref.sum(), q.sum()
        if p_sum <= 0 or q_sum <= 0:
            continue
        p, q = ref / p_sum, q / q_sum
        mask = p > 0
        if np.any(q[mask] == 0):
            continue
        kl = float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
        if kl < best_kl:
            best_i, best_kl = i, kl
    return best_i


def make_observer(
    name: str,
    bits: int,
    symmetric: bool,
    axis: int | None = None,
    *,
    percentile: float = 99.99,
    averaging_constant: float = 0.01,
) -> Observer:
    """Build an observer by name (one of :data:`OBSERVERS`)."""
    if name == "minmax":
        return MinMaxObserver(bits, symmetric, axis)
    if name == "moving_average":
        return MovingAverageMinMaxObserver(bits, symmetric, axis, averaging_constant)
    if name == "percentile":
        return PercentileObserver(bits, symmetric, axis, percentile)
    if name == "mse":
        return MSEObserver(bits, symmetric, axis)
    if name == "entropy":
        return EntropyObserver(bits, symmetric, axis)
    raise ConfigError(f"observer must be one of {', '.join(OBSERVERS)}, got {name!r}")
