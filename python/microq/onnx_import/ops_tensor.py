"""ONNX frontend converters for elementwise, shape and layout ops (layout-aware through perms)."""

from __future__ import annotations

import numpy as np

from microq import ir
from microq.onnx_import.context import Ctx, Unsupported, axis_of
from microq.onnx_import.layout import (LayoutError, Value, compose, const_to_physical,
                                       identity, inverse, permute)
from microq.onnx_import.loader import unbatched_note

INF = float("inf")


def _unary(cx: Ctx, attrs: ir.ActAttrs) -> None:
    v = cx.value(0, hidden=True)
    y = cx.b.add("Activation", [v.name], cx.out(), cx.b.shape(v.name), attrs, cx.name, cx.source)
    cx.set(y, v.perm, hidden=v.hidden)


def abs_(cx: Ctx) -> None:
    v = cx.value(0, hidden=True)
    y = cx.b.add("Abs", [v.name], cx.out(), cx.b.shape(v.name), None, cx.name, cx.source)
    cx.set(y, v.perm, hidden=v.hidden)


def relu(cx: Ctx) -> None:
    _unary(cx, ir.ActAttrs("relu", lo=0.0, hi=INF))


def clip(cx: Ctx) -> None:
    a = cx.attrs()
    lo, hi = float(a.get("min", -INF)), float(a.get("max", INF))
    for idx in (1, 2):
        if cx.has_input(idx):
            c = cx.const(idx)
            if c is None:
                raise Unsupported("Clip with non-constant min/max")
            if idx == 1:
                lo = float(np.asarray(c).reshape(-1)[0])
            else:
                hi = float(np.asarray(c).reshape(-1)[0])
    _unary(cx, ir.ActAttrs("clip", lo=lo, hi=hi))


def simple_activation(cx: Ctx) -> None:
    a = cx.attrs()
    op = cx.node.op_type
    if op == "LeakyRelu":
        attrs = ir.ActAttrs("leaky_relu", alpha=float(a.get("alpha", 0.01)))
    elif op == "HardSigmoid":
        attrs = ir.ActAttrs("hard_sigmoid", float(a.get("alpha", 0.2)), float(a.get("beta", 0.5)))
    elif op == "Elu":
        attrs = ir.ActAttrs("elu", alpha=float(a.get("alpha", 1.0)))
    elif op == "Gelu":
        approx = a.get("approximate", b"none")
        approx = approx.decode() if isinstance(approx, bytes) else approx
        attrs = ir.ActAttrs("gelu_tanh" if approx == "tanh" else "gelu")
    else:
        kinds = {"Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hard_swish",
                 "Softplus": "softplus", "Mish": "mish"}
        attrs = ir.ActAttrs(kinds[op])
    _unary(cx, attrs)


def _same_layout(cx: Ctx, va, vb, ls):
    """Two same-rank activations in different layouts (an NHWC feature map times a squeeze-excite
    scale [N, C, 1, 1] made by a Reshape of [N, C]): bring the smaller one into the larger one's
    layout (a free Reshape when only size-1 axes move) instead of both back to NCHW (two
    transposes of the whole feature map). Unchanged when that layout cannot hold it."""
    small = 0 if np.prod(ls[0]) < np.prod(ls[1]) else 1
    vs, vl = (va, vb) if small == 0 else (vb, va)
    if vs.hidden or vl.hidden:
        return va, vb
    try:
        vs = cx.b.to_perm(vs, ls[small], vl.perm, cx.source)
    except LayoutError:
        return va, vb
    return (vs, vl) if small == 0 else (vl, vs)


