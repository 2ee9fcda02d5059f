"""Resize (nearest / bilinear) over H and W of NHWC tensors: the source coordinates as onnxruntime
computes them (float32), the float executor's op, and the integer reference of
c_runtime/src/mq_resize.c."""

from __future__ import annotations

import numpy as np

from microq import ir
from microq.qir import ResizeParams

FRAC_BITS = 10  # bilinear tap weights are Q10 (mq_resize.h); two of them make Q20
ONE = 1 << FRAC_BITS



def source_coords(coord_mode: str, in_size: int, out_size: int, scale: float) -> np.ndarray:
    """x_original for every output index, float32, in the order onnxruntime evaluates it."""
    f = np.float32
    x = np.arange(out_size, dtype=np.float32)
    s = f(scale)
    if coord_mode == "asymmetric":
        return x / s
    if coord_mode == "half_pixel":
        return (x + f(0.5)) / s - f(0.5)
    if coord_mode == "pytorch_half_pixel":
        return (x + f(0.5)) / s - f(0.5) if out_size > 1 else np.zeros(out_size, np.float32)
    if coord_mode == "tf_half_pixel_for_nn":
        return (x + f(0.5)) / s
    if coord_mode == "align_corners":
        if out_size == 1:
            return np.zeros(1, np.float32)
        return x * f(in_size - 1) / f(out_size - 1)
    if coord_mode == "half_pixel_symmetric":
        adjustment = f(out_size) / (s * f(in_size))
        offset = f(in_size) / f(2) * (f(1) - adjustment)
        return offset + (x + f(0.5)) / s - f(0.5)
    raise ValueError(f"unknown coordinate_transformation_mode '{coord_mode}'")


def nearest_index(a: ir.ResizeAttrs, in_size: int, out_size: int, scale: float) -> np.ndarray:
    """The input index each output index copies (int32, clamped to the input)."""
    xo = source_coords(a.coord_mode, in_size, out_size, scale).astype(np.float64)
    m = a.nearest_mode
    if m == "round_prefer_floor":
        idx = np.where(xo == np.trunc(xo) + 0.5, np.floor(xo), np.sign(xo) * np.floor(np.abs(xo)
                                                                                  + 0.5))
    elif m == "round_prefer_ceil":
        idx = np.sign(xo) * np.floor(np.abs(xo) + 0.5)  # std::round: half away from zero
    elif m == "floor":
        idx = np.floor(xo)
    elif m == "ceil":
        idx = np.ceil(xo)
    else:
        raise ValueError(f"unknown nearest_mode '{m}'")
    return np.clip(idx, 0, in_size - 1).astype(np.int32)


