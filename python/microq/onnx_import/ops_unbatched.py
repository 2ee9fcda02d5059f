"""ONNX frontend converters for tensors without a batch axis (a graph input with a static dim 0
> 1 is data: loader.fix_batch), where the ops_attention converters need a size-1 axis for the
sample: MatMul of two activations, LayerNormalization over more than the last axis and
ReduceMean over any axes. The sample is then a leading 1 of every IR tensor (a hidden Value,
see layout); a tensor that has a size-1 axis, or a batch, goes to ops_attention unchanged.
"""

from __future__ import annotations

import numpy as np

from microq import ir
from microq.onnx_import import ops_attention as att
from microq.onnx_import.context import Ctx, Unsupported, axis_of
from microq.onnx_import.layout import Value, identity


def _hidden_row_major(cx: Ctx, idx: int) -> Value:
    """Input `idx` as a hidden Value in row-major logical order (a leading 1 for the sample)."""
    name = cx.node.input[idx]
    logical = cx.shape(name)
    v = cx.b.hide(cx.value(idx, hidden=True), logical, cx.source)
    return cx.b.to_perm(v, logical, identity(len(logical)), cx.source)


def _stays_hidden(cx: Ctx, idx: int, avoid: tuple[int, ...] = ()) -> bool:
    """True when input `idx` is a hidden Value no size-1 axis (outside `avoid`) can make plain."""
    name = cx.node.input[idx] if cx.has_input(idx) else ""
    v = cx.values.get(name)
    if v is None or not v.hidden:
        return False
    logical = cx.shape(name)
    return not any(logical[p] == 1 and p not in avoid for p in v.perm)


def matmul(cx: Ctx) -> None:
    """MatMul of two activations without a size-1 axis ([3, 4] x [4, 5] of a batch-less
    model): an IR MatMul over [1, P, M, K] x [1, P, K, N] views (P: the leading dims)."""
    if cx.is_const(1) or cx.is_const(0) or not (_stays_hidden(cx, 0) or _stays_hidden(cx, 1)):
        att.matmul(cx)
        return
    la, lb = (cx.shape(cx.node.input[i]) for i in (0, 1))
    r = len(la)
    if r < 2 or len(lb) != r or la[:-2] != lb[:-2] or la[-1] != lb[-2]:
        raise Unsupported(f"MatMul of shapes {la} x {lb} (only equal batch dims, rank >= 2)")
    p = int(np.prod(la[:-2]))
    a, b = _hidden_row_major(cx, 0), _hidden_row_major(cx, 1)
    a4 = cx.b.reshape(a.name, (1, p) + la[-2:], f"{cx.out()}__a", cx.source)
    b4 = cx.b.reshape(b.name, (1, p) + lb[-2:], f"{cx.out()}__b", cx.source)
    out = la[:-1] + (lb[-1],)
    attrs = ir.MatMulAttrs(False, float(cx.attrs().get("alpha", 1.0)))
    y = cx.b.add("MatMul", [a4, b4], f"{cx.out()}__mm", (1, p, la[-2], lb[-1]), attrs, cx.name,
                 cx.source)
    cx.set(cx.b.reshape(y, (1,) + out, cx.out(), cx.source), identity(r), hidden=True)
    cx.set_batch(None)


def layer_norm(cx: Ctx) -> None:
    """LayerNormalization from `axis` < rank - 1 of a tensor without a size-1 axis: the
    trailing axes flattened into one, normalized, reshaped back (as ops_attention does with a
    plain tensor)."""
    logical = cx.shape(cx.node.input[0])
    r = len(logical)
    axis = axis_of(cx.attrs().get("axis", -1), r)
    if axis == r - 1 or not _stays_hidden(cx, 0):
        att.layer_norm(cx)
        return
    cx.check_samples("LayerNormalization", range(axis, r))
    if not cx.unused(1) or not cx.unused(2):
        raise Unsupported("LayerNormalization with mean / inv_std_dev outputs")
    width = int(np.prod(logical[axis:]))
    gamma = cx.const(1)
    beta = cx.const(2) if cx.has_input(2) else np.zeros(width, np.float32)
    if gamma is None or beta is None:
        raise Unsupported("LayerNormalization with non-constant scale or bias")
    try:
        gamma, beta = (np.broadcast_to(np.asarray(t, np.float32).reshape(
            t.shape if t.size != width else logical[axis:]), logical[axis:]).reshape(width)
            for t in (gamma, beta))
    except ValueError:
        raise Unsupported(f"scale {list(gamma.shape)} / bias {list(beta.shape)} do not "
                          f"broadcast to the normalized shape {list(logical[axis:])}: the model "
                          "is invalid") from None
    v = _hidden_row_major(cx, 0)
    flat = (1,) + logical[:axis] + (width,)
    x = cx.b.reshape(v.name, flat, f"{cx.out()}__flat", cx.source)
    g = cx.b.const(cx.node.input[1], gamma)
    b = cx.b.const(cx.node.input[2] if cx.has_input(2) else f"{cx.out()}__beta", beta)
    attrs = ir.LayerNormAttrs(float(cx.attrs().get("epsilon", 1e-5)))
    y = cx.b.add("LayerNorm", [x, g, b], f"{cx.out()}__ln", flat, attrs, cx.name, cx.source)
    cx.set(cx.b.reshape(y, (1,) + logical, cx.out(), cx.source), identity(r), hidden=True)
    cx.set_batch(None)


def reduce_mean(cx: Ctx) -> None:
    """ReduceMean over any axes of a tensor without a size-1 axis (or over several axes of
    any tensor, the batch excepted): the reduced axes moved last and averaged by an AvgPool
    over a [1, kept, reduced, 1] view."""
    a = cx.attrs()
    logical = cx.shape(cx.node.input[0])
    rank = len(logical)
    c = cx.const(1)
    if cx.has_input(1) and c is None:
        raise Unsupported("ReduceMean with non-constant axes")
    axes = [int(v) for v in np.asarray(c).reshape(-1)] if c is not None else list(
        a.get("axes", []))
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            cx.values[cx.out()] = cx.value(0, hidden=True)
            return
        axes = list(range(rank))
    axes = sorted({axis_of(ax, rank, "axes") for ax in axes})
    cx.check_samples("ReduceMean", axes)
    spatial = axes == list(range(2, rank)) and rank in (3, 4)
    single = len(axes) == 1 and axes[0] != 0
    if not _stays_hidden(cx, 0, tuple(axes)) and (spatial or single):
        att.reduce_mean(cx)
        return
    kept = [i for i in range(rank) if i not in axes]
    v = cx.b.hide(cx.value(0, hidden=True), logical, cx.source)
    v = cx.b.to_perm(v, logical, tuple(kept) + tuple(axes), cx.source)
    outer = int(np.prod([logical[i] for i in kept]))
    length = int(np.prod([logical[i] for i in axes]))
    x = cx.b.reshape(v.name, (1, outer, length, 1), f"{cx.out()}__4d", cx.source)
    pooled = cx.b.add("AvgPool", [x], f"{cx.out()}__pool", (1, outer, 1, 1),
                      ir.PoolAttrs((1, length), (1, 1)), cx.name, cx.source)
    keep = a.get("keepdims", 1)
    out = tuple(1 if i in axes else d for i, d in enumerate(logical)) if keep else tuple(
        logical[i] for i in kept)
    cx.set(cx.b.reshape(pooled, (1,) + out, cx.out(), cx.source), identity(len(out)),
           hidden=True)
    k = cx.batch_of(0)
    cx.set_batch(None if k is None else (k if keep else kept.index(k)))