def binary(cx: Ctx) -> None:
    op = cx.node.op_type
    ca, cb = cx.const(0), cx.const(1)
    if op == "Div":
        if ca is not None:
            raise Unsupported("Div of a constant by an activation is not supported")
        if cb is None:
            raise Unsupported("Div between two activations is not supported yet")
        op, cb = "Mul", (1.0 / cb.astype(np.float64)).astype(np.float32)
    ls = [cx.shape(cx.node.input[i]) for i in (0, 1)]
    try:
        out_logical = tuple(np.broadcast_shapes(*ls))
    except ValueError:
        if cx.prep.unbatched:
            why = f"({unbatched_note(cx.prep)}: data, kept as exported)"
        else:
            why = ("with the batch fixed to 1 (a constant sized for the batch the model was "
                   "exported with?)")
        raise Unsupported(f"{cx.node.op_type} of shapes {list(ls[0])} and {list(ls[1])}: they do "
                          f"not broadcast {why}") from None
    hidden = False
    if ca is None and cb is None:
        va, vb = (_plain_if_possible(cx, i) for i in (0, 1))
        if va.hidden or vb.hidden:  # no size-1 axis for the sample: a leading 1 on both
            if not (va.hidden and vb.hidden and va.perm == vb.perm and len(ls[0]) == len(ls[1])):
                va = _hidden_rank(cx, va, ls[0], len(out_logical))
                vb = _hidden_rank(cx, vb, ls[1], len(out_logical))
            hidden = True
        elif va.perm != vb.perm and len(ls[0]) == len(ls[1]):
            va, vb = _same_layout(cx, va, vb, ls)
        if not hidden and not (va.perm == vb.perm and len(ls[0]) == len(ls[1])):
            va = cx.b.to_logical(va, ls[0], cx.source)
            vb = cx.b.to_logical(vb, ls[1], cx.source)
        names, perm = [va.name, vb.name], va.perm
    else:
        act = 1 if ca is not None else 0
        v, c = _plain_if_possible(cx, act), (ca if ca is not None else cb)
        if c.ndim > len(ls[act]):
            if v.hidden:
                v = _hidden_rank(cx, v, ls[act], len(out_logical))
            else:
                v = cx.b.to_logical(v, ls[act], cx.source)
            perm = identity(len(out_logical))
            cphys = const_to_physical(c, len(out_logical), perm)
        else:
            perm = v.perm
            cphys = const_to_physical(c, len(perm), perm)
        hidden = v.hidden
        cname = cx.b.const(cx.node.input[1 - act], cphys)
        names = [v.name, cname] if act == 0 else [cname, v.name]
        if len(perm) != len(out_logical):
            raise Unsupported("broadcast that raises the rank of the activation")
    shape = ((1,) if hidden else ()) + permute(out_logical, perm)
    cx.set(cx.b.add(op, names, cx.out(), shape, ir.BinaryAttrs(), cx.name, cx.source), perm,
           hidden=hidden)


def _plain_if_possible(cx: Ctx, idx: int, avoid: tuple[int, ...] = ()):
    """Input `idx` as a plain Value when a size-1 axis (not in `avoid`) can hold the sample,
    else hidden (a tensor without a batch axis: a static dim 0 > 1, or a merged batch)."""
    v = cx.value(idx, hidden=True)
    return cx.b.unhide(v, cx.shape(cx.node.input[idx]), cx.source, avoid) if v.hidden else v


def _hidden_rank(cx: Ctx, v: Value, logical: tuple[int, ...], rank: int) -> Value:
    """v as a hidden Value in row-major logical order, with leading size-1 axes up to `rank`
    (numpy broadcasting of a lower-rank operand): a free reshape."""
    v = cx.b.to_perm(cx.b.hide(v, logical, cx.source), logical, identity(len(logical)),
                     cx.source)
    if len(logical) == rank:
        return v
    shape = (1,) * (rank - len(logical) + 1) + tuple(logical)
    return Value(cx.b.reshape(v.name, shape, f"{v.name}__r{rank}", cx.source), identity(rank),
                 True)


