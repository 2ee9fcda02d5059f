"""Quantizer rules of the order-based ops: Max / Min (ADD's rescaling, mq_add_params), PRelu
(TFLite's two multipliers, an int8 per-tensor alpha), ReduceMax / ReduceMin (the input's
quantization, no arithmetic) and ArgMax (int8 indices, scale 1, zero point 0)."""

from __future__ import annotations

import numpy as np

from .. import ir, qir
from ..errors import MicroqError
from ..ref.arith import quantize_multiplier, round_half_away
from . import scheme

INDEX_Q = qir.QParams(1.0, 0)  # an int8 that is the index itself


def max_min(qz, node: ir.Node) -> None:
    a: ir.BinaryAttrs = node.attrs
    x1, x2 = (qz.operand(i) for i in node.inputs)
    out = node.outputs[0]
    qz.add_tensor(out, qz.calibrated(out))
    q1, q2, qo = qz.q(x1), qz.q(x2), qz.q(out)
    lo, hi = scheme.act_range(qo.scale, qo.zero_point, a.act_min, a.act_max)
    p = scheme.add_params(q1.scale, q1.zero_point, q2.scale, q2.zero_point, qo.scale,
                          qo.zero_point, lo, hi, qz.rounding)
    qz.emit(node, "maximum" if node.op == "Max" else "minimum", [x1, x2], [out], p)


def prelu_params(s_in: float, zp_in: int, s_alpha: float, zp_alpha: int, s_out: float,
                 zp_out: int, act_min: int = -128, act_max: int = 127,
                 rounding: str = "double", what: str = "PRelu") -> qir.PReluParams:
    """TFLite PRELU: s_in / s_out for x >= 0, s_in * s_alpha / s_out for x < 0."""
    m1, sh1 = quantize_multiplier(s_in / s_out, rounding)
    m2, sh2 = quantize_multiplier(s_in * s_alpha / s_out, rounding)
    if sh1 > 22 or sh2 > 14:
        raise MicroqError(f"{what}: output scale {s_out!r} is too small for input scale "
                          f"{s_in!r} and slope scale {s_alpha!r}")
    return qir.PReluParams(input_offset=-int(zp_in), alpha_offset=-int(zp_alpha),
                           output_offset=int(zp_out), output_multiplier_1=m1,
                           output_shift_1=sh1, output_multiplier_2=m2, output_shift_2=sh2,
                           act_min=int(act_min), act_max=int(act_max))


def prelu(qz, node: ir.Node) -> None:
    x, slope = node.inputs
    out = node.outputs[0]
    qi = qz.q(x)
    qz.add_tensor(out, qz.calibrated(out))
    qo = qz.q(out)
    alpha = qz.g.tensors[slope].const.astype(np.float64)
    amax = float(np.abs(alpha).max(initial=0.0))
    s_alpha = float(np.float32(amax / 127.0)) if amax > 0 else 1.0  # symmetric, zero point 0
    if slope not in qz.tensors:
        data = np.clip(round_half_away(alpha / s_alpha), -127, 127).astype(np.int8)
        qz.add_tensor(slope, qir.QParams(s_alpha, 0), data)
    qa = qz.q(slope)
    lo, hi = scheme.act_range(qo.scale, qo.zero_point, node.attrs.act_min, node.attrs.act_max)
    p = prelu_params(qi.scale, qi.zero_point, qa.scale, qa.zero_point, qo.scale, qo.zero_point,
                     lo, hi, qz.rounding, f"node '{node.name}': PRelu")
    qz.emit(node, "prelu", [x, slope], [out], p)


def reduce_extreme(qz, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    qz.add_tensor(out, qz.q(x))  # max / min of int8 values keep their quantization
    kernel = "reduce_max" if node.op == "ReduceMax" else "reduce_min"
    qz.emit(node, kernel, [x], [out], qir.ReduceParams(tuple(node.attrs.axes)))


def argmax(qz, node: ir.Node) -> None:
    a: ir.ArgMaxAttrs = node.attrs
    x, out = node.inputs[0], node.outputs[0]
    n = qz.g.tensors[x].shape[a.axis]
    if n > 128:
        raise MicroqError(f"node '{node.name}': ArgMax over {n} values; the int8 index "
                          "output holds at most 128")
    qz.add_tensor(out, INDEX_Q)
    qz.emit(node, "argmax", [x], [out], qir.ArgMaxParams(a.axis, int(a.select_last_index)))
