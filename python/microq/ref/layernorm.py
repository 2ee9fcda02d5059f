"""Integer reference of int8 LayerNorm over the last axis: the executable spec of
c_runtime/src/mq_layernorm.c (exact integer mean/variance, Newton inverse square root)."""

from __future__ import annotations

import numpy as np

from ..qir import LayerNormParams
from .arith import check_acc, clamp, mbqm, rdbpot

NORM_BITS = 20  # MQ_LAYERNORM_NORM_BITS: z = (x - mean) / sqrt(var + eps) in Q11.20
OUT_BITS = 8  # MQ_LAYERNORM_OUT_BITS: gamma * z + beta in 1/256 output steps
VAR_BITS = 16  # MQ_LAYERNORM_VAR_BITS: extra fractional bits of the variance
MAX_ROW = 32768  # MQ_LAYERNORM_MAX_ROW
Q30_ONE = 1 << 30


def inv_sqrt_q30(v) -> tuple[np.ndarray, np.ndarray]:
    """(y, k) with 1 / sqrt(v) ~= y * 2^-(30 + k) for int64 v > 0: v = a * 4^k, a in [1, 4),
    y = 1 / sqrt(a) in Q.30 by 4 Newton steps y' = y * (3 - a y^2) / 2 from the chord
    1 - (a - 1) / 6. Every value stays positive and below 2^62."""
    v = np.asarray(v, np.int64)
    bits = sum(((v >> b) > 1).astype(np.int64) for b in range(63))  # floor(log2 v)
    k = bits >> 1
    a = np.where(
        2 * k <= 30, v << np.maximum(30 - 2 * k, 0), v >> np.maximum(2 * k - 30, 0)
    )
    y = Q30_ONE - (((a - Q30_ONE) * 43691) >> 18)  # 43691 / 2^18 ~ 1/6, no division
    for _ in range(4):
        a_y2 = (a * ((y * y) >> 30)) >> 30
        y = (y * (3 * Q30_ONE - a_y2)) >> 31
    return y, k


def layernorm(p: LayerNormParams, x, rounding: str = "double") -> np.ndarray:
    """int8 x [rows, C] -> int8 [rows, C], normalized over each row."""
    x = np.asarray(x, np.int64)
    rows, row_size = x.shape
    if not 1 <= row_size <= MAX_ROW or len(p.multiplier) != row_size:
        raise ValueError(f"layernorm row size {row_size} vs {len(p.multiplier)} channels")
    total = x.sum(axis=1, keepdims=True)
    sum_sq = (x * x).sum(axis=1, keepdims=True)
    check_acc(np.abs(x).sum(axis=1), "layernorm sum")  # int32 in the C; var is int64
    check_acc(sum_sq, "layernorm sum of squares")
    var = ((row_size * sum_sq - total * total) << VAR_BITS) + p.eps  # C^2 2^16 (var + eps)
    # var == 0 only for a constant row without eps: every n is 0 then, inv = 0 keeps z = 0.
    inv, k = inv_sqrt_q30(np.maximum(var, 1))
    inv = np.where(var > 0, inv, 0)
    k = np.where(var > 0, k, 0)
    norm_shift = 30 + k - NORM_BITS - VAR_BITS // 2  # z = n 2^8 / sqrt(var) in Q.20
    n = row_size * x - total  # row_size * (x - mean), exact
    z = (n * inv + (np.int64(1) << (norm_shift - 1))) >> norm_shift  # nearest, ties up
    mult = np.asarray(p.multiplier, np.int64)
    shift = np.asarray(p.shift, np.int64)
    scaled = mbqm(z, mult, shift, rounding)
    bias = np.asarray(p.bias, np.int64)
    check_acc(np.abs(scaled) + np.abs(bias), "layernorm output")
    acc = scaled + bias
    out = rdbpot(acc, OUT_BITS) + p.output_offset
    return clamp(out, p.act_min, p.act_max).astype(np.int8)