def concat(cx: Ctx) -> None:
    axis = int(cx.attrs()["axis"])
    rank = len(cx.shape(cx.out()))
    axis = axis_of(axis, rank)
    for idx in range(len(cx.node.input)):
        cx.check_samples("Concat", [axis], idx)
    ins = [i for i in range(len(cx.node.input)) if cx.const(i) is None]
    if any(_plain_if_possible(cx, i, (axis,)).hidden for i in ins):
        _concat_hidden(cx, axis, rank)
        return
    acts = [cx.value(i) for i, n in enumerate(cx.node.input) if cx.const(i) is None]
    perms = {v.perm for v in acts}
    perm = perms.pop() if len(perms) == 1 else identity(rank)
    if perm[0] == axis:  # a size-1 data axis holds the sample: give it to another size-1 axis
        ones = [p for p in perm if p != axis and cx.shape(cx.out())[p] == 1]
        if not ones:  # none: the sample becomes a leading 1
            _concat_hidden(cx, axis, rank)
            return
        perm = (ones[0],) + tuple(p for p in perm if p != ones[0])
    names = []
    for idx, name in enumerate(cx.node.input):
        c = cx.const(idx)
        if c is not None:
            names.append(cx.b.const(name, np.asarray(c, np.float32).transpose(perm)))
        else:
            names.append(cx.b.to_perm(cx.value(idx), cx.shape(name), perm, cx.source).name)
    shape = permute(cx.shape(cx.out()), perm)
    attrs = ir.ConcatAttrs(perm.index(axis))
    cx.set(cx.b.add("Concat", names, cx.out(), shape, attrs, cx.name, cx.source), perm)
    cx.set_batch(next((cx.batch_of(i) for i in range(len(cx.node.input))
                       if cx.batch_of(i) is not None), None))


def _concat_hidden(cx: Ctx, axis: int, rank: int) -> None:
    """Concat with the sample as a leading 1 on every operand (no other size-1 axis holds it)."""
    vals = {i: cx.value(i, hidden=True) for i in range(len(cx.node.input)) if cx.const(i) is None}
    perms = {v.perm for v in vals.values()}
    perm = perms.pop() if len(perms) == 1 else identity(rank)
    names = []
    for idx, name in enumerate(cx.node.input):
        c = cx.const(idx)
        if c is not None:
            arr = np.asarray(c, np.float32).transpose(perm)[None]
            names.append(cx.b.const(name, arr))
        else:
            v = cx.b.hide(vals[idx], cx.shape(name), cx.source)
            names.append(cx.b.to_perm(v, cx.shape(name), perm, cx.source).name)
    shape = (1,) + permute(cx.shape(cx.out()), perm)
    attrs = ir.ConcatAttrs(perm.index(axis) + 1)
    cx.set(cx.b.add("Concat", names, cx.out(), shape, attrs, cx.name, cx.source), perm,
           hidden=True)
    cx.set_batch(next((cx.batch_of(i) for i in range(len(cx.node.input))
                       if cx.batch_of(i) is not None), None))


def _squeeze_axes(cx: Ctx, rank: int) -> list[int] | None:
    """The axes a Squeeze removes / an Unsqueeze inserts (None when not given: all size-1)."""
    if cx.has_input(1):
        c = cx.const(1)
        return None if c is None else [int(a) for a in np.asarray(c).reshape(-1)]
    a = cx.attrs().get("axes")
    return None if a is None else [int(x) for x in a]


def reshape_batch(cx: Ctx, logical: tuple[int, ...], out: tuple[int, ...]
                  ) -> tuple[int | None, int | None]:
    """(own axis, merged-into axis) of the model's batch in a Reshape/Flatten/Squeeze/Unsqueeze
    output; (None, None) when dropped or lost. With batch 1 a Reshape's shapes cannot say on
    which side of a size-1 axis it went: the boundary before it is what is matched."""
    k, m = cx.batch_of(0), cx.merged_of(0)
    op = cx.node.op_type
    if k is not None and op == "Squeeze":
        axes = _squeeze_axes(cx, len(logical))
        axes = ([i for i, d in enumerate(logical) if d == 1] if axes is None
                else [a % len(logical) for a in axes])
        return (None, None) if k in axes else (k - sum(a < k for a in axes), None)
    if k is not None and op == "Unsqueeze":
        axes = _squeeze_axes(cx, len(out))
        if axes is not None:
            axes = sorted(a % len(out) for a in axes)
            kept = [i for i in range(len(out)) if i not in axes]
            return kept[k], None
    if k is not None and op == "Flatten":
        axis = int(cx.attrs().get("axis", 1)) % (len(logical) + 1)
        return (0, None) if k < axis else (None, 1)
    src = k if k is not None else m
    if src is None:
        return None, None
    before = int(np.prod(logical[:src]))
    for j, d in enumerate(out):
        if int(np.prod(out[:j])) == before:
            if d == 1:
                return j, None
            if k is not None or d == logical[m]:
                return None, j
    return None, None


