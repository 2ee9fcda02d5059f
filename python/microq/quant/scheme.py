"""Scheme math of the quantizer: kernel params (qir dataclasses) from float scales and zero
points, the way TFLite's Prepare functions compute them (int8-arithmetic notes §4.2-4.8)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import MicroqError
from ..qir import (
    AddParams,
    BatchMatMulParams,
    ConvParams,
    FCParams,
    LayerNormParams,
    MulParams,
    RequantizeParams,
    SliceParams,
    SoftmaxParams,
)
from ..ref import layernorm as _ln
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


# ---- transformer kernels: batched matmul, LayerNorm, slice ---------------------------------

# the fixed-point formats of mq_layernorm.h: one Python source (ref.layernorm, checked equal
# to the C header's #defines by tests/test_op_fixtures.py::test_c_constants_equal_python)
LAYERNORM_NORM_BITS = _ln.NORM_BITS
LAYERNORM_OUT_BITS = _ln.OUT_BITS
LAYERNORM_VAR_BITS = _ln.VAR_BITS
LAYERNORM_BIAS_MAX = 1 << 29  # |beta / s_out| beyond 2^21 output steps saturates anyway


def batch_matmul_params(
    s_lhs: float,
    zp_lhs: int,
    s_rhs: float,
    zp_rhs: int,
    s_out: float,
    zp_out: int,
    rhs_transposed: bool = False,
    act_min: int = -128,
    act_max: int = 127,
    rounding: str = "double",
) -> BatchMatMulParams:
    """int8 MatMul of two activations (TFLite BATCH_MATMUL): one multiplier s_lhs * s_rhs /
    s_out. It must be below 1 (a right shift): the int32 accumulator is not bounded small
    enough for a left shift, and a real matmul output range is never below one product's."""
    for name, s in (("lhs scale", s_lhs), ("rhs scale", s_rhs), ("output scale", s_out)):
        _check_scale(name, s)
    m, shift = quantize_multiplier(s_lhs * s_rhs / s_out, rounding)
    if shift > 0:
        raise MicroqError(
            f"MatMul output scale {s_out!r} is too small for input scales {s_lhs!r} * {s_rhs!r}"
        )
    return BatchMatMulParams(
        rhs_transposed=int(bool(rhs_transposed)),
        lhs_offset=-int(zp_lhs),
        rhs_offset=-int(zp_rhs),
        output_offset=int(zp_out),
        output_multiplier=m,
        output_shift=shift,
        act_min=int(act_min),
        act_max=int(act_max),
    )


def layernorm_params(
    s_in: float,
    zp_in: int,
    gamma: np.ndarray,
    beta: np.ndarray,
    eps: float,
    s_out: float,
    zp_out: int,
    act_min: int = -128,
    act_max: int = 127,
    rounding: str = "double",
) -> LayerNormParams:
    """int8 LayerNorm over the last axis (width C = len(gamma)) from float gamma, beta, eps.

    The kernel's variance is C^2 * 2^16 * var in input steps squared, so eps becomes
    round(eps / s_in^2 * C^2 * 2^16). gamma[c] / s_out is a signed per-channel multiplier scaled by
    2^(8 - 20) (the normalized value has 20 fractional bits, the sum 8); beta[c] / s_out is
    added with 8 fractional bits before the one final rounding. zp_in cancels in x - mean and
    is accepted only for a uniform call."""
    _check_scale("input scale", s_in)
    _check_scale("output scale", s_out)
    del zp_in
    gamma = np.asarray(gamma, np.float64).reshape(-1)
    beta = np.asarray(beta, np.float64).reshape(-1)
    c = gamma.size
    if c < 1 or beta.size != c or not (np.isfinite(gamma).all() and np.isfinite(beta).all()):
        raise MicroqError(
            f"LayerNorm gamma ({c}) and beta ({beta.size}) must be finite, of one width"
        )
    if not (eps >= 0 and math.isfinite(eps)):
        raise MicroqError(f"LayerNorm epsilon must be finite and >= 0, got {eps!r}")
    eps_q = round_half_away(eps / (s_in * s_in) * c * c * (1 << LAYERNORM_VAR_BITS))
    if eps_q > 1 << 61:
        raise MicroqError(f"LayerNorm epsilon {eps!r} is too large for input scale {s_in!r}")
    mult = np.zeros(c, np.int32)
    shift = np.zeros(c, np.int32)
    unit = 2.0 ** (LAYERNORM_OUT_BITS - LAYERNORM_NORM_BITS)
    for i, g in enumerate(gamma):
        m, sh = quantize_multiplier(abs(g) / s_out * unit, rounding)
        if sh > 0:
            raise MicroqError(
                f"LayerNorm gamma[{i}] / output scale = {abs(g) / s_out:.4g} exceeds "
                f"{1 / unit:.0f}: the output scale is too small"
            )
        mult[i], shift[i] = (-m if g < 0 else m), sh
    bias = round_half_away(beta / s_out * (1 << LAYERNORM_OUT_BITS))
    bias = np.clip(bias, -LAYERNORM_BIAS_MAX, LAYERNORM_BIAS_MAX).astype(np.int32)
    return LayerNormParams(
        eps=int(eps_q),
        output_offset=int(zp_out),
        act_min=int(act_min),
        act_max=int(act_max),
        multiplier=mult,
        shift=shift,
        bias=bias,
    )


