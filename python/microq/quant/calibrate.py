"""Calibration: activation ranges from running the float IR (ref.float_exec) over real samples.

Methods, with onnxruntime's definitions (onnxruntime/quantization/calibrate.py):
- `minmax`: the running min and max of every tensor.
- `percentile` (ORT's default symmetric form): a histogram of |x| (2048 bins over [min|x|,
  max|x|]); the threshold t is the left edge of the bin where the CDF reaches 99.999 %; the range
  is [-t, t] cut to the observed [min, max], so a ReLU output keeps lo = 0.
- `entropy`: TensorRT's KL-divergence search as ORT writes it: a histogram of x over
  [-max|x|, max|x|], candidate windows of 2 * i bins around zero (i >= num_quantized_bins / 2),
  each merged into num_quantized_bins bins; the window with the least KL(p || q) wins, cut to the
  observed [min, max]. ORT's default num_bins = 128 leaves a single candidate (the whole range, so
  entropy == minmax); we default to 2048 bins (TensorRT's and ORT's percentile count) so the
  search can clip outliers. Pass num_bins=128 for ORT's exact default.
- `mse`: a histogram of x over [min(min, 0), max(max, 0)]; every pair (lo * a/K, hi * b/K) is
  scored with the expected squared error of int8 quantization: clipped mass contributes its
  squared distance to the bound, in-range mass the rounding noise scale^2 / 12.

Streaming: the samples go through the float executor in batches and only per-tensor statistics
are kept, so memory does not grow with the data. Histogram methods make two passes: the first
finds each tensor's min/max, the second fills a fixed-range histogram. Each bin count then
depends on the value only, so any batching gives the same histogram as one batch of everything —
the same histogram ORT builds when its reader collects all samples in one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from ..ir import Graph
from ..ref.float_exec import run_float

METHODS = ("minmax", "percentile", "entropy", "mse")
NUM_BINS = 2048
NUM_QUANTIZED_BINS = 128
MSE_STEPS = 128  # candidate clip fractions per side


@dataclass
class Range:
    lo: float
    hi: float


@dataclass
class _MinMax:
    lo: np.float32
    hi: np.float32
    abs_lo: np.float32  # min |x| (the left edge of ORT's |x| histogram)


def passes(method: str) -> int:
    """How many times calibrate() runs the samples (for a progress bar of N * passes)."""
    return 1 if method == "minmax" else 2


def _batches(feeds: dict[str, np.ndarray], batch: int) -> Iterable[dict[str, np.ndarray]]:
    n = len(next(iter(feeds.values())))
    for i in range(0, n, batch):
        yield {k: v[i : i + batch] for k, v in feeds.items()}


def _stream(graph, feeds, batch, observe, progress) -> None:
    """Every graph input and every tensor a node produces, batch by batch, to observe()."""
    for chunk in _batches(feeds, batch):
        for k, v in chunk.items():
            observe(k, np.asarray(v, np.float32))
        run_float(graph, chunk, on_tensor=observe)
        if progress:
            progress(len(next(iter(chunk.values()))))


def calibrate(
    graph: Graph,
    feeds: dict[str, np.ndarray],
    method: str = "minmax",
    percentile: float = 99.999,
    num_bins: int = NUM_BINS,
    num_quantized_bins: int = NUM_QUANTIZED_BINS,
    batch: int = 32,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Range]:
    """Ranges of every graph input and activation tensor. `feeds` are physical-layout float32
    arrays with the samples on axis 0. `progress(n)` is called with the samples done per batch,
    in each of passes(method) passes."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r} ({', '.join(METHODS)})")
    stats: dict[str, _MinMax] = {}

    def minmax(name: str, v: np.ndarray) -> None:
        lo, hi = np.min(v), np.max(v)
        abs_lo = np.min(np.abs(v)) if method == "percentile" else np.float32(0)
        s = stats.get(name)
        if s is None:
            stats[name] = _MinMax(lo, hi, abs_lo)
        else:
            s.lo, s.hi, s.abs_lo = min(s.lo, lo), max(s.hi, hi), min(s.abs_lo, abs_lo)

    _stream(graph, feeds, batch, minmax, progress)
    if method == "minmax":
        return {k: Range(float(s.lo), float(s.hi)) for k, s in stats.items()}

    edges = {k: histogram_range(method, s) for k, s in stats.items()}
    hists = {k: np.zeros(num_bins, np.int64) for k in stats}

    def fill(name: str, v: np.ndarray) -> None:
        x = np.abs(v) if method == "percentile" else v
        hists[name] += np.histogram(x, num_bins, range=edges[name])[0]

    _stream(graph, feeds, batch, fill, progress)
    out = {}
    for k, s in stats.items():
        h, e = hists[k], np.histogram_bin_edges(np.zeros(1, np.float32), num_bins, edges[k])
        if method == "percentile":
            out[k] = percentile_range(h, e, s.lo, s.hi, percentile)
        elif method == "entropy":
            out[k] = entropy_range(h, e, s.lo, s.hi, num_quantized_bins)
        else:
            out[k] = mse_range(h, e, s.lo, s.hi)
    return out


def histogram_range(method: str, s: _MinMax) -> tuple[np.float32, np.float32]:
    """The fixed histogram range of a tensor for a method (float32, as ORT's np.histogram)."""
    if method == "percentile":
        return s.abs_lo, max(abs(s.lo), abs(s.hi))
    if method == "entropy":
        t = np.float32(max(abs(s.lo), abs(s.hi)))
        return -t, t
    return min(s.lo, np.float32(0)), max(s.hi, np.float32(0))


