"""Integer reference of the Max / Min / PRelu kernels of c_runtime/src/mq_elementwise.c
(mq_maximum_s8, mq_minimum_s8, mq_prelu_s8), numpy broadcasting."""

from __future__ import annotations

import numpy as np

from ..qir import AddParams, PReluParams
from .arith import clamp, mbqm


def _extreme(p: AddParams, a, b, is_min: bool, rounding: str) -> np.ndarray:
    """ADD's rescaling of both inputs to one scale, then the smaller / larger requantized."""
    x1, x2 = np.broadcast_arrays(np.asarray(a, np.int64), np.asarray(b, np.int64))
    scaled1 = mbqm((x1 + p.input1_offset) * (1 << p.left_shift), p.input1_multiplier,
                   p.input1_shift, rounding)
    scaled2 = mbqm((x2 + p.input2_offset) * (1 << p.left_shift), p.input2_multiplier,
                   p.input2_shift, rounding)
    raw = np.minimum(scaled1, scaled2) if is_min else np.maximum(scaled1, scaled2)
    out = mbqm(raw, p.output_multiplier, p.output_shift, rounding) + p.output_offset
    return clamp(out, p.act_min, p.act_max).astype(np.int8)


def maximum(p: AddParams, a, b, rounding: str = "double") -> np.ndarray:
    return _extreme(p, a, b, False, rounding)


def minimum(p: AddParams, a, b, rounding: str = "double") -> np.ndarray:
    return _extreme(p, a, b, True, rounding)


def prelu(p: PReluParams, x, alpha, rounding: str = "double") -> np.ndarray:
    """TFLite PRELU: two multipliers, for the positive and the negative side."""
    x, alpha = np.broadcast_arrays(np.asarray(x, np.int64), np.asarray(alpha, np.int64))
    v = x + p.input_offset
    pos = mbqm(v, p.output_multiplier_1, p.output_shift_1, rounding)
    neg = mbqm(v * (alpha + p.alpha_offset), p.output_multiplier_2, p.output_shift_2, rounding)
    out = np.where(v >= 0, pos, neg) + p.output_offset
    return clamp(out, p.act_min, p.act_max).astype(np.int8)