def _axis_groups(a: list[int], b: list[int]) -> list[tuple[list[int], list[int]]] | None:
    """Row-major reshape of dims a to dims b (no 1s) as groups (a positions, b positions) of
    equal products, each as small as possible."""
    groups, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        gi, gj, pa, pb = [i], [j], a[i], b[j]
        while pa != pb:
            if pa < pb:
                i += 1
                if i == len(a):
                    return None
                gi.append(i)
                pa *= a[i]
            else:
                j += 1
                if j == len(b):
                    return None
                gj.append(j)
                pb *= b[j]
        groups.append((gi, gj))
        i, j = i + 1, j + 1
    return groups if i == len(a) and j == len(b) else None


def _unit_axes_only(v, logical, out_logical, batch) -> tuple[int, ...] | None:
    """The output layout of a reshape that keeps the input's memory order: every run of data
    axes it merges or splits is consecutive, in order, in the input's physical layout too
    (an Unsqueeze of a Conv1d's [N, C, L] to [N, C, 1, L]; a patch embedding's NHWC conv output
    flattened [N, C, H, W] -> [N, C, H*W]). The data axes keep their physical order, the sample
    axis first; None when the bytes would move."""
    if v.hidden or v.perm == identity(len(v.perm)):
        return None
    ins = [i for i, d in enumerate(logical) if d != 1]
    outs = [j for j, d in enumerate(out_logical) if d != 1]
    groups = _axis_groups([logical[i] for i in ins], [out_logical[j] for j in outs])
    if groups is None:
        return None
    phys = [p for p in v.perm if logical[p] != 1]  # data axes in memory order
    placed = []
    for gi, gj in groups:
        axes = [ins[k] for k in gi]
        at = phys.index(axes[0])
        if phys[at:at + len(axes)] != axes:
            return None
        placed.append((at, [outs[k] for k in gj]))
    data = [j for _, js in sorted(placed) for j in js]
    ones = [j for j, d in enumerate(out_logical) if d == 1]
    s = batch if batch is not None and out_logical[batch] == 1 else (ones[0] if ones else None)
    if s is None:
        return None
    return (s,) + tuple(j for j in ones if j != s) + tuple(data)


def reshape(cx: Ctx) -> None:
    """Reshape, Flatten, Squeeze, Unsqueeze: a reshape of the logical (row-major) data."""
    logical = cx.shape(cx.node.input[0])
    target = cx.const(1) if cx.node.op_type == "Reshape" else None
    try:
        out_logical = cx.shape(cx.out())
    except Unsupported:
        t = [int(d) for d in np.asarray(target).reshape(-1)] if target is not None else []
        known = int(np.prod([d for d in t if d > 0])) if t else 0
        if -1 in t and known and int(np.prod(logical)) % known:
            raise Unsupported(
                f"Reshape of {list(logical)} to the constant shape {t}: {int(np.prod(logical))}"
                f" elements do not fill it; the shape holds the batch size the model was exported"
                " with, and microq fixes the batch to 1 (export with a dynamic batch)") from None
        raise
    n_in, n_out = int(np.prod(logical)), int(np.prod(out_logical))
    if n_out == 0 or n_in == 0:
        raise Unsupported(f"{cx.node.op_type} of {list(logical)} to {list(out_logical)}: empty "
                          "(0-element) tensors are not supported")
    if n_out != n_in:
        if n_in and n_out % n_in == 0 and n_out > n_in:
            raise Unsupported(
                f"{cx.node.op_type} of {list(logical)} to the constant shape {list(out_logical)}"
                f" ({n_out} elements, {n_out // n_in} x the input's): the shape holds the batch "
                "size the model was exported with; microq fixes the batch to 1 (export with a "
                "dynamic batch, or shape[0] = -1 / 0)")
        raise Unsupported(f"{cx.node.op_type} of {n_in} elements {list(logical)} to shape "
                          f"{list(out_logical)} ({n_out} elements): the model is invalid")
    v = cx.value(0, hidden=True)
    batch, merged = reshape_batch(cx, logical, out_logical)
    cx.set_batch(batch, merged=merged)
    if out_logical == logical:
        cx.values[cx.out()] = v  # nothing to do (tf2onnx emits such reshapes)
        return
    if [d for d in logical if d != 1] == [d for d in out_logical if d != 1]:
        _size1_reshape(cx, v, logical, out_logical, batch)
        return
    kept = _unit_axes_only(v, logical, out_logical, batch)
    if kept is not None:  # the bytes stay in their layout
        shape = permute(out_logical, kept)
        y = cx.b.add("Reshape", [v.name], cx.out(), shape, ir.ReshapeAttrs(shape), cx.name,
                     cx.source)
        cx.set(y, kept)
        return
    v = cx.b.to_row_major(v, logical, cx.source)  # the bytes in logical order, sample first
    s = batch if batch is not None else next(
        (i for i, d in enumerate(out_logical) if d == 1), None)
    if s is None:  # no size-1 axis left for the sample: keep it as a leading 1
        perm, shape, hidden = identity(len(out_logical)), (1,) + tuple(out_logical), True
    else:
        perm = (s,) + tuple(i for i in range(len(out_logical)) if i != s)
        shape, hidden = permute(out_logical, perm), False
    y = cx.b.add("Reshape", [v.name], cx.out(), shape, ir.ReshapeAttrs(shape), cx.name,
                 cx.source)
    cx.set(y, perm, hidden=hidden)


