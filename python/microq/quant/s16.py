"""Scheme math of the 16x8 mode (int16 activations, int8 weights, int64 bias): kernel params
as TFLite Micro's Prepare functions compute them for int16 tensors, and the compile-time
proofs that the C kernels (c_runtime/src/mq_s16.c) cannot overflow.

Zero points of int16 activations are 0 (symmetric), as TFLite's 16x8 spec requires.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import MicroqError
from ..qir import AddParams, MulParams, RequantizeParams, Sigmoid16Params, Softmax16Params
from ..ref import s16 as ref16
from ..ref.arith import quantize_multiplier, round_half_away
from .scheme import _check_scale, quantize_multiplier_smaller_than_one_exp

ADD_LEFT_SHIFT_S16 = 15  # TFLite ADD/SUB with int16 output (20 for int8)
SOFTMAX_MAX_DEPTH = 65536  # the int32 sum of up to 65536 exps (each <= 32767) cannot overflow
INT16_RANGE = (-32768, 32767)


def _zero(name: str, zp: int) -> None:
    if int(zp) != 0:
        raise MicroqError(f"{name} zero point is {zp}; int16 (16x8) tensors are symmetric "
                          "(zero point 0)")


def add_params_s16(s1, zp1, s2, zp2, s_out, zp_out, act_min=-32768, act_max=32767) -> AddParams:
    """TFLite int16 ADD/SUB (general scales): int8 ADD's parameters with left_shift 15."""
    for name, s in (("input1 scale", s1), ("input2 scale", s2), ("output scale", s_out)):
        _check_scale(name, s)
    for name, zp in (("input1", zp1), ("input2", zp2), ("output", zp_out)):
        _zero(name, zp)
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier_smaller_than_one_exp(s1 / twice_max)
    m2, sh2 = quantize_multiplier_smaller_than_one_exp(s2 / twice_max)
    real_out = twice_max / ((1 << ADD_LEFT_SHIFT_S16) * s_out)
    if not real_out < 1.0:
        raise MicroqError(f"ADD output scale {s_out!r} is too small for input scales {s1!r}, "
                          f"{s2!r} (the int16 ADD needs output scale > 2^-14 * max input scale)")
    mo, sho = quantize_multiplier_smaller_than_one_exp(real_out)
    return AddParams(0, m1, sh1, 0, m2, sh2, ADD_LEFT_SHIFT_S16, 0, mo, sho, int(act_min),
                     int(act_max))


def mul_params_s16(s1, zp1, s2, zp2, s_out, zp_out, act_min=-32768, act_max=32767) -> MulParams:
    """TFLite int16 MUL: MBQM(a * b, s1 * s2 / s_out). |a * b| <= 2^30, so the multiplier must
    not shift left (mq_mul_s16 refuses it too)."""
    for name, s in (("input1 scale", s1), ("input2 scale", s2), ("output scale", s_out)):
        _check_scale(name, s)
    for name, zp in (("input1", zp1), ("input2", zp2), ("output", zp_out)):
        _zero(name, zp)
    m, shift = quantize_multiplier(s1 * s2 / s_out)
    if shift > 0:
        raise MicroqError(f"int16 MUL output scale {s_out!r} is below the product of the input "
                          f"scales {s1!r} * {s2!r}: widen the output range")
    return MulParams(0, 0, 0, m, shift, int(act_min), int(act_max))


def softmax_params_s16(s_in: float, beta: float, s_out: float) -> Softmax16Params:
    """TFLite int16 SOFTMAX Prepare: input_scale * beta / (10 / 65535) as a QuantizeMultiplier
    (the max-shifted input [-65535, 0] then spans [-10, 0]); output scale 1/32768, zero point 0;
    the exp and 1/(1 + x) tables of gen_lut."""
    _check_scale("input scale", s_in)
    if not (beta > 0 and math.isfinite(beta)):
        raise MicroqError(f"softmax beta must be positive and finite, got {beta!r}")
    if abs(float(s_out) - 1.0 / 32768) > 0.001 / 32768:
        raise MicroqError(f"int16 softmax output scale is {s_out!r}; TFLite's int16 softmax "
                          "needs 1/32768 (zero point 0)")
    m, shift = quantize_multiplier(float(s_in) * float(beta) / (10.0 / 65535.0))
    if shift > 15:  # 65535 * 2^shift must fit int32 before the multiply
        raise MicroqError(f"int16 softmax input scale {s_in!r} * beta {beta!r} is too small")
    return Softmax16Params(m, shift, _EXP_LUT, _RECIP_LUT)


