"""Calibration: activation ranges from running the float IR over real samples, streaming.

`minmax` keeps the running min and max of every activation tensor. `percentile` makes a second
pass that fills a histogram per tensor over the min/max range and clips at the given percentile of
|x| mass on each side (onnxruntime's default is 99.999). Memory does not grow with the data: the
samples are fed in batches and only per-tensor statistics are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from ..ir import Graph
from ..ref.float_exec import run_float

BINS = 2048


@dataclass
class Range:
    lo: float
    hi: float


def _batches(feeds: dict[str, np.ndarray], batch: int) -> Iterable[dict[str, np.ndarray]]:
    n = len(next(iter(feeds.values())))
    for i in range(0, n, batch):
        yield {k: v[i : i + batch] for k, v in feeds.items()}


def calibrate(
    graph: Graph,
    feeds: dict[str, np.ndarray],
    method: str = "minmax",
    percentile: float = 99.999,
    batch: int = 32,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Range]:
    """Ranges of every graph input and activation tensor. `feeds` are physical-layout float32
    arrays with the samples on axis 0. `progress(n)` is called with the samples done per batch."""
    if method not in ("minmax", "percentile"):
        raise ValueError(f"unknown calibration method {method!r} (minmax, percentile)")
    ranges: dict[str, Range] = {}

    def observe(name: str, value: np.ndarray) -> None:
        lo, hi = float(np.min(value)), float(np.max(value))
        r = ranges.get(name)
        if r is None:
            ranges[name] = Range(lo, hi)
        else:
            r.lo, r.hi = min(r.lo, lo), max(r.hi, hi)

    for chunk in _batches(feeds, batch):
        for k, v in chunk.items():
            observe(k, v)
        run_float(graph, chunk, on_tensor=observe)
        if progress:
            progress(len(next(iter(chunk.values()))))
    if method == "minmax":
        return ranges

    hists = {k: np.zeros(BINS, dtype=np.int64) for k in ranges}

    def histogram(name: str, value: np.ndarray) -> None:
        r = ranges[name]
        if r.hi > r.lo:
            h, _ = np.histogram(value, bins=BINS, range=(r.lo, r.hi))
            hists[name] += h

    for chunk in _batches(feeds, batch):
        for k, v in chunk.items():
            histogram(k, v)
        run_float(graph, chunk, on_tensor=histogram)
        if progress:
            progress(len(next(iter(chunk.values()))))
    out = {}
    for name, r in ranges.items():
        h = hists[name]
        total = h.sum()
        if total == 0 or r.hi <= r.lo:
            out[name] = Range(r.lo, r.hi)
            continue
        edges = np.linspace(r.lo, r.hi, BINS + 1)
        cdf = np.cumsum(h) / total
        tail = 1.0 - percentile / 100.0
        lo_i = int(np.searchsorted(cdf, tail, side="left"))
        hi_i = int(np.searchsorted(cdf, 1.0 - tail, side="left"))
        # never clip a one-sided range (e.g. ReLU output) below zero or a range above zero
        lo = r.lo if r.lo >= 0 else min(float(edges[lo_i]), 0.0)
        hi = r.hi if r.hi <= 0 else max(float(edges[min(hi_i + 1, BINS)]), 0.0)
        out[name] = Range(lo, hi)
    return out