def _size1_reshape(cx: Ctx, v: Value, logical: tuple[int, ...], out_logical: tuple[int, ...],
                   batch: int | None) -> None:
    """A reshape that only inserts or removes size-1 axes (Squeeze, Unsqueeze, [1, T, C] ->
    [T, C]) keeps the layout: the other axes stay in their physical order, whatever it is (no
    transpose back to row-major, as the unbatched Conv1d idiom x.T -> Unsqueeze -> Conv
    needed). The sample sits on the batch axis if it has one, else on any size-1 axis, else it
    is a leading 1 (hidden)."""
    old_nz = [i for i, d in enumerate(logical) if d != 1]
    new_nz = [j for j, d in enumerate(out_logical) if d != 1]
    to_new = dict(zip(old_nz, new_nz))
    nz_phys = [to_new[p] for p in v.perm if logical[p] != 1]
    ones = [j for j, d in enumerate(out_logical) if d == 1]
    s = batch if batch is not None and out_logical[batch] == 1 else (ones[0] if ones else None)
    if s is None:
        perm, hidden = tuple(nz_phys), True
    else:
        perm, hidden = (s,) + tuple(nz_phys) + tuple(j for j in ones if j != s), False
    shape = ((1,) if hidden else ()) + permute(out_logical, perm)
    y = cx.b.add("Reshape", [v.name], cx.out(), shape, ir.ReshapeAttrs(shape), cx.name,
                 cx.source)
    cx.set(y, perm, hidden=hidden)


def transpose(cx: Ctx) -> None:
    """Free: only the perm changes; a Transpose is emitted later if a consumer needs it."""
    v = cx.value(0, hidden=True)
    rank = len(v.perm)
    q = tuple(int(p) for p in cx.attrs().get("perm", tuple(reversed(range(rank)))))
    if sorted(q) != list(range(rank)):
        raise Unsupported(f"perm={list(q)} is not a permutation of the {rank} axes: the model is "
                          "invalid")
    cx.values[cx.out()] = type(v)(v.name, compose(inverse(q), v.perm), v.hidden)
    k, m = cx.batch_of(0), cx.merged_of(0)
    cx.set_batch(None if k is None else q.index(k), merged=None if m is None else q.index(m))