def _checked_log2(x: float) -> tuple[bool, int]:
    """TFLite CheckedLog2 (float32): (x is a power of two within 1e-3 in log2, round(log2 x))."""
    f = np.float32
    lg = f(np.log(f(x))) * (f(1.0) / f(np.log(f(2.0))))
    r = f(math.copysign(math.floor(abs(float(lg)) + 0.5), float(lg)))
    return bool(abs(float(lg - r)) < 1e-3), int(r)


def sigmoid_params_s16(s_in: float, s_out: float, tanh: bool = False) -> Sigmoid16Params:
    """TFLite int16 LOGISTIC / TANH Prepare: the input rescaled to 1/(3 * 4096) units by an
    integer multiplier <= 32767 and a right shift (0 and 3 << shift for a power-of-two scale
    with shift 0, or 0..1 for TANH); output scale 2^-15."""
    _check_scale("input scale", s_in)
    _check_scale("output scale", s_out)
    pot_out, lg_out = _checked_log2(s_out)
    if not pot_out or lg_out != -15:
        raise MicroqError(f"int16 LOGISTIC/TANH output scale is {s_out!r}; TFLite needs 2^-15")
    pot, lg = _checked_log2(s_in)
    left = (15 - 3) + lg
    if pot and (left == 0 or (tanh and left == 1)):
        return Sigmoid16Params(0, left)
    mult = float(np.float32(s_in)) * 4096.0 * 3.0
    left = 0
    while mult <= 32767.0 / 2.0 and left <= 30:
        left += 1
        mult *= 2.0
    if mult > 32767.0:
        raise MicroqError(f"int16 LOGISTIC/TANH input scale {s_in!r} is too large (above "
                          "32767 / (3 * 4096)): the input cannot be rescaled onto the table")
    return Sigmoid16Params(int(mult), left)


def requantize_params_s16(s_in, zp_in, in16: bool, s_out, zp_out, out16: bool) -> RequantizeParams:
    """int8 <-> int16 QUANTIZE (TFLite Requantize): MBQM(x - zp_in, s_in / s_out) + zp_out,
    clamped to the output type. |x - zp_in| <= 2^16 must stay in int32 after a left shift."""
    _check_scale("input scale", s_in)
    _check_scale("output scale", s_out)
    if in16:
        _zero("input", zp_in)
    if out16:
        _zero("output", zp_out)
    m, shift = quantize_multiplier(float(s_in) / float(s_out))
    if shift > 14:
        raise MicroqError(f"requantize ratio {s_in!r} / {s_out!r} is too large")
    lo, hi = INT16_RANGE if out16 else (-128, 127)
    return RequantizeParams(-int(zp_in), int(zp_out), m, shift, lo, hi)


def layernorm_params_s16(s_in, gamma, beta, eps, s_out, zp_out, act_min, act_max,
                         rounding: str = "double"):
    """LayerNorm with an int16 input (ref/s16.layernorm_s16): eps in the kernel's variance
    domain (no extra bits), gamma[c] / s_out as a signed multiplier scaled by 2^(4 - 20) (z has
    20 fractional bits, the sum 4, so an int16 output range fits: gamma / s_out <= 2^16) and
    beta[c] / s_out with 4 fractional bits."""
    from ..qir import LayerNormParams

    _check_scale("input scale", s_in)
    _check_scale("output scale", s_out)
    gamma = np.asarray(gamma, np.float64).reshape(-1)
    beta = np.asarray(beta, np.float64).reshape(-1)
    c = gamma.size
    if c < 1 or beta.size != c or not (np.isfinite(gamma).all() and np.isfinite(beta).all()):
        raise MicroqError(f"LayerNorm gamma ({c}) and beta ({beta.size}) must be finite, of "
                          "one width")
    if c > ref16.LAYERNORM_S16_MAX_ROW:
        raise MicroqError(f"int16 LayerNorm over {c} channels exceeds "
                          f"{ref16.LAYERNORM_S16_MAX_ROW}")
    if not (eps >= 0 and math.isfinite(eps)):
        raise MicroqError(f"LayerNorm epsilon must be finite and >= 0, got {eps!r}")
    eps_q = int(round_half_away(float(eps) / (float(s_in) ** 2) * c * c))
    if eps_q > 1 << 61:
        raise MicroqError(f"LayerNorm epsilon {eps!r} is too large for input scale {s_in!r}")
    unit = 2.0 ** (ref16.LAYERNORM_S16_OUT_BITS - 20)
    mult = np.zeros(c, np.int32)
    shift = np.zeros(c, np.int32)
    for i, g in enumerate(gamma):
        m, sh = quantize_multiplier(abs(g) / s_out * unit, rounding)
        if sh > 0:
            raise MicroqError(f"LayerNorm gamma[{i}] / output scale = {abs(g) / s_out:.4g} "
                              f"exceeds {1 / unit:.0f}: the output scale is too small")
        mult[i], shift[i] = (-m if g < 0 else m), sh
    bias = round_half_away(beta / s_out * (1 << ref16.LAYERNORM_S16_OUT_BITS))
    bias = np.clip(bias, -(1 << 29), 1 << 29).astype(np.int32)
    return LayerNormParams(eps=eps_q, output_offset=int(zp_out), act_min=int(act_min),
                           act_max=int(act_max), multiplier=mult, shift=shift, bias=bias)


