"""Integer reference of the batched int8 matmul: the executable spec of
c_runtime/src/mq_matmul.c."""

from __future__ import annotations

import numpy as np

from ..qir import BatchMatMulParams
from .arith import check_acc, clamp, mbqm

MAX_DEPTH = 32768  # MQ_MATMUL_MAX_DEPTH: K * 255^2 stays below 2^31


def batch_matmul(
    p: BatchMatMulParams, lhs: np.ndarray, rhs: np.ndarray, rounding: str = "double"
) -> np.ndarray:
    """lhs int8 [.., M, K], rhs int8 [.., K, N] (or [.., N, K] when p.rhs_transposed) ->
    int8 [.., M, N]; leading axes broadcast numpy-style.

    acc[.., i, j] = sum_k (lhs[.., i, k] + lhs_offset) * (rhs'[.., k, j] + rhs_offset)
    """
    a = np.asarray(lhs, np.int64) + p.lhs_offset
    b = np.asarray(rhs, np.int64) + p.rhs_offset
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"batch_matmul needs rank >= 2 operands, got {a.shape} and {b.shape}")
    if p.rhs_transposed:
        b = np.swapaxes(b, -1, -2)
    if a.shape[-1] != b.shape[-2] or a.shape[-1] > MAX_DEPTH:
        raise ValueError(f"batch_matmul depth mismatch or too deep: {a.shape} @ {b.shape}")
    acc = np.matmul(a, b)  # int64 matmul: exact, |acc| < 2^31 by the depth bound
    check_acc(np.matmul(np.abs(a), np.abs(b)), "batch_matmul")
    out = mbqm(acc, p.output_multiplier, p.output_shift, rounding)
    return clamp(out + p.output_offset, p.act_min, p.act_max).astype(np.int8)