def softmax(cx: Ctx) -> None:
    logical = cx.shape(cx.node.input[0])
    rank = len(logical)
    default = -1 if cx.opset >= 13 else 1
    axis = axis_of(cx.attrs().get("axis", default), rank)
    if cx.opset >= 13:  # before 13 the op flattens from `axis`: at batch 1, over the sample
        cx.check_samples("Softmax", [axis])
    v = cx.value(0, hidden=True)
    if cx.opset < 13 and axis != rank - 1:  # coerced to 2-D [prod(:axis), prod(axis:)]
        v = cx.b.unhide(v, logical, cx.source)
        if v.hidden:
            raise Unsupported("opset < 13 Softmax of a tensor whose batch a Reshape merged")
        v = cx.b.to_logical(v, logical, cx.source)
        flat = (int(np.prod(logical[:axis])), int(np.prod(logical[axis:])))
        x2 = cx.b.reshape(v.name, flat, f"{cx.out()}__2d", cx.source)
        y = cx.b.add("Softmax", [x2], f"{cx.out()}__sm", flat, ir.SoftmaxAttrs(), cx.name,
                     cx.source)
        cx.set(cx.b.reshape(y, logical, cx.out(), cx.source), identity(rank))
        return
    if v.perm[-1] != axis:
        if not v.hidden and v.perm[0] == axis:  # over the size-1 axis holding the sample
            v = cx.b.hide(v, logical, cx.source)
        target = tuple(p for p in v.perm if p != axis) + (axis,)
        v = cx.b.to_perm(v, logical, target, cx.source)
    y = cx.b.add("Softmax", [v.name], cx.out(), cx.b.shape(v.name), ir.SoftmaxAttrs(), cx.name,
                 cx.source)
    cx.set(y, v.perm, hidden=v.hidden)


def pad(cx: Ctx) -> None:
    a = cx.attrs()
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise Unsupported(f"Pad mode '{mode}' (only 'constant')")
    logical = cx.shape(cx.node.input[0])
    rank = len(logical)
    if cx.has_input(1):
        p = cx.const(1)
        if p is None:
            raise Unsupported("Pad with non-constant pads")
        pads = [int(x) for x in p]
    else:
        pads = [int(x) for x in a["pads"]]
    value = 0.0
    if cx.has_input(2):
        c = cx.const(2)
        if c is None:
            raise Unsupported("Pad with a non-constant value")
        value = float(np.asarray(c).reshape(-1)[0]) if np.asarray(c).size else 0.0
    elif "value" in a:
        value = float(a["value"])
    axes = list(range(rank))
    if cx.has_input(3):
        axes = [int(x) % rank for x in cx.const(3)]
    begin, end = [0] * rank, [0] * rank
    n = len(axes)
    for i, ax in enumerate(axes):
        begin[ax], end[ax] = pads[i], pads[n + i]
    if min(begin + end) < 0:
        raise Unsupported("Pad with negative pads (cropping)")
    v = _plain_if_possible(cx, 0)
    if not v.hidden and (begin[v.perm[0]] or end[v.perm[0]]):  # the sample axis grows
        v = cx.b.hide(v, logical, cx.source)
    lead = ((0, 0),) if v.hidden else ()
    phys_pads = lead + tuple((begin[p], end[p]) for p in v.perm)
    out_logical = tuple(logical[i] + begin[i] + end[i] for i in range(rank))
    attrs = ir.PadAttrs(phys_pads, value)
    y = cx.b.add("Pad", [v.name], cx.out(), v.phys(out_logical), attrs, cx.name, cx.source)
    cx.set(y, v.perm, hidden=v.hidden)


def passthrough(cx: Ctx) -> None:
    """Identity, Dropout (inference), Cast float->float: the output is the input."""
    if cx.node.op_type == "Cast":
        to = int(cx.attrs()["to"])
        if to not in (1, 10, 11, 16):  # float, float16, double, bfloat16
            raise Unsupported("Cast of an activation to a non-float type")
    if cx.node.op_type == "Dropout":
        if not cx.unused(1):
            raise Unsupported("Dropout mask output")
        # opset 12+: input 2 is training_mode; True drops (and rescales) activations at
        # random, which is not an identity (opset < 7: attribute is_test=0 means the same)
        if cx.has_input(2):
            mode = cx.const(2)
            if mode is None:
                raise Unsupported("Dropout whose training_mode is not a constant: make it a "
                                  "constant False for inference")
            if np.any(np.asarray(mode).astype(bool)):
                raise Unsupported("Dropout with training_mode=True is random, not an identity: "
                                  "export the model in eval mode (training_mode=False)")
        if "is_test" in cx.attrs() and not cx.attrs()["is_test"]:
            raise Unsupported("Dropout with is_test=0 (training mode) is not an identity: "
                              "export the model in eval mode")
    cx.values[cx.out()] = cx.value(0, hidden=True)
