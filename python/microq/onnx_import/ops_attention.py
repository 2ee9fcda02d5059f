"""ONNX frontend converters for transformer blocks: MatMul of two activations, LayerNormalization,
Split/Slice/Gather (heads), ReduceMean over tokens. Token tensors [N, T, C] keep identity layout.
"""

from __future__ import annotations

import numpy as np

from microq import ir
from microq.onnx_import import ops_spatial as sp
from microq.onnx_import.context import Ctx, Unsupported, axis_of
from microq.onnx_import.layout import Value, identity, permute


def matmul(cx: Ctx) -> None:
    """MatMul: by a constant it is a FullyConnected (ops_spatial); between two activations
    (Q.K^T, A.V) it is an IR MatMul over equal batch dims."""
    if cx.is_const(1):
        sp.matmul(cx)
        return
    if cx.is_const(0):
        raise Unsupported("MatMul with a constant first operand is not supported yet")
    la, lb = (cx.shape(cx.node.input[i]) for i in (0, 1))
    r = len(la)
    if r < 2 or len(lb) != r or la[:-2] != lb[:-2] or la[-1] != lb[-2]:
        raise Unsupported(f"MatMul of shapes {la} x {lb} (only equal batch dims, rank >= 2)")
    a = cx.b.to_logical(cx.value(0), la, cx.source)
    vb = cx.value(1)
    transpose_b = vb.perm != identity(r)
    if transpose_b:  # b as [..., N, K]: rows of b are contiguous like rows of a
        vb = cx.b.to_perm(vb, lb, identity(r - 2) + (r - 1, r - 2), cx.source)
    # later consumers reuse the moved copies instead of transposing again
    cx.values[cx.node.input[0]], cx.values[cx.node.input[1]] = a, vb
    out = la[:-1] + (lb[-1],)
    attrs = ir.MatMulAttrs(transpose_b, float(cx.attrs().get("alpha", 1.0)))
    y = cx.b.add("MatMul", [a.name, vb.name], cx.out(), out, attrs, cx.name, cx.source)
    cx.set(y, identity(r))


def mask_to_logical(keep: np.ndarray, logical: tuple[int, ...], what: str) -> np.ndarray:
    """A constant keep mask broadcast to the scores' logical shape at batch 1. A mask axis
    longer than a size-1 axis of the scores (the batch it was exported with) is fine when every
    sample's slice is the same."""
    keep = np.asarray(keep, bool)
    if keep.ndim > len(logical):
        lead = keep.shape[: keep.ndim - len(logical)]
        if any(d != 1 for d in lead):
            raise Unsupported(f"{what} of shape {list(keep.shape)} has more axes than the "
                              f"scores {list(logical)}: the model is invalid")
        keep = keep.reshape(keep.shape[keep.ndim - len(logical):])
    keep = keep.reshape((1,) * (len(logical) - keep.ndim) + keep.shape)
    for ax, (k, n) in enumerate(zip(keep.shape, logical)):
        if k != n and k != 1 and n == 1:
            first = np.take(keep, [0], axis=ax)
            if not (keep == first).all():
                raise Unsupported(f"{what} {list(keep.shape)} differs between the samples of "
                                  f"axis {ax}; microq compiles one sample at a time")
            keep = first
    try:
        return np.broadcast_to(keep, logical)
    except ValueError:
        raise Unsupported(f"{what} of shape {list(keep.shape)} does not broadcast to the "
                          f"scores {list(logical)}: the model is invalid") from None


