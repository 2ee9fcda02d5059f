"""ONNX frontend converters for tensors without a batch axis (a graph input with a static dim 0
> 1 is data: loader.fix_batch), where the ops_attention converters need a size-1 axis for the
sample: MatMul of two activations, LayerNormalization over more than the last axis and
ReduceMean over any axes. The sample is then a leading 1 of every IR tensor (a hidden Value,
see layout); a tensor that has a size-1 axis, or a batch, goes to ops_attention unchanged.
Per-image ops (Conv, pooling, ConvTranspose, Instance/GroupNorm, Resize) on a static [N, C, ...]
run once per image (per_image) only where that N is data made inside the graph (a Reshape or
Transpose of a batch-less input): an input whose own static dim 0 reaches such an op at axis 0
is a batch (loader.static_batches) and compiles one sample, without copies.
"""

from __future__ import annotations

import numpy as np

from microq import ir
from microq.onnx_import import ops_attention as att
from microq.onnx_import.context import Ctx, Unsupported, axis_of
from microq.onnx_import.layout import Value, identity
from microq.onnx_import.loader import unbatched_note


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



# Ops that compute one image (or one 1-D / 3-D signal) of an [N, C, ...] input at a time: with
# a static N > 1 that is data (no batch axis: N made by a Reshape/Transpose of a batch-less
# input; an input's own N there is the batch, loader.static_batches) they run once per image,
# slices of axis 0, the results concatenated back. Each copy holds its own weights.
PER_IMAGE = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool",
             "GlobalMaxPool", "InstanceNormalization", "GroupNormalization", "Resize")
MAX_IMAGES = 16


def needs_per_image(cx: Ctx) -> bool:
    """True for a PER_IMAGE node whose input 0 has no batch axis and no size-1 axis, a
    static dim 0 of 2..MAX_IMAGES and rank >= 3, with one output."""
    node = cx.node
    if node.op_type not in PER_IMAGE or not cx.prep.unbatched or not _stays_hidden(cx, 0):
        return False
    if len([o for o in node.output if o]) != 1 or cx.out() not in cx.prep.shapes:
        return False
    logical = cx.shape(node.input[0])
    return len(logical) >= 3 and logical[0] >= 2 and cx.batch_of(0) is None


def per_image(cx: Ctx, convert) -> None:
    """Run converter `convert` on each image x[i:i+1] of input 0 (a batch-of-1 tensor to it),
    then Concat the results along axis 0 into the node's output."""
    from onnx import helper

    from microq.onnx_import import ops_tensor as tn

    node, name = cx.node, cx.name
    x, out = node.input[0], node.output[0]
    logical, out_logical = cx.shape(x), cx.prep.shapes[out]
    if logical[0] > MAX_IMAGES:
        raise Unsupported(f"{node.op_type} of '{x}' {list(logical)}: {unbatched_note(cx.prep)}, "
                          f"data (a static dim 0 > 1 is not a batch), so it runs once per "
                          f"image, at most {MAX_IMAGES} times (each copy holds its own weights)"
                          "; export the model with a batch of 1 or a dynamic batch")
    if out_logical[0] != logical[0]:
        raise Unsupported(f"{node.op_type} output {list(out_logical)} does not keep the "
                          f"{logical[0]} images of axis 0")
    import warnings

    warnings.warn(f"{cx.prep.path}: {node.op_type} node '{name}' runs {logical[0]} times, once "
                  f"per image of axis 0 ({unbatched_note(cx.prep)}: data, not a batch), each "
                  "with its own copy of the weights; if that dim was meant as a batch, export "
                  "with a batch of 1 or a dynamic batch")
    v = cx.b.hide(cx.value(0, hidden=True), logical, cx.source)
    phys = v.phys_axis(0)
    pshape = cx.b.shape(v.name)
    parts = []
    try:
        for i in range(logical[0]):
            xi, yi = f"{x}__img{i}", f"{out}__img{i}"
            begin = tuple(i if a == phys else 0 for a in range(len(pshape)))
            end = tuple(i + 1 if a == phys else d for a, d in enumerate(pshape))
            one = (1,) + tuple(logical[1:])
            s = cx.b.add("Slice", [v.name], xi, v.phys(one),
                         ir.SliceAttrs(begin, end, (1,) * len(pshape)), f"{name}_img{i}",
                         cx.source)
            cx.values[xi] = cx.b.rehome(Value(s, v.perm, True), one, 0, cx.source)
            cx.prep.shapes[xi], cx.prep.shapes[yi] = one, (1,) + tuple(out_logical[1:])
            cx.batch[xi] = 0
            cx.node = helper.make_node(node.op_type, [xi] + list(node.input[1:]), [yi],
                                       name=node.name)
            cx.node.attribute.extend(node.attribute)
            convert(cx)
            cx.batch[yi] = None
            parts.append(yi)
        cx.node = helper.make_node("Concat", parts, [out], axis=0, name=node.name)
        tn.concat(cx)
    finally:
        cx.node = node
    cx.set_batch(None)