def linear_taps(a: ir.ResizeAttrs, in_size: int, out_size: int, scale: float,
                axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, weight of hi as float32) per output index of `axis` (0: H, 1: W), as
    onnxruntime's bilinear, or the model's own taps."""
    if a.taps[axis] is not None:
        lo, hi, frac = (np.asarray(t) for t in a.taps[axis])
        return lo.astype(np.int32), hi.astype(np.int32), frac.astype(np.float32)
    xo = np.clip(source_coords(a.coord_mode, in_size, out_size, scale), np.float32(0),
                 np.float32(in_size - 1))
    lo = np.minimum(xo.astype(np.int64), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = np.where(lo == hi, np.float32(0), xo - lo.astype(np.float32)).astype(np.float32)
    return lo.astype(np.int32), hi.astype(np.int32), frac


def float_resize(args: list[np.ndarray], a: ir.ResizeAttrs) -> np.ndarray:
    """The float op on a batch [N,H,W,C] -> [N,OH,OW,C]."""
    x = args[0]
    (h, w), (oh, ow) = x.shape[1:3], a.size
    if a.mode == "nearest":
        yi = nearest_index(a, h, oh, a.scale[0])
        xi = nearest_index(a, w, ow, a.scale[1])
        return np.ascontiguousarray(x[:, yi][:, :, xi])
    y0, y1, fy = linear_taps(a, h, oh, a.scale[0], 0)
    x0, x1, fx = linear_taps(a, w, ow, a.scale[1], 1)
    fy, fx = fy[None, :, None, None], fx[None, None, :, None]
    rows0, rows1 = x[:, y0], x[:, y1]
    top = rows0[:, :, x0] * (1 - fx) + rows0[:, :, x1] * fx
    bottom = rows1[:, :, x0] * (1 - fx) + rows1[:, :, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def resize_params(a: ir.ResizeAttrs, in_hw: tuple[int, int],
                  out_hw: tuple[int, int]) -> ResizeParams:
    """The integer tables of the kernel: indices, and Q10 weights rounded half away from 0."""
    tables = []
    for axis in (0, 1):
        args = (a, in_hw[axis], out_hw[axis], a.scale[axis])
        if a.mode == "nearest":
            lo = nearest_index(*args)
            tables += [lo, lo.copy(), np.zeros_like(lo)]
        else:
            lo, hi, frac = linear_taps(*args, axis)
            q = np.floor(frac.astype(np.float64) * ONE + 0.5).astype(np.int32)
            tables += [lo, hi, q]
    return ResizeParams(*(np.ascontiguousarray(t, dtype=np.int32) for t in tables))


def _check(p: ResizeParams, x: np.ndarray, out_hw: tuple[int, int]) -> None:
    h, w = x.shape[1:3]
    for name, size, n in (("y", h, out_hw[0]), ("x", w, out_hw[1])):
        for t in ("lo", "hi"):
            v = getattr(p, f"{name}_{t}")
            if v.shape != (n,) or v.min(initial=0) < 0 or v.max(initial=0) >= size:
                raise ValueError(f"resize table {name}_{t} out of range for input size {size}")
        f = getattr(p, f"{name}_frac")
        if f.shape != (n,) or f.min(initial=0) < 0 or f.max(initial=0) > ONE:
            raise ValueError(f"resize table {name}_frac outside [0, {ONE}]")


def resize_nearest(p: ResizeParams, x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """x int8 [N,H,W,C] -> out[n, oy, ox, c] = x[n, y_lo[oy], x_lo[ox], c]."""
    _check(p, x, out_hw)
    return np.ascontiguousarray(x[:, p.y_lo][:, :, p.x_lo])


def resize_bilinear(p: ResizeParams, x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """x int8 [N,H,W,C] -> int8 [N,OH,OW,C], on the raw int8 values (output quantization = input's):

    top    = x[y_lo, x_lo] * (1024 - fx) + x[y_lo, x_hi] * fx          |top| <= 2^17
    bottom = x[y_hi, x_lo] * (1024 - fx) + x[y_hi, x_hi] * fx
    acc    = top * (1024 - fy) + bottom * fy                           |acc| <= 2^27
    out    = acc / 2^20 rounded half away from zero (a convex blend: stays in [-128, 127]).
    """
    _check(p, x, out_hw)
    v = x.astype(np.int64)
    fy = p.y_frac.astype(np.int64)[None, :, None, None]
    fx = p.x_frac.astype(np.int64)[None, None, :, None]
    r0, r1 = v[:, p.y_lo], v[:, p.y_hi]
    top = r0[:, :, p.x_lo] * (ONE - fx) + r0[:, :, p.x_hi] * fx
    bottom = r1[:, :, p.x_lo] * (ONE - fx) + r1[:, :, p.x_hi] * fx
    acc = top * (ONE - fy) + bottom * fy
    assert np.abs(acc).max(initial=0) <= 128 << (2 * FRAC_BITS), "resize accumulator bound"
    half = 1 << (2 * FRAC_BITS - 1)
    rounded = np.where(acc >= 0, acc + half, acc - half)
    out = np.sign(rounded) * (np.abs(rounded) >> (2 * FRAC_BITS))  # C division truncates
    return out.astype(np.int8)