def masked_softmax(cx: Ctx) -> None:
    """MaskedSoftmax(scores, keep) (patterns.fuse_attention_masks): softmax over the last axis
    of the kept keys; keep is stored in the scores' physical layout."""
    logical = cx.shape(cx.node.input[0])
    rank = len(logical)
    axis = rank - 1
    cx.check_samples("Softmax", [axis])
    keep = mask_to_logical(cx.const(1), logical, f"the attention mask '{cx.node.input[1]}'")
    v = cx.value(0, hidden=True)
    if v.perm[-1] != axis:
        if not v.hidden and v.perm[0] == axis:
            v = cx.b.hide(v, logical, cx.source)
        v = cx.b.to_perm(v, logical, tuple(p for p in v.perm if p != axis) + (axis,), cx.source)
    phys = np.transpose(keep, v.perm)
    if v.hidden:
        phys = phys[None]
    shape = cx.b.shape(v.name)
    if phys.shape != tuple(shape):  # pragma: no cover - the layout helpers keep them equal
        raise Unsupported(f"attention mask {list(phys.shape)} does not match the scores' layout "
                          f"{list(shape)}")
    k = cx.b.const(cx.node.input[1], phys.astype(np.float32))
    y = cx.b.add("MaskedSoftmax", [v.name, k], cx.out(), shape, ir.SoftmaxAttrs(), cx.name,
                 cx.source)
    cx.set(y, v.perm, hidden=v.hidden)


def attention(cx: Ctx) -> None:
    """ONNX Attention that patterns.expand_attention could not lower: say why."""
    from microq.onnx_import.patterns import attention_refusal

    used = {i for n in cx.prep.nodes for i in n.input} | {
        o.name for o in cx.prep.model.graph.output}
    why = attention_refusal(cx.node, cx.prep.consts, cx.prep.shapes, used)
    raise Unsupported(why or "Attention could not be lowered")


def layer_norm(cx: Ctx) -> None:
    """LayerNormalization (opset 17) over the trailing axes from `axis`, gamma/beta constants."""
    a = cx.attrs()
    logical = cx.shape(cx.node.input[0])
    r = len(logical)
    axis = axis_of(a.get("axis", -1), r)
    cx.check_samples("LayerNormalization", range(axis, r))
    if not cx.unused(1) or not cx.unused(2):
        raise Unsupported("LayerNormalization with mean / inv_std_dev outputs")
    width = int(np.prod(logical[axis:]))
    gamma = cx.const(1)
    beta = cx.const(2) if cx.has_input(2) else np.zeros(width, np.float32)
    if gamma is None or beta is None:
        raise Unsupported("LayerNormalization with non-constant scale or bias")
    if gamma.size == width and gamma.shape != logical[axis:]:  # e.g. [1, C] for C
        gamma = gamma.reshape(logical[axis:])
    if beta.size == width and beta.shape != logical[axis:]:
        beta = beta.reshape(logical[axis:])
    try:
        gamma, beta = (np.broadcast_to(p, logical[axis:]).reshape(width) for p in (gamma, beta))
    except ValueError:
        raise Unsupported(f"scale {list(gamma.shape)} / bias {list(beta.shape)} do not "
                          f"broadcast to the normalized shape {list(logical[axis:])}: the model "
                          "is invalid") from None
    v = cx.value(0, hidden=axis == r - 1)  # rows are independent: a hidden sample axis is fine
    if axis != r - 1:  # normalize the flattened trailing axes
        v = cx.b.to_logical(v, logical, cx.source)
        flat = logical[:axis] + (width,)
        v = Value(cx.b.reshape(v.name, flat, f"{cx.out()}__flat", cx.source), identity(axis + 1))
        axis = len(flat) - 1
        logical_v = flat
    else:
        logical_v = logical
    if v.perm[-1] != axis:
        v = cx.b.to_perm(v, logical_v, tuple(p for p in v.perm if p != axis) + (axis,), cx.source)
        if logical_v == logical:  # later consumers (the residual Add) reuse the moved copy
            cx.values[cx.node.input[0]] = v
    g = cx.b.const(cx.node.input[1], gamma)
    b = cx.b.const(cx.node.input[2] if cx.has_input(2) else f"{cx.out()}__beta", beta)
    attrs = ir.LayerNormAttrs(float(a.get("epsilon", 1e-5)))
    shape = cx.b.shape(v.name)
    if logical_v == logical:
        y = cx.b.add("LayerNorm", [v.name, g, b], cx.out(), shape, attrs, cx.name, cx.source)
        cx.set(y, v.perm, hidden=v.hidden)
        return
    y = cx.b.add("LayerNorm", [v.name, g, b], f"{cx.out()}__flat", shape, attrs, cx.name,
                 cx.source)
    cx.set(cx.b.reshape(y, logical, cx.out(), cx.source), identity(r))


