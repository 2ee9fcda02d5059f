"""Integer reference of the strided slice (c_runtime/src/mq_slice.c): ONNX Slice, Split and
Gather of one index, with explicit indices."""

from __future__ import annotations

import numpy as np

from ..qir import SliceParams


def slice_count(begin: int, end: int, step: int) -> int:
    """How many indices begin, begin + step, ... lie before end: max(0, ceil((end-begin)/step))."""
    if step == 0:
        raise ValueError("slice step must not be 0")
    return max(0, -((begin - end) // step))


def slice_indices(p: SliceParams, in_shape: tuple[int, ...]) -> list[np.ndarray]:
    """Per axis, the input indices the output takes (checked against in_shape)."""
    if not (len(p.begin) == len(p.end) == len(p.step) == len(in_shape)):
        raise ValueError(f"slice params {p} do not match an input of rank {len(in_shape)}")
    axes = []
    for begin, end, step, dim in zip(p.begin, p.end, p.step, in_shape):
        idx = begin + step * np.arange(slice_count(begin, end, step), dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= dim):
            raise ValueError(f"slice {begin}:{end}:{step} leaves an axis of size {dim}")
        axes.append(idx)
    return axes


def strided_slice(p: SliceParams, x) -> np.ndarray:
    """int8 x -> x[begin[0]:end[0]:step[0], ...] with the normalized bounds of SliceParams."""
    x = np.asarray(x, np.int8)
    return np.ascontiguousarray(x[np.ix_(*slice_indices(p, x.shape))])
