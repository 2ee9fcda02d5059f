"""Integer reference of the 16x8 kernels (int16 activations, int8 weights): the executable spec of
c_runtime/src/mq_s16.c, equal to TFLite Micro's int16 reference kernels bit for bit.

TFLite's 16x8 scheme: activations are int16, symmetric (zero point 0), weights int8 symmetric
per channel, biases int64. Conv, depthwise and FC accumulate in int64 and requantize with the
64-bit MultiplyByQuantizedMultiplier (a 16-bit "reduced" multiplier, one rounding); ADD is the
int8 ADD with 15 bits of headroom instead of 20; MUL the int8 MUL; softmax, logistic and tanh are
TFLite's int16 table kernels. `rounding` selects the int32 MBQM of ADD/MUL/softmax/requantize
as in TFLite (TFLITE_SINGLE_ROUNDING); the 64-bit MBQM is the same in both builds.
"""

from __future__ import annotations

import math

import numpy as np

from ..qir import ConvParams, FCParams, Sigmoid16Params, Softmax16Params
from .arith import INT32_MAX, INT32_MIN, Int32Overflow, clamp, mbqm
from .conv import _padded_input, _tap
from .recurrent import TFL_SIGMOID_TABLE

INT16_MIN, INT16_MAX = -32768, 32767
ACC_LIMIT = 1 << 47  # TFLite's stated input range of the 64-bit MBQM

# TFLite's sigmoid(i / 24) in unsigned Q0.16 (data, not recomputable): one copy, ref.recurrent's
SIGMOID_TABLE_U16 = TFL_SIGMOID_TABLE


def _wrap_i32(x: np.ndarray) -> np.ndarray:
    """The int64 -> int32 conversion of TFLite's C++ (two's complement truncation)."""
    x = np.asarray(x, np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def reduced_multiplier(m) -> np.ndarray:
    """The 16-bit multiplier of the 64-bit MBQM: round(M / 2^16), 0x7FFF for M >= 0x7FFF0000."""
    m = np.asarray(m, np.int64)
    return np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF)


