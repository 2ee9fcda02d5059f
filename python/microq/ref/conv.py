"""Integer reference of conv2d and depthwise conv2d: the spec of c_runtime/src/mq_conv.c."""

from __future__ import annotations

import numpy as np

from microq.qir import ConvParams
from microq.ref.arith import check_acc, clamp, mbqm


def _padded_input(p: ConvParams, x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """x + input_offset as int64, zero-padded so every tap of every output pixel is in range.

    A zero after the offset is exactly a skipped tap: the C kernel never reads outside the input.
    """
    n, h, w, c = x.shape
    kh, kw = p.filter.shape[1], p.filter.shape[2]
    oh, ow = out_hw
    need_h = (oh - 1) * p.stride_h + (kh - 1) * p.dilation_h + 1  # rows spanned from -pad_top
    need_w = (ow - 1) * p.stride_w + (kw - 1) * p.dilation_w + 1
    xp = np.zeros((n, max(need_h, p.pad_top + h), max(need_w, p.pad_left + w), c), np.int64)
    xp[:, p.pad_top : p.pad_top + h, p.pad_left : p.pad_left + w, :] = (
        x.astype(np.int64) + p.input_offset
    )
    return xp


def _tap(p: ConvParams, xp: np.ndarray, ky: int, kx: int, out_hw: tuple[int, int]) -> np.ndarray:
    """Input values read by tap (ky, kx) for every output pixel: [N, OH, OW, C]."""
    oh, ow = out_hw
    y0 = ky * p.dilation_h
    x0 = kx * p.dilation_w
    rows = slice(y0, y0 + (oh - 1) * p.stride_h + 1, p.stride_h)
    cols = slice(x0, x0 + (ow - 1) * p.stride_w + 1, p.stride_w)
    return xp[:, rows, cols, :]


def _requantize(p: ConvParams, acc: np.ndarray, rounding: str) -> np.ndarray:
    """bias already added; per-output-channel MBQM on the last axis, + output_offset, clamp."""
    out = mbqm(acc, p.multiplier.astype(np.int64), p.shift.astype(np.int64), rounding)
    return clamp(out + p.output_offset, p.act_min, p.act_max).astype(np.int8)


def _bias(p: ConvParams, out_c: int) -> np.ndarray:
    if p.bias is None:
        return np.zeros(out_c, dtype=np.int64)
    return p.bias.astype(np.int64)


def conv2d(
    p: ConvParams, x: np.ndarray, out_hw: tuple[int, int], rounding: str = "double"
) -> np.ndarray:
    """x int8 [N,H,W,Cin], filter OHWI [Cout,KH,KW,Cin/groups] -> int8 [N,OH,OW,Cout].

    acc[n,oy,ox,oc] = bias[oc] + sum over in-image taps (ky,kx) and c < Cin/groups of
    (x[n, oy*stride_h - pad_top + ky*dilation_h, ox*stride_w - pad_left + kx*dilation_w,
       g*f_c + c] + input_offset) * filter[oc,ky,kx,c],   g = oc // (Cout/groups).
    """
    out_c, kh, kw, f_c = p.filter.shape
    groups = x.shape[3] // f_c
    oc_per_group = out_c // groups
    xp = _padded_input(p, x, out_hw)
    w = p.filter.astype(np.int64).reshape(groups, oc_per_group, kh, kw, f_c)
    acc = np.zeros((x.shape[0], *out_hw, groups, oc_per_group), dtype=np.int64)
    mag = np.zeros_like(acc)  # sum of |term|: bounds every partial sum, in any order
    for ky in range(kh):
        for kx in range(kw):
            tap = _tap(p, xp, ky, kx, out_hw)
            tap = tap.reshape(*tap.shape[:3], groups, f_c)
            acc += np.einsum("nyxgc,goc->nyxgo", tap, w[:, :, ky, kx, :])
            mag += np.einsum("nyxgc,goc->nyxgo", np.abs(tap), np.abs(w[:, :, ky, kx, :]))
    bias = _bias(p, out_c)
    acc = acc.reshape(*acc.shape[:3], out_c) + bias
    check_acc(mag.reshape(acc.shape) + np.abs(bias), "conv2d")
    return _requantize(p, acc, rounding)


def depthwise_conv2d(
    p: ConvParams, x: np.ndarray, out_hw: tuple[int, int], rounding: str = "double"
) -> np.ndarray:
    """x int8 [N,H,W,Cin], filter 1HWO [1,KH,KW,Cout], Cout = Cin*ch_mult -> int8 [N,OH,OW,Cout].

    Output channel oc = ic*ch_mult + m reads input channel ic = oc // ch_mult.
    """
    _, kh, kw, out_c = p.filter.shape
    xp = _padded_input(p, x, out_hw)
    w = p.filter.astype(np.int64)
    acc = np.zeros((x.shape[0], *out_hw, out_c), dtype=np.int64)
    mag = np.zeros_like(acc)
    for ky in range(kh):
        for kx in range(kw):
            tap = np.repeat(_tap(p, xp, ky, kx, out_hw), p.ch_mult, axis=3)
            acc += tap * w[0, ky, kx, :]
            mag += np.abs(tap) * np.abs(w[0, ky, kx, :])
    bias = _bias(p, out_c)
    acc += bias
    check_acc(mag + np.abs(bias), "depthwise_conv2d")
    return _requantize(p, acc, rounding)
