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


class Int32Overflow(AssertionError):
    """A reference kernel met a value outside int32: the C would overflow (undefined behaviour
    on the MCU). The compile-time guards (quant/guards.py) must make this impossible, so it is
    an assertion: a test that reaches it has found a bug."""


def check_i32(x, what: str) -> np.ndarray:
    """x (int64) unchanged if every value fits int32, else Int32Overflow naming `what`."""
    x = _i64(x)
    if x.size and (int(x.max()) > INT32_MAX or int(x.min()) < INT32_MIN):
        bad = int(x.max()) if int(x.max()) > INT32_MAX else int(x.min())
        raise Int32Overflow(f"{what}: {bad} does not fit int32 (the C kernel would overflow)")
    return x


def check_acc(abs_sum, what: str) -> None:
    """The order-free accumulator bound: the sum of |terms| (and |bias|) of every accumulator
    fits int32, so no partial sum in any order overflows."""
    check_i32(abs_sum, f"{what} accumulator (sum of |terms| + |bias|)")


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
    x = check_i32(x, "requantization input")
    m = _i64(multiplier)
    shift = _i64(shift)
    if shift.size and (int(shift.min()) < -31 or int(shift.max()) > 31):
        raise Int32Overflow(f"requantization shift {shift.min()}..{shift.max()} is outside "
                            "[-31, 31]")
    if rounding == "single":
        if shift.size and int(shift.max()) > 30:
            raise Int32Overflow(f"single-rounding shift {shift.max()} is above 30")
        total = 31 - shift
        out = (x * m + (np.int64(1) << (total - 1))) >> total
        return check_i32(out, "single-rounding requantization result")
    if rounding != "double":
        raise ValueError(f"rounding must be 'double' or 'single', not {rounding!r}")
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rdbpot(srdhm(check_i32(x << left, "requantization input << shift"), m), right)


def quantize_multiplier(real: float, rounding: str = "double") -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real ~= M * 2^(shift-31), M in [2^30, 2^31-1] (or 0)."""
    if real < 0:
        raise ValueError("quantize_multiplier needs a non-negative multiplier")
    if real == 0.0:
        return 0, 0
    if not math.isfinite(real):
        from ..errors import MicroqError

        raise MicroqError(f"requantization multiplier {real!r} is not finite: the scales "
                          "involved are out of range")
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
