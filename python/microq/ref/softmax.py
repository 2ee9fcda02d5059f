"""Integer reference of int8 softmax (c_runtime/src/mq_softmax.c): TFLite Micro's reference
kernel with gemmlowp's fixed-point exp and reciprocal, in numpy int64.

Fixed-point numbers are gemmlowp FixedPoint<int32, I>: raw int32 values with I integer bits,
written QI.(31-I). Scaled differences are Q5.26, exp() is Q0.31, the row sum is Q12.19.
"""

from __future__ import annotations

import numpy as np

from ..qir import SoftmaxParams
from .arith import INT32_MAX, INT32_MIN, check_acc, clamp, mbqm, rdbpot, srdhm

ACCUM_BITS = 12
MAX_ROW_SIZE = 4095  # each exp term is <= 2^19 in Q12.19: 4095 of them fit int32

EXP_OF_MINUS_POW2 = (  # exp(-2^j), Q0.31, for j = -2 .. 4
    1672461947,
    1302514674,
    790015084,
    290630308,
    39332535,
    720401,
    242,
)


def sat_shl(x, e: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT<e> for 0 < e < 31: saturating left shift."""
    x = np.asarray(x, np.int64)
    threshold = (1 << (31 - e)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, x << e))


def exp_on_interval_between_negative_one_quarter_and_0_excl(a) -> np.ndarray:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out (Taylor series around -1/8)."""
    constant_term = 1895147668  # exp(-1/8)
    constant_1_over_3 = 715827883
    x = np.asarray(a, np.int64) + (1 << 28)
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rdbpot(x4, 2)
    x4_over_24_plus_x3_over_6_plus_x2_over_2 = rdbpot(
        srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1
    )
    return constant_term + srdhm(constant_term, x + x4_over_24_plus_x3_over_6_plus_x2_over_2)


def exp_on_negative_values(a) -> np.ndarray:
    """exp(a) for a <= 0: a is Q5.26, the result Q0.31."""
    a = np.asarray(a, np.int64)
    one_quarter = 1 << 24
    a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        a_mod_quarter_minus_one_quarter * 32
    )
    remainder = a_mod_quarter_minus_one_quarter - a
    for j, multiplier in enumerate(EXP_OF_MINUS_POW2):
        bit_set = (remainder & (1 << (24 + j))) != 0
        result = np.where(bit_set, srdhm(result, multiplier), result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a) -> np.ndarray:
    """1 / (1 + a) for a in [0, 1), Q0.31 in and out (Newton-Raphson in Q2.29)."""
    a = np.asarray(a, np.int64)
    half_denominator = (a + INT32_MAX + 1) // 2  # RoundingHalfSum(a, 1.0); the sum is > 0
    x = 1515870810 + srdhm(half_denominator, -1010580540)  # 48/17 - 32/17 * d
    for _ in range(3):
        half_denominator_times_x = srdhm(half_denominator, x)
        one_minus_half_denominator_times_x = (1 << 29) - half_denominator_times_x
        x = x + sat_shl(srdhm(x, one_minus_half_denominator_times_x), 2)
    return sat_shl(x, 1)


def count_leading_zeros(x) -> np.ndarray:
    """Leading zeros of non-negative values as uint32 (32 for 0)."""
    x = np.asarray(x, np.int64)
    bit_length = sum(((x >> k) > 0).astype(np.int64) for k in range(32))
    return 32 - bit_length


def rescale_diff(p: SoftmaxParams, diff, rounding: str) -> np.ndarray:
    """diff (int8 steps, diff >= diff_min) times beta * input_scale, as Q5.26."""
    if rounding == "single":
        return mbqm(diff, p.input_multiplier, p.input_left_shift, "single")
    return srdhm(np.asarray(diff, np.int64) * (1 << p.input_left_shift), p.input_multiplier)


def softmax(p: SoftmaxParams, x, rounding: str = "double") -> np.ndarray:
    """int8 softmax over the last axis; output scale 1/256, zero point -128."""
    return _softmax(p, x, None, rounding)


def softmax_masked(p: SoftmaxParams, x, keep, rounding: str = "double") -> np.ndarray:
    """softmax over the last axis of the kept keys only (c_runtime mq_softmax_masked_s8).

    keep: bool/0-1 array broadcasting against x. A masked key gets probability exactly 0 (-128)
    and takes no part in the max or the sum; a row with every key masked is all -128."""
    x = np.asarray(x, np.int64)
    keep = np.broadcast_to(np.asarray(keep) != 0, x.shape)
    return _softmax(p, x, keep, rounding)


def _softmax(p: SoftmaxParams, x, keep, rounding: str) -> np.ndarray:
    x = np.asarray(x, np.int64)
    if x.shape[-1] > MAX_ROW_SIZE:
        raise ValueError(f"softmax row size {x.shape[-1]} exceeds {MAX_ROW_SIZE}")
    if keep is None:
        max_in_row = x.max(axis=-1, keepdims=True)
    else:  # the C kernel starts its max at -128: an all-masked row keeps that
        max_in_row = np.where(keep, x, -128).max(axis=-1, keepdims=True, initial=-128)
    diff = x - max_in_row
    valid = diff >= p.diff_min
    if keep is not None:
        valid &= keep
    # Entries below diff_min are skipped by the kernel; 0 keeps them harmless here.
    e = exp_on_negative_values(rescale_diff(p, np.where(valid, diff, 0), rounding))
    sum_of_exps = np.where(valid, rdbpot(e, ACCUM_BITS), 0).sum(axis=-1, keepdims=True)
    check_acc(sum_of_exps, "softmax sum of exponentials")  # terms >= 0: the sum bounds all

    headroom_plus_one = count_leading_zeros(sum_of_exps)
    num_bits_over_unit = ACCUM_BITS - headroom_plus_one
    shifted_sum_minus_one = (sum_of_exps << np.minimum(headroom_plus_one, 31)) - (1 << 31)
    shifted_scale = one_over_one_plus_x_for_x_in_0_1(np.maximum(shifted_sum_minus_one, 0))
    exponent = num_bits_over_unit + 31 - 8
    # exponent > 31 (sum >= 2^28) makes every probability round to 0; int64 rdbpot gets that
    # right without the special case the int32 C kernel needs.
    unsat = rdbpot(srdhm(shifted_scale, e), np.clip(exponent, 0, 62))
    out = np.where(valid, clamp(unsat - 128, -128, 127), -128)
    return out.astype(np.int8)
