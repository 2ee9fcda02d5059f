"""Integer reference of the fully connected layer: the executable spec of c_runtime/src/mq_fc.c."""

from __future__ import annotations

import numpy as np

from microq.qir import FCParams
from microq.ref.arith import check_acc, clamp, mbqm


def fully_connected(p: FCParams, x: np.ndarray, rounding: str = "double") -> np.ndarray:
    """x int8 [rows, K], filter [out, K] -> int8 [rows, out].

    acc[r, o] = bias[o] + sum_k (x[r, k] + input_offset) * (filter[o, k] + filter_offset)
    """
    out_c = p.filter.shape[0]
    xo = x.astype(np.int64) + p.input_offset
    wo = p.filter.astype(np.int64) + p.filter_offset
    acc = xo @ wo.T  # int64 matmul: exact (no BLAS, no float)
    bias = np.zeros(out_c, dtype=np.int64) if p.bias is None else p.bias.astype(np.int64)
    acc += bias
    check_acc(np.abs(xo) @ np.abs(wo).T + np.abs(bias), "fully_connected")
    out = mbqm(acc, p.multiplier.astype(np.int64), p.shift.astype(np.int64), rounding)
    return clamp(out + p.output_offset, p.act_min, p.act_max).astype(np.int8)