def mbqm64(acc, multiplier, shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplier(int64 x, M, shift) of TFLite: x * round(M / 2^16) rounded
    half up by 2^(15 - shift), converted to int32. |x| < 2^47 and shift in [-31, 7] (checked:
    beyond them the C's int64 product could overflow)."""
    acc = np.asarray(acc, np.int64)
    shift = np.asarray(shift, np.int64)
    if acc.size and int(np.abs(acc).max()) >= ACC_LIMIT:
        raise Int32Overflow(f"16x8 accumulator {int(np.abs(acc).max())} is not below 2^47")
    if shift.size and (int(shift.min()) < -31 or int(shift.max()) > 7):
        raise Int32Overflow(f"16x8 requantization shift {shift.min()}..{shift.max()} is "
                            "outside [-31, 7]")
    total = 15 - shift
    out = (acc * reduced_multiplier(multiplier) + (np.int64(1) << (total - 1))) >> total
    return _wrap_i32(out)


def _finish(p, acc: np.ndarray) -> np.ndarray:
    out = mbqm64(acc, p.multiplier.astype(np.int64), p.shift.astype(np.int64))
    return clamp(out, p.act_min, p.act_max).astype(np.int16)


def _bias64(p, out_c: int) -> np.ndarray:
    if p.bias is None:
        return np.zeros(out_c, dtype=np.int64)
    return np.asarray(p.bias, np.int64)


def conv2d_s16(p: ConvParams, x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """x int16 [N,H,W,Cin], filter OHWI int8 -> int16 [N,OH,OW,Cout] (TFLite ConvPerChannel
    int16): acc = bias + sum over in-image taps x * w in int64; no input/output offsets."""
    out_c, kh, kw, f_c = p.filter.shape
    groups = x.shape[3] // f_c
    per_group = out_c // groups
    xp = _padded_input(p, x, out_hw)  # input_offset is 0: pads are skipped taps
    w = p.filter.astype(np.int64).reshape(groups, per_group, kh, kw, f_c)
    acc = np.zeros((x.shape[0], *out_hw, groups, per_group), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            tap = _tap(p, xp, ky, kx, out_hw)
            tap = tap.reshape(*tap.shape[:3], groups, f_c)
            acc += np.einsum("nyxgc,goc->nyxgo", tap, w[:, :, ky, kx, :])
    acc = acc.reshape(*acc.shape[:3], out_c) + _bias64(p, out_c)
    return _finish(p, acc)


def depthwise_conv2d_s16(p: ConvParams, x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """x int16 [N,H,W,Cin], filter 1HWO int8 -> int16 (TFLite DepthwiseConvPerChannel int16)."""
    _, kh, kw, out_c = p.filter.shape
    xp = _padded_input(p, x, out_hw)
    w = p.filter.astype(np.int64)
    acc = np.zeros((x.shape[0], *out_hw, out_c), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            tap = np.repeat(_tap(p, xp, ky, kx, out_hw), p.ch_mult, axis=3)
            acc += tap * w[0, ky, kx, :]
    return _finish(p, acc + _bias64(p, out_c))


def fully_connected_s16(p: FCParams, x: np.ndarray) -> np.ndarray:
    """x int16 [rows, K], filter int8 [out, K] -> int16 [rows, out] (TFLite FullyConnected
    int16, per channel or per tensor): acc = bias + sum_k x * w in int64."""
    acc = x.astype(np.int64) @ p.filter.astype(np.int64).T + _bias64(p, p.filter.shape[0])
    return _finish(p, acc)


def add_s16(p, a, b, negate: bool = False, rounding: str = "double") -> np.ndarray:
    """TFLite int16 ADD (AddGeneralParamScale) with numpy broadcasting: int8 ADD's arithmetic
    with left_shift 15 and the int16 clamp. SUB when negate."""
    x1, x2 = np.broadcast_arrays(np.asarray(a, np.int64), np.asarray(b, np.int64))
    s1 = mbqm((x1 + p.input1_offset) * (1 << p.left_shift), p.input1_multiplier,
              p.input1_shift, rounding)
    s2 = mbqm((x2 + p.input2_offset) * (1 << p.left_shift), p.input2_multiplier,
              p.input2_shift, rounding)
    raw = s1 - s2 if negate else s1 + s2
    out = mbqm(raw, p.output_multiplier, p.output_shift, rounding) + p.output_offset
    return clamp(out, p.act_min, p.act_max).astype(np.int16)


def mul_s16(p, a, b, rounding: str = "double") -> np.ndarray:
    """TFLite int16 MUL (zero points 0): MBQM(a * b) with numpy broadcasting."""
    x1, x2 = np.broadcast_arrays(np.asarray(a, np.int64), np.asarray(b, np.int64))
    out = mbqm(x1 * x2, p.output_multiplier, p.output_shift, rounding) + p.output_offset
    return clamp(out, p.act_min, p.act_max).astype(np.int16)


def lut_lookup(table: np.ndarray, v) -> np.ndarray:
    """TFLite LUTLookup(int16): 513 anchors, linear interpolation on the low 7 bits."""
    v = np.asarray(v, np.int64)
    t = np.asarray(table, np.int64)
    idx = 256 + (v >> 7)
    off = v & 0x7F
    base = t[idx]
    return _wrap_i16(base + (((t[idx + 1] - base) * off + 64) >> 7))


def _wrap_i16(x) -> np.ndarray:
    return ((np.asarray(x, np.int64) + 32768) & 0xFFFF) - 32768


def softmax_s16(p: Softmax16Params, x: np.ndarray, rounding: str = "double") -> np.ndarray:
    """TFLite SoftmaxInt16 over the last axis: exp by table of the max-shifted input rescaled so
    that [-65535, 0] spans [-10, 0], sum in Q16.15, its reciprocal by the 1/(1+x) table."""
    x = np.asarray(x, np.int64)
    rows = x.reshape(-1, x.shape[-1])
    diff = rows - rows.max(axis=1, keepdims=True)
    scaled = mbqm(diff, p.input_multiplier, p.input_left_shift, rounding) + 32767
    exps = lut_lookup(p.exp_lut, np.clip(scaled, INT16_MIN, INT16_MAX))
    total = exps.sum(axis=1)  # > 0: the max element's exp is ~32767
    if int(total.max()) > INT32_MAX:
        raise Int32Overflow("softmax int16: the sum of exps does not fit int32")
    out = np.empty_like(exps)
    for r in range(rows.shape[0]):
        s = int(total[r])
        clz = 32 - s.bit_length()  # CountLeadingZeros of the uint32 sum
        shifted = ((s << (clz - 1)) + (1 << 13)) >> 14
        sym = min(max(shifted - ((1 << 15) + (1 << 16)), INT16_MIN), INT16_MAX)
        recip = int(lut_lookup(p.one_over_one_plus_x_lut, sym))
        right = 31 - clz
        res = (exps[r] * recip + (1 << (right - 1))) >> right
        out[r] = np.clip(res, 0, INT16_MAX)
    return out.reshape(x.shape).astype(np.int16)


def _scaled_input(p: Sigmoid16Params, x) -> np.ndarray:
    m, ls = p.input_multiplier, p.input_left_shift
    if m == 0:  # a power-of-two input scale
        m, ls = 3 << ls, 0
    rnd = (1 << (ls - 1)) if ls > 0 else 0
    return (np.asarray(x, np.int64) * m + rnd) >> ls


def logistic_s16(p: Sigmoid16Params, x) -> np.ndarray:
    """TFLite integer_ops::Logistic(int16): |x| in units of 1/(3 * 2^12 * 4) ... interpolated in
    SIGMOID_TABLE_U16 on 9 fractional bits, mirrored for x < 0; output Q0.15."""
    v = _scaled_input(p, x)
    a = np.abs(v)
    uh = a >> 9
    ui = np.minimum(uh, 254)
    ua, ub = SIGMOID_TABLE_U16[ui], SIGMOID_TABLE_U16[ui + 1]
    res = np.where(uh >= 255, 0x7FFF << 10, (ua << 9) + (a & 0x1FF) * (ub - ua))
    res = np.where(v >= 0, res + (1 << 9), (1 << 25) - res + (1 << 9) - 1)
    return _wrap_i16(res >> 10).astype(np.int16)


def tanh_s16(p: Sigmoid16Params, x) -> np.ndarray:
    """TFLite integer_ops::Tanh(int16): tanh(x) = 2 sigmoid(2x) - 1 on the same table with 8
    fractional bits; output Q0.15."""
    v = _scaled_input(p, x)
    a = np.abs(v)
    uh = a >> 8
    ui = np.minimum(uh, 254)
    ua, ub = SIGMOID_TABLE_U16[ui], SIGMOID_TABLE_U16[ui + 1]
    res = np.where(uh >= 255, 0xFFFF << 8, (ua << 8) + (a & 0xFF) * (ub - ua))
    res = np.where(v >= 0, res - (1 << 23) + (1 << 7), -res + (1 << 23) + (1 << 7) - 1)
    return _wrap_i16(res >> 8).astype(np.int16)


def requantize_s16(p, x, out_dtype, rounding: str = "double") -> np.ndarray:
    """int8 <-> int16 (or int16 -> int16) change of quantization: clamp(MBQM(x - zp_in) +
    zp_out) with the int32 MBQM, as TFLite's Requantize (QUANTIZE between integer types)."""
    v = np.asarray(x, np.int64) + p.input_offset
    out = mbqm(v, p.multiplier, p.shift, rounding) + p.output_offset
    return clamp(out, p.act_min, p.act_max).astype(out_dtype)


# ---- tables computed offline (TFLite gen_lut<float, int16_t, int16_t>, float32) --------------


def _round_f32(v: np.float32) -> np.float32:
    # TfLiteRound on float: std::round (half away from zero); exact in float32
    return np.float32(math.copysign(math.floor(abs(float(v)) + 0.5), float(v)))


def gen_lut_s16(fn, lo: float, hi: float) -> np.ndarray:
    """int16 [513] table of fn over [lo, hi] with output range [-1, 1] in Q0.15: TFLite's
    gen_lut, every step in float32 (fn takes and returns np.float32)."""
    f = np.float32
    lo, hi = f(lo), f(hi)
    step = (hi - lo) / f(512)
    half = step / f(2)
    inv = f(65536.0) / (f(1.0) - f(-1.0))
    out = np.zeros(513, dtype=np.int64)
    for i in range(512):
        val = fn(lo + f(i) * step)
        mid = fn(lo + f(i) * step + half)
        nxt = fn(lo + f(i + 1) * step)
        sample = _round_f32(val * inv)
        interp = _round_f32((nxt * inv + _round_f32(val * inv)) / f(2))
        err = interp - _round_f32(mid * inv)
        bias = _round_f32(err / f(2))
        out[i] = min(max(float(sample - bias), INT16_MIN), INT16_MAX)
    out[512] = min(max(float(_round_f32(fn(hi) * inv)), INT16_MIN), INT16_MAX)
    return out.astype(np.int16)


def exp_table() -> np.ndarray:
    """exp(x) over [-10, 0] (softmax's exp table)."""
    # float64 exp rounded once to float32: the correctly rounded expf (glibc's expf is too)
    return gen_lut_s16(lambda v: np.float32(math.exp(float(v))), -10.0, 0.0)


def one_over_one_plus_x_table() -> np.ndarray:
    """1 / (1 + x) over [0, 1] (softmax's reciprocal table)."""
    return gen_lut_s16(lambda v: np.float32(np.float32(1.0) / (np.float32(1.0) + v)), 0.0, 1.0)


__all__ = [
    "INT32_MIN", "mbqm64", "conv2d_s16", "depthwise_conv2d_s16", "fully_connected_s16",
    "add_s16", "mul_s16", "softmax_s16", "logistic_s16", "tanh_s16", "requantize_s16",
    "exp_table", "one_over_one_plus_x_table", "lut_lookup",
]


# ---- LayerNorm with an int16 input (microq's own: TFLite has no LayerNorm builtin) ---------

LAYERNORM_S16_MAX_ROW = 4096  # MQ_LAYERNORM_S16_MAX_ROW: C^2 * 2^30 stays below 2^62
LAYERNORM_S16_OUT_BITS = 4  # MQ_LAYERNORM_S16_OUT_BITS: gamma * z + beta in 1/16 output steps


def layernorm_s16(p, x, out_dtype=np.int16, rounding: str = "double") -> np.ndarray:
    """int16 x [rows, C] -> int16 (or int8) [rows, C]: ref/layernorm.py's arithmetic (exact
    integer mean and variance, the same Newton inverse square root, gamma/beta per channel)
    with no extra variance bits: V = C * sum(x^2) - sum(x)^2 + eps, eps = round(eps / s_in^2 *
    C^2), and 4 (not 8) fractional output bits so that an int16 output scale fits
    (quant/s16.layernorm_params_s16)."""
    from .layernorm import NORM_BITS, inv_sqrt_q30
    from .arith import rdbpot

    x = np.asarray(x, np.int64)
    rows, c = x.shape
    if not 1 <= c <= LAYERNORM_S16_MAX_ROW or len(p.multiplier) != c:
        raise ValueError(f"layernorm_s16 row size {c} vs {len(p.multiplier)} channels")
    total = x.sum(axis=1, keepdims=True)
    var = c * (x * x).sum(axis=1, keepdims=True) - total * total + p.eps
    inv, k = inv_sqrt_q30(np.maximum(var, 1))
    inv = np.where(var > 0, inv, 0)
    k = np.where(var > 0, k, 0)
    norm_shift = 30 + k - NORM_BITS
    n = c * x - total
    z = (n * inv + (np.int64(1) << (norm_shift - 1))) >> norm_shift
    scaled = mbqm(z, np.asarray(p.multiplier, np.int64), np.asarray(p.shift, np.int64),
                  rounding)
    out = rdbpot(scaled + np.asarray(p.bias, np.int64), LAYERNORM_S16_OUT_BITS) + p.output_offset
    return clamp(out, p.act_min, p.act_max).astype(out_dtype)


# ---- pooling (TFLite integer_ops MaxPool / AveragePool int16: the int8 arithmetic) ----------


def _pool_s16(p, x: np.ndarray, out_hw: tuple[int, int], average: bool) -> np.ndarray:
    from .pool import _check_windows, _div_round_away, _tap_range

    _check_windows(p, x, out_hw)
    n, h, w, c = x.shape
    out = np.zeros((n, *out_hw, c), dtype=np.int16)
    for oy in range(out_hw[0]):
        y0 = oy * p.stride_h - p.pad_top
        ky0, ky1 = _tap_range(y0, h, p.kernel_h)
        count_h = (min(y0 + p.kernel_h, h + p.pad_bottom) - y0) if p.count_include_pad \
            else ky1 - ky0
        for ox in range(out_hw[1]):
            x0 = ox * p.stride_w - p.pad_left
            kx0, kx1 = _tap_range(x0, w, p.kernel_w)
            count_w = (min(x0 + p.kernel_w, w + p.pad_right) - x0) if p.count_include_pad \
                else kx1 - kx0
            win = x[:, y0 + ky0 : y0 + ky1, x0 + kx0 : x0 + kx1, :].astype(np.int64)
            if average:
                v = _div_round_away(win.sum(axis=(1, 2)), count_h * count_w)
            else:
                v = win.max(axis=(1, 2))
            out[:, oy, ox, :] = clamp(v, p.act_min, p.act_max)
    return out


def max_pool_s16(p, x, out_hw):
    """x int16 [N,H,W,C] -> int16: the max over in-image taps, clamped (no offsets)."""
    return _pool_s16(p, x, out_hw, False)


def avg_pool_s16(p, x, out_hw):
    """x int16 [N,H,W,C] -> int16: the in-image (or, count_include_pad, in-padded-image) tap
    mean rounded half away from zero as TFLite's AveragePool, clamped (no offsets)."""
    return _pool_s16(p, x, out_hw, True)
