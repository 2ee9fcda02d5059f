"""Transposed convolution (ONNX ConvTranspose) on NHWC: the float executor's op and the integer
reference of c_runtime/src/mq_transpose_conv.c."""

from __future__ import annotations

import numpy as np

from microq import ir
from microq.qir import ConvParams
from microq.ref.arith import clamp, mbqm


def out_size(size: int, k: int, stride: int, dilation: int, pad_begin: int, pad_end: int) -> int:
    """ONNX: stride * (in - 1) + (k - 1) * dilation + 1 - pads (output_padding is a negative
    end pad here)."""
    return stride * (size - 1) + (k - 1) * dilation + 1 - pad_begin - pad_end


def _scatter(x: np.ndarray, w: np.ndarray, stride, dilation, pad_tl, out_hw, dtype) -> np.ndarray:
    """sum over taps: full[iy*s + ky*d, ix*s + kx*d, oc] += x[iy, ix, ic] * w[oc, ky, kx, ic]
    per group, then the window [pad_top : pad_top + OH, pad_left : pad_left + OW]."""
    n, h, wd, cin = x.shape
    cout, kh, kw, f_c = w.shape
    groups = cin // f_c
    og = cout // groups
    (sh, sw), (dh, dw), (pt, pl), (oh, ow) = stride, dilation, pad_tl, out_hw
    fh = max((h - 1) * sh + (kh - 1) * dh + 1, pt + oh)
    fw = max((wd - 1) * sw + (kw - 1) * dw + 1, pl + ow)
    full = np.zeros((n, fh, fw, cout), dtype)
    xg = x.reshape(n, h, wd, groups, f_c)
    wg = w.reshape(groups, og, kh, kw, f_c)
    for ky in range(kh):
        for kx in range(kw):
            contrib = np.einsum("nhwgc,goc->nhwgo", xg, wg[:, :, ky, kx, :]).reshape(n, h, wd, cout)
            full[:, ky * dh : ky * dh + (h - 1) * sh + 1 : sh,
                 kx * dw : kx * dw + (wd - 1) * sw + 1 : sw] += contrib
    return full[:, pt : pt + oh, pl : pl + ow]


def float_transpose_conv(args: list[np.ndarray], a: ir.ConvAttrs) -> np.ndarray:
    x, w, b = args
    kh, kw = w.shape[1:3]
    oh = out_size(x.shape[1], kh, a.stride[0], a.dilation[0], a.pads[0], a.pads[2])
    ow = out_size(x.shape[2], kw, a.stride[1], a.dilation[1], a.pads[1], a.pads[3])
    y = _scatter(x.astype(np.float64), w.astype(np.float64), a.stride, a.dilation,
                 a.pads[:2], (oh, ow), np.float64) + b
    return np.clip(y, a.act_min, a.act_max).astype(np.float32)


def transpose_conv2d(p: ConvParams, x: np.ndarray, out_hw: tuple[int, int],
                     rounding: str = "double") -> np.ndarray:
    """x int8 [N,H,W,Cin], filter OHWI [Cout,KH,KW,Cin/groups] -> int8 [N,OH,OW,Cout]:

    acc[n,oy,ox,oc] = bias[oc] + sum over taps (ky, kx) and input pixels (iy, ix) with
      oy = iy*stride_h - pad_top + ky*dilation_h, ox = ix*stride_w - pad_left + kx*dilation_w
    of (x[n,iy,ix,g*f_c + c] + input_offset) * filter[oc,ky,kx,c], g = oc // (Cout/groups);
    then per-channel MBQM, + output_offset, clamp."""
    xi = x.astype(np.int64) + p.input_offset
    acc = _scatter(xi, p.filter.astype(np.int64), (p.stride_h, p.stride_w),
                   (p.dilation_h, p.dilation_w), (p.pad_top, p.pad_left), out_hw, np.int64)
    if p.bias is not None:
        acc = acc + p.bias.astype(np.int64)
    assert np.abs(acc).max(initial=0) < 2**31, "transpose conv accumulator exceeds int32"
    out = mbqm(acc, p.multiplier.astype(np.int64), p.shift.astype(np.int64), rounding)
    return clamp(out + p.output_offset, p.act_min, p.act_max).astype(np.int8)
