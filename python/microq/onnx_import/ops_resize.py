"""ONNX frontend converter for Resize (nearest / linear over the spatial axes of NCHW and NCL
tensors), as onnxruntime computes it. (Upsample exists only below opset 10, which the loader
refuses; onnx's version converter turns it into Resize.)"""

from __future__ import annotations

import math

import numpy as np

from microq import ir
from microq.onnx_import.context import Ctx, Unsupported
from microq.onnx_import.ops_spatial import _finish_2d, _to_2d

COORD_MODES, NEAREST_MODES = ir.RESIZE_COORD_MODES, ir.RESIZE_NEAREST_MODES


def _text(a: dict, key: str, default: str) -> str:
    v = a.get(key, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def _full(values: list, axes: list[int] | None, rank: int, fill: list) -> list:
    """Per-axis values for every axis (opset 18's `axes` lists only some)."""
    if axes is None:
        if len(values) != rank:
            raise Unsupported(f"{len(values)} scales/sizes for a rank-{rank} input: the model "
                              "is invalid")
        return list(values)
    out = list(fill)
    for ax, v in zip(axes, values):
        out[ax % rank] = v
    return out


def _mode(raw: str) -> str:
    if raw in ("nearest",):
        return "nearest"
    if raw == "linear":
        return "linear"
    raise Unsupported(f"Resize mode '{raw}' (only nearest and linear)")


def _convert(cx: Ctx, mode: str, coord: str, nearest: str, scales: list[float] | None,
             sizes: list[int] | None, taps: tuple = (None, None)) -> None:
    logical = cx.shape(cx.node.input[0])
    rank = len(logical)
    if rank not in (3, 4):
        raise Unsupported(f"Resize of a rank-{rank} tensor (only 1-D [N,C,L] and 2-D [N,C,H,W])")
    if sizes is not None:
        sizes = [int(v) for v in sizes]
        if sizes[:2] != list(logical[:2]):
            raise Unsupported(f"Resize to sizes {sizes} changes the batch or channel axis")
        # onnxruntime: scale = float(out) / float(in), in float32
        scales = [float(np.float32(o) / np.float32(i)) for o, i in zip(sizes, logical)]
    else:
        scales = [float(np.float32(s)) for s in scales]
        if scales[:2] != [1.0, 1.0]:
            raise Unsupported(f"Resize with scales {scales} on the batch or channel axis")
        if min(scales) <= 0 or not all(math.isfinite(s) for s in scales):
            raise Unsupported(f"Resize scales {scales} must be positive: the model is invalid")
        sizes = [int(np.float32(s) * np.float32(d)) for s, d in zip(scales, logical)]
    if min(sizes) < 1:
        raise Unsupported(f"Resize output size {sizes} is empty: the model is invalid")
    x, xs, is_1d = _to_2d(cx, 0)
    if is_1d:
        scale, size = (1.0, scales[2]), (1, sizes[2])
    else:
        scale, size = (scales[2], scales[3]), (sizes[2], sizes[3])
    attrs = ir.ResizeAttrs(mode, coord, nearest, scale, size, taps)
    _finish_2d(cx, "Resize", [x], (xs[0], size[0], size[1], xs[3]), attrs, is_1d)


def _gathered_taps(cx: Ctx, a: dict) -> None:
    """The Resize that patterns.fuse_gather_lerp made of a gather + lerp: the model's taps."""
    logical = list(cx.shape(cx.node.input[0]))
    axis = int(a["microq_axis"])
    lo, hi = ([int(v) for v in a[k]] for k in ("microq_lo", "microq_hi"))
    frac = [float(v) for v in a["microq_frac"]]
    sizes = logical[:axis] + [len(lo)] + logical[axis + 1:]
    phys = 1 if axis == len(logical) - 1 else 0  # W (and 1-D L) is physical axis 1, H is 0
    taps = [None, None]
    taps[phys] = (tuple(lo), tuple(hi), tuple(frac))
    _convert(cx, "linear", "asymmetric", "floor", None, sizes, tuple(taps))


def resize(cx: Ctx) -> None:
    a = cx.attrs()
    if "microq_axis" in a:
        _gathered_taps(cx, a)
        return
    mode = _mode(_text(a, "mode", "nearest"))
    coord = _text(a, "coordinate_transformation_mode", "half_pixel")
    nearest = _text(a, "nearest_mode", "round_prefer_floor")
    scales_idx, sizes_idx = 2, 3  # opset >= 11: (X, roi, scales, sizes)
    if coord not in COORD_MODES:
        raise Unsupported(f"Resize coordinate_transformation_mode '{coord}' (supported: "
                          f"{', '.join(COORD_MODES)})")
    if mode == "nearest" and nearest not in NEAREST_MODES:
        raise Unsupported(f"Resize nearest_mode '{nearest}'")
    if int(a.get("antialias", 0)):
        raise Unsupported("Resize with antialias=1")
    policy = _text(a, "keep_aspect_ratio_policy", "stretch")
    rank = len(cx.shape(cx.node.input[0]))
    axes = [int(v) for v in a["axes"]] if "axes" in a else None
    sizes = cx.const(sizes_idx)
    if cx.has_input(sizes_idx) and sizes is None:
        raise Unsupported("Resize with non-constant sizes")
    if sizes is not None and sizes.size:
        if policy != "stretch":
            raise Unsupported(f"Resize keep_aspect_ratio_policy '{policy}' (only stretch)")
        full = _full([int(v) for v in sizes.reshape(-1)], axes, rank,
                     list(cx.shape(cx.node.input[0])))
        _convert(cx, mode, coord, nearest, None, full)
        return
    scales = cx.const(scales_idx)
    if scales is None or not scales.size:
        raise Unsupported("Resize without constant scales or sizes")
    full = _full([float(v) for v in scales.reshape(-1)], axes, rank, [1.0] * rank)
    _convert(cx, mode, coord, nearest, full, None)