def _cut(lo, hi, mn, mx) -> Range:
    """A threshold pair never reaches past the observed values (ORT's final step)."""
    return Range(float(mn if lo < mn else lo), float(mx if hi > mx else hi))


def percentile_range(hist, edges, mn, mx, percentile: float = 99.999) -> Range:
    """ORT's symmetric percentile: `hist` counts |x| over `edges`."""
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile {percentile} is outside [0, 100]")
    cdf = np.cumsum(hist / hist.sum())
    t = edges[np.searchsorted(cdf, percentile / 100.0)]
    return _cut(-t, t, mn, mx)


def _smooth(p: np.ndarray, eps: float = 0.0001) -> np.ndarray | None:
    """Zeros become eps, the mass taken evenly off the non-zero bins (ORT's smooth_distribution)."""
    zeros = (p == 0).astype(np.float32)
    n_zeros = zeros.sum()
    n_nonzeros = p.size - n_zeros
    if not n_nonzeros:
        return None
    eps1 = eps * float(n_zeros) / float(n_nonzeros)
    return p.astype(np.float32) + (eps * zeros + (-eps1) * (1.0 - zeros))


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p = p / p.sum()
    q = q / q.sum()
    return float(np.float32(np.sum(p * np.log(p / q))))  # both smoothed: no zero bins left


def entropy_range(hist, edges, mn, mx, num_quantized_bins: int = NUM_QUANTIZED_BINS) -> Range:
    """ORT's get_entropy_threshold: `hist` counts x over [-t, t]; windows grow from the centre."""
    num_bins = hist.size
    zero = num_bins // 2
    half = num_quantized_bins // 2
    best, best_i = np.inf, half
    for i in range(half, zero + 1):
        start, end = zero - i, min(zero + i + 1, num_bins)
        sliced = hist[start:end]
        # reference p: the window with the clipped outliers folded into its end bins
        p = sliced.copy()
        p[0] += hist[:start].sum()
        p[-1] += hist[end:].sum()
        nonzero = (p != 0).astype(np.int64)
        # candidate q: the window merged into num_quantized_bins bins, spread back over the
        # non-zero bins (int64, truncated like ORT); leftover bins join the last merged bin
        merged = sliced.size // num_quantized_bins
        cut = num_quantized_bins * merged
        qbins = sliced[:cut].reshape(num_quantized_bins, merged).sum(axis=1)
        qbins[-1] += sliced[cut:].sum()
        norm = nonzero[:cut].reshape(num_quantized_bins, merged).sum(axis=1)
        q = np.zeros(p.size, np.int64)
        spread = np.where(norm != 0, qbins / np.maximum(norm, 1), 0.0)
        q[:cut] = np.repeat(spread, merged).astype(np.int64)
        ps, qs = _smooth(p), _smooth(q)
        div = np.inf if ps is None or qs is None else _kl(ps, qs)
        if div < best:  # the first minimum, as np.argmin
            best, best_i = div, i
    start, end = zero - best_i, min(zero + best_i + 1, num_bins)
    return _cut(edges[start], edges[end], mn, mx)


def _clip_error(centres, counts, bounds, side: str) -> np.ndarray:
    """sum of count * (x - b)^2 over the bin centres beyond each bound b (prefix sums: O(1) per
    bound). side 'lo': centres below b; 'hi': centres above b."""
    c = centres.astype(np.float64)
    n = counts.astype(np.float64)
    s0 = np.concatenate([[0.0], np.cumsum(n)])
    s1 = np.concatenate([[0.0], np.cumsum(n * c)])
    s2 = np.concatenate([[0.0], np.cumsum(n * c * c)])
    k = np.searchsorted(c, bounds, side="left" if side == "lo" else "right")
    if side == "hi":
        a0, a1, a2 = s0[-1] - s0[k], s1[-1] - s1[k], s2[-1] - s2[k]
    else:
        a0, a1, a2 = s0[k], s1[k], s2[k]
    return a2 - 2 * bounds * a1 + bounds * bounds * a0


def mse_range(hist, edges, mn, mx, steps: int = MSE_STEPS) -> Range:
    """The clip range [lo * a/steps, hi * b/steps] with the least expected int8 quantization MSE;
    `hist` counts x over [lo, hi] = [min(mn, 0), max(mx, 0)]."""
    lo, hi = min(float(mn), 0.0), max(float(mx), 0.0)
    total = float(hist.sum())
    if total == 0 or hi - lo <= 0:
        return Range(lo, hi)
    centres = (edges[:-1].astype(np.float64) + edges[1:]) / 2
    frac = np.arange(1, steps + 1) / steps
    los = lo * frac if lo < 0 else np.zeros(1)
    his = hi * frac if hi > 0 else np.zeros(1)
    e_lo = _clip_error(centres, hist, los, "lo")
    e_hi = _clip_error(centres, hist, his, "hi")
    scale = (his[None, :] - los[:, None]) / 255.0
    err = e_lo[:, None] + e_hi[None, :] + total * scale * scale / 12.0
    i, j = np.unravel_index(np.argmin(err), err.shape)
    return _cut(los[i], his[j], lo, hi)