def slice_params(
    in_shape: tuple[int, ...],
    starts: list[int],
    ends: list[int],
    axes: list[int] | None = None,
    steps: list[int] | None = None,
) -> SliceParams:
    """ONNX Slice (opset >= 10) on a tensor of in_shape: negative starts/ends count from the
    end, then they are clamped to [0, dim] (step > 0) or [0, dim - 1] / [-1, dim - 1]
    (step < 0); axes not listed are taken whole."""
    rank = len(in_shape)
    axes = list(range(len(starts))) if axes is None else list(axes)
    steps = [1] * len(starts) if steps is None else list(steps)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise MicroqError("Slice starts, ends, axes and steps must have one length")
    begin, end, step = [0] * rank, [int(d) for d in in_shape], [1] * rank
    seen: set[int] = set()
    for s0, e0, a, st in zip(starts, ends, axes, steps):
        a = int(a) + rank if int(a) < 0 else int(a)
        if not 0 <= a < rank or a in seen or int(st) == 0:
            raise MicroqError(f"Slice axis {a} (step {st}) is invalid for rank {rank}")
        seen.add(a)
        dim, st = int(in_shape[a]), int(st)
        s0 = int(s0) + dim if int(s0) < 0 else int(s0)
        e0 = int(e0) + dim if int(e0) < 0 else int(e0)
        if st > 0:
            begin[a], end[a] = min(max(s0, 0), dim), min(max(e0, 0), dim)
        else:
            begin[a], end[a] = min(max(s0, 0), dim - 1), min(max(e0, -1), dim - 1)
        step[a] = st
    return SliceParams(tuple(begin), tuple(end), tuple(step))


def gather_params(in_shape: tuple[int, ...], axis: int, index: int) -> SliceParams:
    """ONNX Gather of one scalar index on `axis`, as a slice keeping that axis with size 1
    (the importer's output shape drops it; the bytes are the same)."""
    rank = len(in_shape)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise MicroqError(f"Gather axis {axis} is invalid for rank {rank}")
    dim = int(in_shape[axis])
    i = int(index) + dim if int(index) < 0 else int(index)
    if not 0 <= i < dim:
        raise MicroqError(f"Gather index {index} is out of range for an axis of size {dim}")
    return slice_params(in_shape, [i], [i + 1], [axis])


def quantize_weights_per_channel(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel (axis 0) int8 weights in [-127, 127] and their scales."""
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    amax = np.max(np.abs(flat), axis=1)
    # float32 scales: the value every file format (QDQ ONNX, TFLite) stores, so that a model
    # written out and read back requantizes to the same multipliers.
    scales = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32).astype(np.float64)
    # a channel below float32's smallest normal would get scale 0 (division by zero): such
    # weights are zero in int8 at any representable scale
    scales = np.maximum(scales, float(np.finfo(np.float32).tiny))
    q = np.clip(round_half_away(flat / scales[:, None]), -127, 127).astype(np.int8)
    return q.reshape(w.shape), scales


def channel_multipliers(s_in: float, s_w, s_out: float,
                        rounding: str = "double") -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel requantization of a conv / FC accumulator: s_in * s_w[c] / s_out as
    int32 (multiplier, shift) arrays. The one builder for the quantizer (ONNX, QDQ) and the
    TFLite lowering."""
    ms = [quantize_multiplier(float(s_in) * float(sw) / float(s_out), rounding) for sw in s_w]
    return (np.array([m for m, _ in ms], dtype=np.int32),
            np.array([s for _, s in ms], dtype=np.int32))


def conv_params(stride: tuple[int, int], dilation: tuple[int, int], pad: tuple[int, int],
                zp_in: int, zp_out: int, act: tuple[int, int], multiplier: np.ndarray,
                shift: np.ndarray, filt: np.ndarray, bias: np.ndarray | None,
                ch_mult: int = 1) -> ConvParams:
    """mq_conv_params + arrays of conv2d / depthwise (filter 1HWO, ch_mult) / transpose conv;
    pad is (top, left). The one builder for the quantizer and the TFLite lowering."""
    return ConvParams(
        stride_h=int(stride[0]), stride_w=int(stride[1]), pad_top=int(pad[0]),
        pad_left=int(pad[1]), dilation_h=int(dilation[0]), dilation_w=int(dilation[1]),
        input_offset=-int(zp_in), output_offset=int(zp_out), act_min=int(act[0]),
        act_max=int(act[1]), ch_mult=int(ch_mult), multiplier=multiplier, shift=shift,
        filter=filt, bias=bias)


def fc_params(zp_in: int, zp_out: int, act: tuple[int, int], multiplier: np.ndarray,
              shift: np.ndarray, filt: np.ndarray, bias: np.ndarray | None) -> FCParams:
    """mq_fc_params + arrays (symmetric weights: filter_offset 0)."""
    return FCParams(input_offset=-int(zp_in), filter_offset=0, output_offset=int(zp_out),
                    act_min=int(act[0]), act_max=int(act[1]), multiplier=multiplier,
                    shift=shift, filter=filt, bias=bias)
