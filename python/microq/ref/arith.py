"""Integer arithmetic of TFLite/TFLite Micro (gemmlowp), vectorized in numpy: the bottom layer.

Everything here is int64 numpy arithmetic that reproduces the C kernels' int32 arithmetic
bit for bit (see c_runtime/include/mq_requant.h). `rounding` is "double" (TFLite Micro's
default, gemmlowp) or "single" (TFLITE_SINGLE_ROUNDING).
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def wrap_i32(x) -> np.ndarray:
    """Two's complement wrap of int64 values to the int32 range (as a C cast would do)."""
    x = _i64(x)
    return ((x + 2**31) & 0xFFFFFFFF) - 2**31


def srdhm(a, b) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul on int32 values (returns int64 holding int32)."""
    a = _i64(a)
    b = _i64(b)
    ab = a * b  # |a*b| <= 2^62: no int64 overflow
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    s = ab + nudge
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))  # C division truncates toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)


def rdbpot(x, e) -> np.ndarray:
    """RoundingDivideByPOT: x / 2^e, rounded half away from zero, 0 <= e <= 31."""
    x = _i64(x)
    e = _i64(e)
    mask = (np.int64(1) << e) - 1
    rem = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (rem > threshold)


def mbqm(x, multiplier, shift, rounding: str = "double") -> np.ndarray:
    """MultiplyByQuantizedMultiplier: x * M * 2^(shift-31) with TFLite Micro's rounding."""
    x = _i64(x)
    m = _i64(multiplier)
    shift = _i64(shift)
    if rounding == "single":
        total = 31 - shift
        return (x * m + (np.int64(1) << (total - 1))) >> total
    if rounding != "double":
        raise ValueError(f"rounding must be 'double' or 'single', not {rounding!r}")
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rdbpot(srdhm(wrap_i32(x << left), m), right)


def quantize_multiplier(real: float, rounding: str = "double") -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real ~= M * 2^(shift-31), M in [2^30, 2^31-1] (or 0)."""
    if real < 0:
        raise ValueError("quantize_multiplier needs a non-negative multiplier")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = round_half_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if rounding == "single" and shift > 30:
        return (1 << 31) - 1, 30
    return int(q_fixed), int(shift)


def round_half_away(x):
    """std::round / TfLiteRound: half away from zero (scalar or array)."""
    if np.isscalar(x):
        return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def clamp(x, lo: int, hi: int) -> np.ndarray:
    return np.minimum(np.maximum(_i64(x), lo), hi)
