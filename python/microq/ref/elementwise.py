"""Integer reference of the elementwise kernels (c_runtime/src/mq_elementwise.c): add, sub, mul
with numpy broadcasting, lookup table, requantize; plus the mq_broadcast fields codegen emits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..qir import AddParams, LutParams, MulParams, RequantizeParams
from .arith import clamp, mbqm

MQ_MAX_DIMS = 6


def broadcast_struct(shape1: Sequence[int], shape2: Sequence[int]) -> dict:
    """The mq_broadcast fields for inputs of these shapes (numpy rules): rank, out_shape and the
    element strides of each input per output axis (0 on a broadcast axis), right-aligned in
    MQ_MAX_DIMS-long lists whose unused leading axes have size 1 and stride 0."""
    out_shape = tuple(np.broadcast_shapes(tuple(shape1), tuple(shape2)))
    rank = len(out_shape)
    if rank > MQ_MAX_DIMS:
        raise ValueError(f"broadcast rank {rank} exceeds MQ_MAX_DIMS={MQ_MAX_DIMS}")

    def strides(shape: Sequence[int]) -> list[int]:
        shape = (1,) * (rank - len(shape)) + tuple(shape)
        result = [0] * rank
        step = 1
        for d in reversed(range(rank)):
            result[d] = step if shape[d] != 1 else 0
            step *= shape[d]
        return result

    pad = MQ_MAX_DIMS - rank
    return {
        "rank": rank,
        "out_shape": [1] * pad + list(out_shape),
        "in1_strides": [0] * pad + strides(shape1),
        "in2_strides": [0] * pad + strides(shape2),
    }


def _add_sub(p: AddParams, a, b, negate: bool, rounding: str) -> np.ndarray:
    x1, x2 = np.broadcast_arrays(np.asarray(a, np.int64), np.asarray(b, np.int64))
    shifted1 = (x1 + p.input1_offset) * (1 << p.left_shift)
    shifted2 = (x2 + p.input2_offset) * (1 << p.left_shift)
    scaled1 = mbqm(shifted1, p.input1_multiplier, p.input1_shift, rounding)
    scaled2 = mbqm(shifted2, p.input2_multiplier, p.input2_shift, rounding)
    raw = scaled1 - scaled2 if negate else scaled1 + scaled2
    out = mbqm(raw, p.output_multiplier, p.output_shift, rounding) + p.output_offset
    return clamp(out, p.act_min, p.act_max).astype(np.int8)


def add(p: AddParams, a, b, rounding: str = "double") -> np.ndarray:
    """TFLite int8 ADD of two int8 arrays with numpy broadcasting."""
    return _add_sub(p, a, b, False, rounding)


def sub(p: AddParams, a, b, rounding: str = "double") -> np.ndarray:
    """TFLite int8 SUB (a - b): ADD's arithmetic with the rescaled inputs subtracted."""
    return _add_sub(p, a, b, True, rounding)


def mul(p: MulParams, a, b, rounding: str = "double") -> np.ndarray:
    """TFLite int8 MUL of two int8 arrays with numpy broadcasting."""
    x1, x2 = np.broadcast_arrays(np.asarray(a, np.int64), np.asarray(b, np.int64))
    prod = (x1 + p.input1_offset) * (x2 + p.input2_offset)
    out = mbqm(prod, p.output_multiplier, p.output_shift, rounding) + p.output_offset
    return clamp(out, p.act_min, p.act_max).astype(np.int8)


def lut(p: LutParams, x) -> np.ndarray:
    """out = table[x + 128]."""
    table = np.asarray(p.table, np.int8)
    if table.shape != (256,):
        raise ValueError(f"a lookup table has 256 entries, not {table.shape}")
    return table[np.asarray(x, np.int64) + 128]


def requantize(p: RequantizeParams, x, rounding: str = "double") -> np.ndarray:
    """Change of quantization: clamp(MBQM(x + input_offset, M, shift) + output_offset)."""
    x = np.asarray(x, np.int64) + p.input_offset
    out = mbqm(x, p.multiplier, p.shift, rounding) + p.output_offset
    return clamp(out, p.act_min, p.act_max).astype(np.int8)


def abs_(p: RequantizeParams, x, rounding: str = "double") -> np.ndarray:
    """Abs: clamp(MBQM(|x + input_offset|, M, shift) + output_offset) (mq_abs_s8)."""
    v = np.abs(np.asarray(x, np.int64) + p.input_offset)
    out = mbqm(v, p.multiplier, p.shift, rounding) + p.output_offset
    return clamp(out, p.act_min, p.act_max).astype(np.int8)
