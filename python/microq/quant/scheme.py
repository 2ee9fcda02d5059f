"""Scheme math of the quantizer: kernel params (qir dataclasses) from float scales and zero
points, the way TFLite's Prepare functions compute them (int8-arithmetic notes §4.2-4.8)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import MicroqError
from ..qir import AddParams, MulParams, RequantizeParams, SoftmaxParams
from ..ref.arith import quantize_multiplier, round_half_away

ADD_LEFT_SHIFT = 20  # TFLite int8 ADD/SUB
SOFTMAX_DIFF_INTEGER_BITS = 5  # scaled input differences are Q5.26
MUL_MAX_SHIFT = 12  # mq_mul_s8 limit: |product| < 2^18 must stay below 2^30 after shifting
REQUANTIZE_MAX_SHIFT = 22  # mq_requantize_s8 limit: |x - zp| < 2^9 must stay below 2^31


def _check_scale(name: str, scale: float) -> None:
    if not (scale > 0 and math.isfinite(scale)):
        raise MicroqError(f"{name} must be a positive finite scale, got {scale!r}")


def quantize_multiplier_smaller_than_one_exp(real: float, rounding: str = "double"):
    """TFLite QuantizeMultiplierSmallerThanOneExp: (M, shift) with shift <= 0, 0 < real < 1."""
    if not 0.0 < real < 1.0:
        raise MicroqError(f"multiplier {real!r} must lie in (0, 1)")
    m, shift = quantize_multiplier(real, rounding)
    if shift > 0:  # pragma: no cover - frexp of a value < 1 has exponent <= 0
        raise MicroqError(f"multiplier {real!r} needs a left shift")
    return m, shift


def add_params(
    s1: float,
    zp1: int,
    s2: float,
    zp2: int,
    s_out: float,
    zp_out: int,
    act_min: int = -128,
    act_max: int = 127,
    rounding: str = "double",
) -> AddParams:
    """TFLite int8 ADD params (SUB uses the same): both inputs rescaled to 2*max(s1, s2) with
    20 bits of headroom, then the sum rescaled to the output."""
    for name, s in (("input1 scale", s1), ("input2 scale", s2), ("output scale", s_out)):
        _check_scale(name, s)
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier_smaller_than_one_exp(s1 / twice_max, rounding)
    m2, sh2 = quantize_multiplier_smaller_than_one_exp(s2 / twice_max, rounding)
    mo, sho = quantize_multiplier_smaller_than_one_exp(
        twice_max / ((1 << ADD_LEFT_SHIFT) * s_out), rounding
    )
    return AddParams(
        input1_offset=-int(zp1),
        input1_multiplier=m1,
        input1_shift=sh1,
        input2_offset=-int(zp2),
        input2_multiplier=m2,
        input2_shift=sh2,
        left_shift=ADD_LEFT_SHIFT,
        output_offset=int(zp_out),
        output_multiplier=mo,
        output_shift=sho,
        act_min=int(act_min),
        act_max=int(act_max),
    )


def mul_params(
    s1: float,
    zp1: int,
    s2: float,
    zp2: int,
    s_out: float,
    zp_out: int,
    act_min: int = -128,
    act_max: int = 127,
    rounding: str = "double",
) -> MulParams:
    """TFLite int8 MUL params: the int product is rescaled by s1 * s2 / s_out."""
    for name, s in (("input1 scale", s1), ("input2 scale", s2), ("output scale", s_out)):
        _check_scale(name, s)
    m, shift = quantize_multiplier(s1 * s2 / s_out, rounding)
    if shift > MUL_MAX_SHIFT:
        raise MicroqError(
            f"Mul output scale {s_out!r} is too small for input scales {s1!r} * {s2!r}"
        )
    return MulParams(
        input1_offset=-int(zp1),
        input2_offset=-int(zp2),
        output_offset=int(zp_out),
        output_multiplier=m,
        output_shift=shift,
        act_min=int(act_min),
        act_max=int(act_max),
    )


def requantize_params(
    s_in: float,
    zp_in: int,
    s_out: float,
    zp_out: int,
    act_min: int = -128,
    act_max: int = 127,
    rounding: str = "double",
) -> RequantizeParams:
    """int8 -> int8 change of quantization (TFLite Requantize): multiplier s_in / s_out."""
    _check_scale("input scale", s_in)
    _check_scale("output scale", s_out)
    m, shift = quantize_multiplier(s_in / s_out, rounding)
    if shift > REQUANTIZE_MAX_SHIFT:
        raise MicroqError(f"requantize ratio {s_in!r} / {s_out!r} is too large")
    return RequantizeParams(
        input_offset=-int(zp_in),
        output_offset=int(zp_out),
        multiplier=m,
        shift=shift,
        act_min=int(act_min),
        act_max=int(act_max),
    )


def softmax_params(s_in: float, beta: float = 1.0, rounding: str = "double") -> SoftmaxParams:
    """TFLite PreprocessSoftmaxScaling + CalculateInputRadius for int8 softmax: beta * s_in
    as a Q5.26 multiplier with a left shift, and the smallest difference worth computing."""
    _check_scale("input scale", s_in)
    if not (beta > 0 and math.isfinite(beta)):
        raise MicroqError(f"softmax beta must be positive and finite, got {beta!r}")
    # Single rounding caps the multiplier one bit lower, as TFLite does.
    max_real = float((1 << 31) - 1) if rounding == "double" else float((1 << 30) - 1)
    real = min(beta * s_in * (1 << (31 - SOFTMAX_DIFF_INTEGER_BITS)), max_real)
    if real <= 1.0:
        raise MicroqError(f"softmax input scale {s_in!r} * beta {beta!r} is too small")
    m, left_shift = quantize_multiplier(real, rounding)
    max_input_rescaled = ((1 << SOFTMAX_DIFF_INTEGER_BITS) - 1) << (
        31 - SOFTMAX_DIFF_INTEGER_BITS
    )
    diff_min = -(max_input_rescaled >> left_shift)  # -floor(31 * 2^26 / 2^left_shift)
    return SoftmaxParams(input_multiplier=m, input_left_shift=left_shift, diff_min=diff_min)


def lut_table(
    fn: Callable[[np.ndarray], np.ndarray], s_in: float, zp_in: int, s_out: float, zp_out: int
) -> np.ndarray:
    """int8[256] table of y = fn(x) (TFLite LUTPopulate, float64): entry x + 128 holds
    clamp(round_half_away(fn(s_in * (x - zp_in)) / s_out) + zp_out). fn takes an array."""
    _check_scale("input scale", s_in)
    _check_scale("output scale", s_out)
    x = np.arange(-128, 128, dtype=np.int64)
    y = np.asarray(fn(s_in * (x - zp_in).astype(np.float64)), dtype=np.float64)
    if y.shape != x.shape or np.isnan(y).any():
        raise MicroqError("lookup-table function must map 256 inputs to 256 non-NaN values")
    q = np.clip(round_half_away(np.clip(y / s_out, -1e9, 1e9)) + zp_out, -128, 127)
    return q.astype(np.int8)


def _quantize_bound(f: float, s_out: float, zp_out: int) -> int:
    if math.isinf(f):
        return 127 if f > 0 else -128
    return int(zp_out) + round_half_away(f / s_out)


def act_range(s_out: float, zp_out: int, lo: float, hi: float) -> tuple[int, int]:
    """TFLite CalculateActivationRangeQuantized: the clamp [act_min, act_max] of a fused
    activation clipping the real output to [lo, hi] (+-inf for no bound)."""
    _check_scale("output scale", s_out)
    act_min = min(max(-128, _quantize_bound(lo, s_out, zp_out)), 127)
    act_max = min(max(-128, _quantize_bound(hi, s_out, zp_out)), 127)
    return act_min, act_max
