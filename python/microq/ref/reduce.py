"""Integer reference of c_runtime/src/mq_reduce.c: ReduceMax / ReduceMin over any axes (the
output keeps them with size 1, no requantization) and ArgMax along one axis (int8 indices)."""

from __future__ import annotations

import numpy as np

from ..qir import ArgMaxParams, ReduceParams


def reduce_max(p: ReduceParams, x) -> np.ndarray:
    return np.asarray(x, np.int8).max(axis=tuple(p.axes), keepdims=True)


def reduce_min(p: ReduceParams, x) -> np.ndarray:
    return np.asarray(x, np.int8).min(axis=tuple(p.axes), keepdims=True)


def argmax(p: ArgMaxParams, x) -> np.ndarray:
    """Index of the largest value along p.axis, first on ties (last with select_last_index)."""
    x = np.asarray(x, np.int8)
    if not 1 <= x.shape[p.axis] <= 128:
        raise ValueError(f"argmax over {x.shape[p.axis]} values: an int8 index holds at most 128")
    if p.select_last_index:
        n = x.shape[p.axis]
        idx = n - 1 - np.flip(x, axis=p.axis).argmax(axis=p.axis)
    else:
        idx = x.argmax(axis=p.axis)
    return np.expand_dims(idx, p.axis).astype(np.int8)
