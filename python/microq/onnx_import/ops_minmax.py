"""ONNX frontend converters for order-based ops: PRelu, element-wise Max / Min, ReduceMax /
ReduceMin (any axes, keepdims 0/1, axes as attribute or input) and ArgMax. Every axis is
mapped through the input's layout; reducing the batch axis (wherever a Transpose put it, or the
axis a Reshape merged it into: Ctx.check_samples) would mix samples and is refused."""

from __future__ import annotations

import numpy as np
from onnx import helper

from microq import ir
from microq.onnx_import import ops_tensor as tn
from microq.onnx_import.context import Ctx, Unsupported
from microq.onnx_import.layout import Value, const_to_physical


def prelu(cx: Ctx) -> None:
    """PRelu with a constant slope that broadcasts against x (per channel [C, 1, 1], scalar)."""
    slope = cx.const(1)
    if slope is None:
        raise Unsupported("PRelu with a non-constant slope")
    logical = cx.shape(cx.node.input[0])
    if slope.ndim > len(logical):
        raise Unsupported(f"PRelu slope of shape {list(slope.shape)} has more axes than x")
    try:
        np.broadcast_shapes(slope.shape, logical)
    except ValueError:
        raise Unsupported(f"PRelu slope of shape {list(slope.shape)} does not broadcast to "
                          f"x {list(logical)}") from None
    v = _input(cx, ())
    a = cx.b.const(cx.node.input[1], const_to_physical(slope, len(logical), v.perm))
    y = cx.b.add("PRelu", [v.name, a], cx.out(), cx.b.shape(v.name), ir.BinaryAttrs(), cx.name,
                 cx.source)
    cx.set(y, v.perm, hidden=v.hidden)


def _input(cx: Ctx, axes) -> Value:
    """Input 0 with the sample on a size-1 axis outside `axes` when there is one, else as a
    leading 1 (hidden): a tensor without a batch axis (a static dim 0 > 1) or with a size-1
    axis that is itself reduced. Never a computed axis holding the sample."""
    logical = cx.shape(cx.node.input[0])
    v = cx.value(0, hidden=True)
    if v.hidden:
        v = cx.b.unhide(v, logical, cx.source, avoid=tuple(axes))
    if not v.hidden and v.perm[0] in axes:
        v = cx.b.hide(v, logical, cx.source)
    return v


def max_min(cx: Ctx) -> None:
    """Max / Min of one input (a copy), two (broadcasting, either may be a constant) or more
    (a chain of two-input nodes)."""
    node = cx.node
    ins = [i for i in node.input if i]
    if len(ins) == 1:
        cx.values[cx.out()] = cx.value(0, hidden=True)
        return
    if len(ins) == 2:
        tn.binary(cx)
        return
    acc = ins[0]
    for i, other in enumerate(ins[1:]):
        last = i == len(ins) - 2
        out = node.output[0] if last else f"{node.output[0]}__{node.op_type.lower()}{i}"
        if not last:  # the chain's intermediate shape, for cx.shape of the next step
            shapes = [cx.shape(acc), cx.shape(other)]
            cx.prep.shapes[out] = tuple(np.broadcast_shapes(*shapes))
        cx.node = helper.make_node(node.op_type, [acc, other], [out], name=node.name)
        try:
            tn.binary(cx)
        finally:
            cx.node = node
        acc = out


def _keep_or_drop(cx: Ctx, y: str, perm: tuple[int, ...], axes: list[int], keep: bool,
                  hidden: bool = False) -> None:
    """Set the node output from y (reduced axes kept with size 1): as is, or with them dropped
    (the tracked batch axis, never among `axes`, then moves down by the dropped axes before)."""
    k, m = cx.batch_of(0), cx.merged_of(0)
    if keep:
        cx.set(y, perm, hidden=hidden)
        cx.set_batch(k, merged=m)
        return
    rest = [p for p in perm if p not in axes]
    renum = {old: i for i, old in enumerate(sorted(rest))}
    phys = cx.b.shape(y)[1:] if hidden else cx.b.shape(y)
    shape = ((1,) if hidden else ()) + tuple(d for p, d in zip(perm, phys) if p not in axes)
    cx.set(cx.b.reshape(y, shape, cx.out(), cx.source), tuple(renum[p] for p in rest),
           hidden=hidden)
    cx.set_batch(None if k is None else renum[k], merged=None if m is None else renum[m])


def _check_batch(cx: Ctx, axes: list[int], logical: tuple[int, ...]) -> None:
    cx.check_samples(cx.node.op_type, axes)
    if len(logical) < 1:
        raise Unsupported(f"{cx.node.op_type} of a scalar")


def reduce_extreme(cx: Ctx) -> None:
    """ReduceMax / ReduceMin: axes from the attribute (opset < 18) or input 1 (opset 18)."""
    a = cx.attrs()
    logical = cx.shape(cx.node.input[0])
    rank = len(logical)
    if cx.has_input(1):
        c = cx.const(1)
        if c is None:
            raise Unsupported(f"{cx.node.op_type} with non-constant axes")
        axes = [int(v) for v in c.reshape(-1)]
    else:
        axes = [int(v) for v in a.get("axes", [])]
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            cx.values[cx.out()] = cx.value(0, hidden=True)
            return
        axes = list(range(rank))
    if any(not -rank <= ax < rank for ax in axes):
        raise Unsupported(f"{cx.node.op_type} axes {axes} out of range for rank {rank}")
    axes = sorted({ax % rank for ax in axes})
    _check_batch(cx, axes, logical)
    v = _input(cx, axes)
    phys = tuple(sorted(v.phys_axis(ax) for ax in axes))
    shape = tuple(1 if i in phys else d for i, d in enumerate(cx.b.shape(v.name)))
    keep = bool(a.get("keepdims", 1))
    y = cx.b.add(cx.node.op_type, [v.name], cx.out() if keep else f"{cx.out()}__keep", shape,
                 ir.ReduceAttrs(phys), cx.name, cx.source)
    _keep_or_drop(cx, y, v.perm, axes, keep, v.hidden)


def argmax(cx: Ctx) -> None:
    """ArgMax along one axis (keepdims, select_last_index); the indices come out as int8
    (scale 1, zero point 0), so the axis may have at most 128 entries."""
    a = cx.attrs()
    logical = cx.shape(cx.node.input[0])
    rank = len(logical)
    axis = int(a.get("axis", 0))
    if not -rank <= axis < rank:
        raise Unsupported(f"ArgMax axis {axis} out of range for rank {rank}")
    axis %= rank
    _check_batch(cx, [axis], logical)
    if logical[axis] > 128:
        raise Unsupported(f"ArgMax over {logical[axis]} values: the int8 index output holds at "
                          "most 128")
    v = _input(cx, [axis])
    phys = v.phys_axis(axis)
    shape = tuple(1 if i == phys else d for i, d in enumerate(cx.b.shape(v.name)))
    keep = bool(a.get("keepdims", 1))
    attrs = ir.ArgMaxAttrs(phys, bool(a.get("select_last_index", 0)))
    y = cx.b.add("ArgMax", [v.name], cx.out() if keep else f"{cx.out()}__keep", shape, attrs,
                 cx.name, cx.source)
    _keep_or_drop(cx, y, v.perm, [axis], keep, v.hidden)