def lut_table_s16(fn, s_in: float, s_out: float) -> np.ndarray:
    """int16 [513] table of y = fn(x) for mq_lut_s16 (microq's own, for ONNX activations in
    16x8; TFLite's int16 LUT kernels are softmax/logistic/tanh above): anchor k at input step
    v_k = -32768 + 128 k holds round(fn(s_in * v_k) / s_out), less half the error of the linear
    interpolation at the segment's midpoint (as TFLite's gen_lut), clamped to int16; the
    kernel interpolates between anchors on the low 7 bits. float64, symmetric tensors."""
    _check_scale("input scale", s_in)
    _check_scale("output scale", s_out)
    k = np.arange(513, dtype=np.float64)
    x = s_in * (-32768.0 + 128.0 * k)
    mid = s_in * (-32768.0 + 128.0 * k[:512] + 64.0)
    y = np.asarray(fn(x), np.float64) / s_out
    ym = np.asarray(fn(mid), np.float64) / s_out
    if y.shape != x.shape or ym.shape != mid.shape or np.isnan(y).any() or np.isnan(ym).any():
        raise MicroqError("lookup-table function must map the anchors to non-NaN values")
    y, ym = np.clip(y, -1e9, 1e9), np.clip(ym, -1e9, 1e9)
    sample = round_half_away(y)
    interp = round_half_away((y[1:] + sample[:-1]) / 2)
    bias = round_half_away((interp - round_half_away(ym)) / 2)
    table = sample.copy()
    table[:512] -= bias
    return np.clip(table, -32768, 32767).astype(np.int16)


_EXP_LUT = ref16.exp_table()
_RECIP_LUT = ref16.one_over_one_plus_x_table()


def check_node_s16(where: str, node) -> None:
    """The 64-bit accumulator of conv/depthwise/FC stays below 2^47 (TFLite's stated range of
    its 64-bit MBQM; then x * 2^15 fits int64) and the shift is in [-31, 7]."""
    k, p = node.kernel, node.params
    if k not in ("conv2d_s16", "depthwise_conv2d_s16", "fully_connected_s16"):
        return
    w = np.abs(np.asarray(p.filter, np.int64))
    sums = w.sum(axis=(0, 1, 2)) if k == "depthwise_conv2d_s16" else \
        w.reshape(w.shape[0], -1).sum(axis=1)
    bias = np.zeros_like(sums) if p.bias is None else np.abs(np.asarray(p.bias, np.int64))
    bound = sums * 32768 + bias
    if int(bound.max()) >= ref16.ACC_LIMIT:
        c = int(np.argmax(bound))
        raise MicroqError(f"{where}node '{node.name}' ({k}): the int64 accumulator of channel "
                          f"{c} can reach {int(bound[c])}, beyond TFLite's 2^47: the bias is "
                          "too large")
    shift = np.asarray(p.shift, np.int64)
    if shift.size and (int(shift.min()) < -31 or int(shift.max()) > 7):
        raise MicroqError(f"{where}node '{node.name}' ({k}): requantization shift "
                          f"{int(shift.min())}..{int(shift.max())} is outside [-31, 7]: the "
                          "layer's scales are inconsistent")
