"""ONNX frontend rewrite: PRelu's own function body (the `*_expanded` form, and what hand-written
`torch.where(x < 0, slope * x, x)` exports) back to PRelu.

    Less(x, 0) -> c;  Mul(slope, x) -> s;  Where(c, s, x) -> y      =>  PRelu(x, slope) -> y
    (also Greater(x, 0) / Where(c, x, s), and Greater/Less with the operands swapped)

slope is a constant of any shape that broadcasts against x (per element, per channel, a
scalar); the Less and Mul results must have no other reader. Less/Where on activations have no
int8 kernel of their own, so without this the body is refused.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from microq.onnx_import.patterns import Named, _Rewriter


def _compare_with_zero(rw: _Rewriter, cond: str) -> tuple[str, bool] | None:
    """(x, True when cond means x < 0) for cond = Less(x, 0) / Greater(0, x) / Greater(x, 0) /
    Less(0, x) with a constant all-zero operand; None otherwise."""
    nn = rw.made_by(cond, "Less", "Greater")
    if nn is None or rw.only_user(cond, "Where") is None:
        return None
    a, b = nn[0].input[0], nn[0].input[1]
    zero = [t for t in (a, b) if t in rw.consts and not np.any(np.asarray(rw.consts[t]))]
    if len(zero) != 1:
        return None
    x = b if zero[0] == a else a
    if x in rw.consts:
        return None
    negative = (nn[0].op_type == "Less") == (x == a)  # Less(x, 0) or Greater(0, x)
    return x, negative


def _slope_times(rw: _Rewriter, t: str, x: str) -> tuple[str, Named] | None:
    """(slope, the Mul) when t = Mul(slope, x) or Mul(x, slope), slope a float constant, read
    only by the Where."""
    nn = rw.made_by(t, "Mul")
    if nn is None or rw.only_user(t, "Where") is None or x not in nn[0].input:
        return None
    other = [u for u in nn[0].input if u != x]
    if len(other) != 1 or other[0] not in rw.consts:
        return None
    if np.asarray(rw.consts[other[0]]).dtype.kind != "f":
        return None
    return other[0], nn


def fuse_prelu_body(nodes: list[Named], consts: dict[str, np.ndarray], outputs: set[str]
                    ) -> tuple[list[Named], dict[str, list[str]]]:
    rw = _Rewriter(nodes, consts, outputs)
    for nn in nodes:
        node: onnx.NodeProto = nn[0]
        if node.op_type != "Where" or len(node.input) != 3:
            continue
        cond, yes, no = node.input
        found = _compare_with_zero(rw, cond)
        if found is None:
            continue
        x, negative = found
        keep, scaled = (no, yes) if negative else (yes, no)  # the branch that stays x
        if keep != x:
            continue
        slope = _slope_times(rw, scaled, x)
        if slope is None:
            continue
        group = [rw.producer[cond], slope[1], nn]
        rw.commit(group, helper.make_node("PRelu", [x, slope[0]], [node.output[0]]))
    return rw.result()
