"""Integer reference of int8 group / instance normalization over NHWC: the executable spec of
c_runtime/src/mq_groupnorm.c (exact integer mean/variance per group, Newton inverse square
root shared with LayerNorm)."""

from __future__ import annotations

import numpy as np

from ..qir import GroupNormParams
from .arith import clamp, mbqm, rdbpot
from .layernorm import inv_sqrt_q30

NORM_BITS = 20  # MQ_GROUPNORM_NORM_BITS: z = (x - mean) / sqrt(var + eps) in Q.20
OUT_BITS = 8  # MQ_GROUPNORM_OUT_BITS: gamma * z + beta in 1/256 output steps
MAX_COUNT = 1 << 18  # MQ_GROUPNORM_MAX_COUNT


def var_bits_for(count: int) -> int:
    """The largest even var_bits <= 16 with count^2 * 2^(14 + var_bits) <= 2^60."""
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"groupnorm count {count} outside [1, {MAX_COUNT}]")
    vb = 16
    while count > 1 << ((46 - vb) // 2):
        vb -= 2
    return vb


def groupnorm(p: GroupNormParams, x, rounding: str = "double") -> np.ndarray:
    """int8 x [batches, spatial, C] -> int8 likewise, each group normalized over its
    spatial * C / groups values."""
    x = np.asarray(x, np.int64)
    batches, spatial, channels = x.shape
    groups = p.groups
    if groups < 1 or channels % groups or len(p.multiplier) != channels:
        raise ValueError(f"groupnorm of {channels} channels in {groups} groups, "
                         f"{len(p.multiplier)} multipliers")
    width = channels // groups
    count = spatial * width
    if not 1 <= count <= MAX_COUNT or count > 1 << ((46 - p.var_bits) // 2):
        raise ValueError(f"groupnorm count {count} too large for var_bits {p.var_bits}")
    xg = x.reshape(batches, spatial, groups, width)
    total = xg.sum(axis=(1, 3), keepdims=True)  # [batches, 1, groups, 1]
    sum_sq = (xg * xg).sum(axis=(1, 3), keepdims=True)
    var = ((count * sum_sq - total * total) << p.var_bits) + p.eps
    assert int(var.max(initial=0)) < 1 << 62, "groupnorm variance beyond 2^62"
    # var == 0 only for a constant group without eps: every n is 0, inv = 0 keeps z = 0.
    inv, k = inv_sqrt_q30(np.maximum(var, 1))
    inv = np.where(var > 0, inv, 0)
    k = np.where(var > 0, k, 0)
    norm_shift = 30 + k - NORM_BITS - p.var_bits // 2
    n = count * xg - total  # count * (x - mean), exact
    z = (n * inv + (np.int64(1) << (norm_shift - 1))) >> norm_shift  # nearest, ties up
    assert int(np.abs(z).max(initial=0)) < 1 << 29, "groupnorm |z| beyond 2^29"
    z = z.reshape(batches, spatial, channels)
    mult = np.asarray(p.multiplier, np.int64)
    shift = np.asarray(p.shift, np.int64)
    acc = mbqm(z, mult, shift, rounding) + np.asarray(p.bias, np.int64)
    out = rdbpot(acc, OUT_BITS) + p.output_offset
    return clamp(out, p.act_min, p.act_max).astype(np.int8)