def _slice_node(cx: Ctx, v: Value, logical: tuple[int, ...], axis: int, rng: range,
                idx: int = 0) -> tuple[str, tuple[int, ...]]:
    """Slice logical axis `axis` of v to `rng`; returns the IR tensor and its logical shape.

    Any axis: the batch (and the sample axis) have size 1, so a non-empty range of it is all
    of it."""
    if rng.step <= 0:
        raise Unsupported("Slice with a negative step")
    if len(rng) == 0:
        raise Unsupported(f"Slice selects no element of axis {axis} (size {logical[axis]}): "
                          "an empty tensor")
    out_logical = logical[:axis] + (len(rng),) + logical[axis + 1 :]
    if len(rng) == logical[axis]:
        return v.name, out_logical
    phys = v.phys_axis(axis)
    pshape = cx.b.shape(v.name)
    rank = len(pshape)
    begin = tuple(rng.start if i == phys else 0 for i in range(rank))
    end = tuple(rng.start + (len(rng) - 1) * rng.step + 1 if i == phys else pshape[i]
                for i in range(rank))
    step = tuple(rng.step if i == phys else 1 for i in range(rank))
    out = cx.node.output[idx]
    y = cx.b.add("Slice", [v.name], out, v.phys(out_logical),
                 ir.SliceAttrs(begin, end, step), f"{cx.name}_{idx}" if idx else cx.name,
                 cx.source)
    return y, out_logical


def slice_(cx: Ctx) -> None:
    logical = cx.shape(cx.node.input[0])
    rank = len(logical)
    if cx.opset < 10:
        a = cx.attrs()
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        parts = [cx.const(i) for i in range(1, 5)]
        if any(p is None for p, i in zip(parts, range(1, 5)) if cx.has_input(i)):
            raise Unsupported("Slice with non-constant starts, ends, axes or steps")
        starts, ends = (list(parts[i].astype(np.int64)) for i in (0, 1))
        axes = list(parts[2]) if parts[2] is not None else list(range(len(starts)))
        steps = list(parts[3]) if parts[3] is not None else [1] * len(starts)
    v = cx.value(0, hidden=True)
    name, shape = v.name, logical
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = axis_of(ax, rank, "axes")
        if int(st) == 0:
            raise Unsupported("Slice with step 0: the model is invalid")
        full = cx.prep.exported_batch or 2**31 - 1  # ends at the exported batch, or "to the end"
        if ax == cx.batch_of(0) and not (int(s) == 0 and int(e) >= full and int(st) == 1):
            raise Unsupported(f"Slice along the batch axis (axis {ax}) selects samples; "
                              "microq compiles one sample at a time")
        rng = range(*slice(int(s), int(e), int(st)).indices(shape[ax]))
        name, shape = _slice_node(cx, Value(name, v.perm, v.hidden), shape, ax, rng)
    cx.set(name, v.perm, hidden=v.hidden)
    cx.set_batch(cx.batch_of(0))


