"""ONNX frontend, step 2a: rewrite multi-node ONNX patterns into one op before conversion (GELU)."""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

Named = tuple[onnx.NodeProto, str]  # a node and its unique name


def _scalar(consts: dict[str, np.ndarray], name: str) -> float | None:
    c = consts.get(name)
    if c is None or c.size != 1:
        return None
    return float(c.reshape(-1)[0])


def _other(node: onnx.NodeProto, name: str) -> str:
    return node.input[1] if node.input[0] == name else node.input[0]


def fuse_erf_gelu(
    nodes: list[Named], consts: dict[str, np.ndarray], outputs: set[str]
) -> tuple[list[Named], dict[str, list[str]]]:
    """x * 0.5 * (1 + Erf(x / sqrt2)) in its usual exporter orders -> one Gelu node.

    Returns the new node list and, for each Gelu, the ONNX node names it replaces.
    """
    users: dict[str, list[Named]] = {}
    for nn in nodes:
        for i in nn[0].input:
            users.setdefault(i, []).append(nn)

    def only_user(t: str, op: str) -> Named | None:
        u = users.get(t, [])
        return u[0] if len(u) == 1 and u[0][0].op_type == op and t not in outputs else None

    producer = {o: nn for nn in nodes for o in nn[0].output}
    drop: set[int] = set()
    replace: dict[int, Named] = {}
    merged: dict[str, list[str]] = {}
    for erf, erf_name in nodes:
        if erf.op_type != "Erf":
            continue
        pre = producer.get(erf.input[0])
        if pre is None or pre[0].op_type not in ("Div", "Mul") or len(users[erf.input[0]]) != 1:
            continue
        k = _scalar(consts, pre[0].input[1])
        want = math.sqrt(2) if pre[0].op_type == "Div" else 1 / math.sqrt(2)
        if k is None or abs(k - want) > 1e-3:
            continue
        x = pre[0].input[0]
        add = only_user(erf.output[0], "Add")
        if add is None or _scalar(consts, _other(add[0], erf.output[0])) != 1.0:
            continue
        m1 = only_user(add[0].output[0], "Mul")
        if m1 is None:
            continue
        group = [pre, (erf, erf_name), add, m1]
        other = _other(m1[0], add[0].output[0])
        if other == x:  # (x * (1 + erf)) * 0.5
            last = only_user(m1[0].output[0], "Mul")
            ok = last is not None and _scalar(consts, _other(last[0], m1[0].output[0])) == 0.5
        else:  # (x * 0.5) * (1 + erf)
            half = producer.get(other)
            last = m1
            ok = (half is not None and half[0].op_type == "Mul" and x in half[0].input
                  and _scalar(consts, _other(half[0], x)) == 0.5 and len(users[other]) == 1)
            group.insert(0, half)
        if not ok:
            continue
        if last is not m1:
            group.append(last)
        ids = [nodes.index(g) for g in group]
        gelu = helper.make_node("Gelu", [x], [last[0].output[0]], name=last[1])
        replace[ids[-1]] = (gelu, last[1])
        drop.update(ids[:-1])
        merged[last[1]] = [g[1] for g in group]
    out = [replace.get(i, nn) for i, nn in enumerate(nodes) if i not in drop]
    return out, merged
