"""3-D convolution on NDHWC: the float executor's op and the integer reference of
c_runtime/src/mq_conv3d.c."""

from __future__ import annotations

import numpy as np

from microq import ir
from microq.qir import Conv3DParams
from microq.ref.arith import clamp, mbqm


def out_size(size: int, k: int, stride: int, dilation: int, pad_begin: int, pad_end: int) -> int:
    return (size + pad_begin + pad_end - (k - 1) * dilation - 1) // stride + 1


def _correlate(xp: np.ndarray, w: np.ndarray, stride, dilation, out_dhw, dtype) -> np.ndarray:
    """xp [N, D', H', W', Cin] already padded (front/top/left = index 0), w [Cout,KD,KH,KW,f_c]
    -> [N, OD, OH, OW, Cout]; groups = Cin / f_c."""
    n, cin = xp.shape[0], xp.shape[4]
    cout, kd, kh, kw, f_c = w.shape
    groups = cin // f_c
    og = cout // groups
    od, oh, ow = out_dhw
    wg = w.reshape(groups, og, kd, kh, kw, f_c)
    acc = np.zeros((n, od, oh, ow, groups, og), dtype)
    for a in range(kd):
        for b in range(kh):
            for c in range(kw):
                z0, y0, x0 = a * dilation[0], b * dilation[1], c * dilation[2]
                tap = xp[:, z0 : z0 + (od - 1) * stride[0] + 1 : stride[0],
                         y0 : y0 + (oh - 1) * stride[1] + 1 : stride[1],
                         x0 : x0 + (ow - 1) * stride[2] + 1 : stride[2], :]
                tap = tap.reshape(n, od, oh, ow, groups, f_c)
                acc += np.einsum("ndhwgc,goc->ndhwgo", tap, wg[:, :, a, b, c, :])
    return acc.reshape(n, od, oh, ow, cout)


def _pad(x: np.ndarray, begin, end, fill_dtype) -> np.ndarray:
    return np.pad(x.astype(fill_dtype), ((0, 0), *zip(begin, end), (0, 0)))


def float_conv3d(args: list[np.ndarray], a: ir.Conv3DAttrs) -> np.ndarray:
    x, w, b = args
    k = w.shape[1:4]
    out = tuple(out_size(x.shape[1 + i], k[i], a.stride[i], a.dilation[i], a.pads[i],
                         a.pads[3 + i]) for i in range(3))
    xp = _pad(x, a.pads[:3], a.pads[3:], np.float64)
    y = _correlate(xp, w.astype(np.float64), a.stride, a.dilation, out, np.float64) + b
    return np.clip(y, a.act_min, a.act_max).astype(np.float32)


def conv3d(p: Conv3DParams, x: np.ndarray, out_dhw: tuple[int, int, int],
           rounding: str = "double") -> np.ndarray:
    """x int8 [N,D,H,W,Cin], filter [Cout,KD,KH,KW,Cin/groups] -> int8 [N,OD,OH,OW,Cout]:
    (x + input_offset) zero-padded (a padded tap adds 0, as the C kernel skips it), summed per
    tap with the bias, per-channel MBQM, + output_offset, clamp."""
    k = p.filter.shape[1:4]
    stride = (p.stride_d, p.stride_h, p.stride_w)
    dilation = (p.dilation_d, p.dilation_h, p.dilation_w)
    begin = (p.pad_front, p.pad_top, p.pad_left)
    # pad the end far enough for every tap of every output (taps past the input read zeros)
    end = [max(0, (out_dhw[i] - 1) * stride[i] + (k[i] - 1) * dilation[i] + 1 - begin[i]
               - x.shape[1 + i]) for i in range(3)]
    xp = _pad(x.astype(np.int64) + p.input_offset, begin, end, np.int64)
    acc = _correlate(xp, p.filter.astype(np.int64), stride, dilation, out_dhw, np.int64)
    if p.bias is not None:
        acc = acc + p.bias.astype(np.int64)
    assert np.abs(acc).max(initial=0) < 2**31, "conv3d accumulator exceeds int32"
    out = mbqm(acc, p.multiplier.astype(np.int64), p.shift.astype(np.int64), rounding)
    return clamp(out + p.output_offset, p.act_min, p.act_max).astype(np.int8)
