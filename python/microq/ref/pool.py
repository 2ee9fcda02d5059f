"""Integer reference of max and average pooling: the spec of c_runtime/src/mq_pool.c."""

from __future__ import annotations

import numpy as np

from microq.qir import PoolParams
from microq.ref.arith import check_acc, clamp


def _tap_range(origin: int, size: int, k_size: int) -> tuple[int, int]:
    """In-image taps k in [k_start, k_end) of a window whose first tap is at `origin`."""
    return max(-origin, 0), min(size - origin, k_size)


def _div_round_away(s: np.ndarray, count: int) -> np.ndarray:
    """TFLite: s > 0 ? (s + count/2) / count : (s - count/2) / count, C truncating division."""
    num = np.where(s > 0, s + count // 2, s - count // 2)
    return np.sign(num) * (np.abs(num) // count)


def _check_windows(p: PoolParams, x: np.ndarray, out_hw: tuple[int, int]) -> None:
    _, h, w, _ = x.shape
    oh, ow = out_hw
    if not (
        0 <= p.pad_top < p.kernel_h
        and 0 <= p.pad_left < p.kernel_w
        and (oh - 1) * p.stride_h - p.pad_top < h
        and (ow - 1) * p.stride_w - p.pad_left < w
    ):
        raise ValueError("pooling window without any in-image tap (the C kernel rejects it)")


def max_pool(p: PoolParams, x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """x int8 [N,H,W,C] -> int8 [N,OH,OW,C]: max over in-image taps, then clamp."""
    _check_windows(p, x, out_hw)
    n, h, w, c = x.shape
    out = np.zeros((n, *out_hw, c), dtype=np.int8)
    for oy in range(out_hw[0]):
        y0 = oy * p.stride_h - p.pad_top
        ky_start, ky_end = _tap_range(y0, h, p.kernel_h)
        for ox in range(out_hw[1]):
            x0 = ox * p.stride_w - p.pad_left
            kx_start, kx_end = _tap_range(x0, w, p.kernel_w)
            window = x[:, y0 + ky_start : y0 + ky_end, x0 + kx_start : x0 + kx_end, :]
            out[:, oy, ox, :] = clamp(window.max(axis=(1, 2)), p.act_min, p.act_max)
    return out


def avg_pool(p: PoolParams, x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """x int8 [N,H,W,C] -> int8 [N,OH,OW,C].

    S = sum over in-image taps of (x + input_offset); count = in-image taps
    (count_include_pad == 0, TFLite) or taps inside [-pad_top, H + pad_bottom) x
    [-pad_left, W + pad_right) (count_include_pad == 1, onnxruntime);
    out = clamp(round_half_away(S / count) + output_offset).
    """
    _check_windows(p, x, out_hw)
    n, h, w, c = x.shape
    out = np.zeros((n, *out_hw, c), dtype=np.int8)
    for oy in range(out_hw[0]):
        y0 = oy * p.stride_h - p.pad_top
        ky_start, ky_end = _tap_range(y0, h, p.kernel_h)
        count_h = ky_end - ky_start
        if p.count_include_pad:
            count_h = min(y0 + p.kernel_h, h + p.pad_bottom) - y0
        for ox in range(out_hw[1]):
            x0 = ox * p.stride_w - p.pad_left
            kx_start, kx_end = _tap_range(x0, w, p.kernel_w)
            count_w = kx_end - kx_start
            if p.count_include_pad:
                count_w = min(x0 + p.kernel_w, w + p.pad_right) - x0
            window = x[:, y0 + ky_start : y0 + ky_end, x0 + kx_start : x0 + kx_end, :]
            raw = window.astype(np.int64)
            s = (raw + p.input_offset).sum(axis=(1, 2))
            count = count_h * count_w
            # the C sums x, adds taps * input_offset, then +- count / 2 before dividing
            taps = window.shape[1] * window.shape[2]
            check_acc(np.maximum(np.abs(raw).sum(axis=(1, 2)), np.maximum(
                taps * abs(p.input_offset), np.abs(s) + count // 2)), "avg_pool")
            avg = _div_round_away(s, count)
            out[:, oy, ox, :] = clamp(avg + p.output_offset, p.act_min, p.act_max)
    return out