def split(cx: Ctx) -> None:
    a = cx.attrs()
    logical = cx.shape(cx.node.input[0])
    axis = axis_of(a.get("axis", 0), len(logical))
    n = len(cx.node.output)
    if cx.has_input(1):
        sizes = cx.const(1)
        if sizes is None:
            raise Unsupported("Split with non-constant sizes")
        sizes = [int(s) for s in sizes]
    elif "split" in a:
        sizes = [int(s) for s in a["split"]]
    else:  # equal parts, the last one smaller (opset 18 num_outputs)
        part = -(-logical[axis] // n)
        sizes = [min(part, logical[axis] - i * part) for i in range(n)]
    if n > 1:
        cx.check_samples("Split", [axis])
    if len(sizes) != n or any(s < 1 for s in sizes) or sum(sizes) != logical[axis]:
        raise Unsupported(f"split sizes {sizes} for {n} outputs do not partition axis {axis} "
                          f"of size {logical[axis]}: the model is invalid")
    v = cx.value(0, hidden=True)
    start = 0
    for idx, size in enumerate(sizes):
        if cx.node.output[idx]:
            name, _ = _slice_node(cx, v, logical, axis, range(start, start + size), idx)
            cx.set(name, v.perm, idx, hidden=v.hidden)
            cx.set_batch(cx.batch_of(0), idx)
        start += size


def gather(cx: Ctx) -> None:
    """Gather of an activation by constant indices: a Slice (plus dropping a scalar's axis)."""
    idx = cx.const(1)
    if idx is None or cx.is_const(0):
        raise Unsupported("Gather with non-constant indices or a constant table")
    logical = cx.shape(cx.node.input[0])
    rank = len(logical)
    axis = axis_of(cx.attrs().get("axis", 0), rank)
    if axis == cx.batch_of(0) and (idx.ndim >= 1 or int(np.asarray(idx)) not in (0, -1)):
        raise Unsupported(f"Gather along the batch axis (axis {axis}) selects samples; "
                          "microq compiles one sample at a time")
    raw = [int(i) for i in np.asarray(idx).reshape(-1)]
    if any(not -logical[axis] <= i < logical[axis] for i in raw):
        raise Unsupported(f"Gather indices {raw[:8]} out of range for axis {axis} of size "
                          f"{logical[axis]}: the model is invalid")
    flat = [i % logical[axis] for i in raw]
    if idx.ndim > 1 or not flat or flat != list(range(flat[0], flat[0] + len(flat))):
        raise Unsupported("Gather of non-consecutive indices")
    k = cx.batch_of(0)
    v = cx.value(0, hidden=True)
    name, shape = _slice_node(cx, v, logical, axis, range(flat[0], flat[0] + len(flat)))
    if idx.ndim == 1:
        cx.set(name, v.perm, hidden=v.hidden)
        cx.set_batch(k)
        return
    # a scalar index drops the (now size-1) axis: free in memory
    cx.set_batch(None if k is None or k == axis else k - (k > axis))
    perm = tuple(p - (p > axis) for p in v.perm if p != axis)
    if not v.hidden and v.perm[0] == axis:  # it held the sample: keep that as a leading 1
        cx.set(name, perm, hidden=True)
        return
    phys = v.phys_axis(axis)
    pshape = cx.b.shape(name)
    out = cx.b.reshape(name, pshape[:phys] + pshape[phys + 1 :], cx.out(), cx.source)
    cx.set(out, perm, hidden=v.hidden)


def reduce_mean(cx: Ctx) -> None:
    """ReduceMean over spatial axes (ops_spatial) or over one other axis, e.g. the tokens of
    [N, T, C]: an AvgPool over a [1, outer, L, inner] view with a (1, L) window."""
    a = cx.attrs()
    logical = cx.shape(cx.node.input[0])
    rank = len(logical)
    axes = list(a.get("axes", [])) if cx.const(1) is None else [int(v) for v in cx.const(1)]
    if not axes and not a.get("noop_with_empty_axes", 0):
        axes = list(range(rank))  # no axes: all of them
    axes = sorted(axis_of(ax, rank, "axes") for ax in axes)
    if axes == list(range(2, rank)) and rank in (3, 4) and cx.node.input[0] in cx.values:
        v = cx.values[cx.node.input[0]]
        if rank == 4 or v.perm != identity(rank):
            sp.reduce_mean(cx)
            return
    cx.check_samples("ReduceMean", axes)
    if len(axes) != 1 or axes[0] == 0:
        raise Unsupported(f"ReduceMean over axes {axes}")
    ax = axes[0]
    outer, length = int(np.prod(logical[1:ax])), logical[ax]
    inner = int(np.prod(logical[ax + 1 :]))
    v = cx.b.to_logical(cx.value(0), logical, cx.source)
    x = cx.b.reshape(v.name, (1, outer, length, inner), f"{cx.out()}__4d", cx.source)
    pooled = cx.b.add("AvgPool", [x], f"{cx.out()}__pool", (1, outer, 1, inner),
                      ir.PoolAttrs((1, length), (1, 1)), cx.name, cx.source)
    keep = a.get("keepdims", 1)
    out = logical[:ax] + ((1,) if keep else ()) + logical[ax + 1 :]
    cx.set(cx.b.reshape(pooled, out, cx.out(), cx.source), identity(len(out)))
