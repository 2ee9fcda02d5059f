"""ONNX frontend converters for weighted and windowed ops: Conv, pools, Gemm/MatMul, BatchNorm."""

from __future__ import annotations

import numpy as np

from microq import ir
from microq.onnx_import.context import Ctx, Unsupported
from microq.onnx_import.layout import NHWC, NLC, const_to_physical, permute


MAX_WINDOW = 2**16  # a kernel, stride, dilation or pad beyond this is a corrupt attribute


def _ints(name: str, vals, n: int, lo: int, hi: int = MAX_WINDOW) -> list[int]:
    """An INTS window attribute: `n` integers in [lo, hi], else the node is invalid."""
    vals = [int(v) for v in vals]
    if len(vals) != n or any(not lo <= v <= hi for v in vals):
        raise Unsupported(f"{name}={vals}: expected {n} integers in [{lo}, {hi}]: the model is "
                          "invalid")
    return vals


def _window_attrs(a: dict, nsp: int, k: list[int] | None = None) -> tuple[list[int], ...]:
    """Validated (kernel, strides, dilations) of a Conv or pool with `nsp` spatial dims; also
    checks pads and auto_pad. `k` is the Conv weight's kernel (kernel_shape must agree)."""
    if k is None:
        k = _ints("kernel_shape", a.get("kernel_shape", []), nsp, 1)
    elif "kernel_shape" in a and [int(v) for v in a["kernel_shape"]] != list(k):
        raise Unsupported(f"kernel_shape={list(a['kernel_shape'])} does not match the weight's "
                          f"kernel {list(k)}: the model is invalid")
    s = _ints("strides", a.get("strides", [1] * nsp), nsp, 1)
    d = _ints("dilations", a.get("dilations", [1] * nsp), nsp, 1)
    if "pads" in a:
        _ints("pads", a["pads"], 2 * nsp, 0)
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode(errors="replace") if isinstance(auto, bytes) else str(auto)
    if auto not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise Unsupported(f"auto_pad='{auto}': expected NOTSET, SAME_UPPER, SAME_LOWER or "
                          "VALID: the model is invalid")
    return k, s, d


def _spatial_pads(
    a: dict, in_sp: list[int], k: list[int], s: list[int], d: list[int]
) -> tuple[list[int], list[int]]:
    """ONNX pads/auto_pad -> (begin, end) per spatial dim."""
    n = len(in_sp)
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(n):
            out = -(-in_sp[i] // s[i])
            total = max((out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - in_sp[i], 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return begin, end
    if auto == "VALID":
        return [0] * n, [0] * n
    pads = list(a.get("pads", [0] * (2 * n)))
    return pads[:n], pads[n:]


def _to_2d(cx: Ctx, idx: int) -> tuple[str, tuple[int, ...], bool]:
    """Input as a physical NHWC tensor: 4-D via NHWC, 3-D (Conv1D) via [N,L,C] -> [N,1,L,C]."""
    logical = cx.shape(cx.node.input[idx])
    v = cx.value(idx)
    if len(logical) == 4:
        v = cx.b.to_perm(v, logical, NHWC, cx.source)
        return v.name, cx.b.shape(v.name), False
    if len(logical) == 3:
        v = cx.b.to_perm(v, logical, NLC, cx.source)
        n, length, c = cx.b.shape(v.name)
        name = cx.b.reshape(v.name, (n, 1, length, c), f"{v.name}__2d", cx.source)
        return name, (n, 1, length, c), True
    raise Unsupported(f"{len(logical) - 2}-D spatial input (only 1-D and 2-D)")


def _finish_2d(cx: Ctx, op: str, inputs: list[str], out_shape: tuple, attrs: object, is_1d: bool):
    n, oh, ow, c = out_shape
    if not is_1d:
        cx.set(cx.b.add(op, inputs, cx.out(), out_shape, attrs, cx.name, cx.source), NHWC)
        return
    y = cx.b.add(op, inputs, f"{cx.out()}__2d", out_shape, attrs, cx.name, cx.source)
    cx.set(cx.b.reshape(y, (n, ow, c), cx.out(), cx.source), NLC)


def _out_size(size: int, pb: int, pe: int, k: int, s: int, d: int, ceil: bool) -> int:
    span = size + pb + pe - d * (k - 1) - 1
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= size + pb:  # the last window must start inside the input (onnxruntime)
        out -= 1
    return out


def _check_windows(cx: Ctx, in_sp: list[int], outs: list[int], k: list[int], pb: list[int],
                   pe: list[int]) -> None:
    """An invalid model whose window does not fit the padded input gets a reason, not a crash."""
    if min(outs) >= 1 and min(pb + pe) >= 0:
        return
    padded = "x".join(str(in_sp[i] + pb[i] + pe[i]) for i in range(len(in_sp)))
    raise Unsupported(f"kernel {'x'.join(map(str, k))} does not fit the padded input {padded} "
                      f"(output size {'x'.join(map(str, outs))}): the model is invalid")


def conv(cx: Ctx) -> None:
    a = cx.attrs()
    w = cx.const(1)
    if w is None:
        raise Unsupported("Conv with a non-constant weight is not supported")
    nsp = w.ndim - 2
    if nsp not in (1, 2):
        raise Unsupported(f"Conv{nsp}D (only Conv1D and Conv2D)")
    b = cx.const(2)
    if cx.has_input(2) and b is None:
        raise Unsupported("Conv with a non-constant bias is not supported")
    x, xs, is_1d = _to_2d(cx, 0)
    k, s, d = _window_attrs(a, nsp, [int(v) for v in w.shape[2:]])
    in_sp = [xs[2]] if is_1d else [xs[1], xs[2]]
    pb, pe = _spatial_pads(a, in_sp, k, s, d)
    if is_1d:  # [N,1,L,C]: the H axis is a dummy of size 1
        k, s, d, pb, pe, in_sp = [1] + k, [1] + s, [1] + d, [0] + pb, [0] + pe, [1] + in_sp
        w = w[:, :, None, :]
    groups = int(a.get("group", 1))
    cout = w.shape[0]
    oh, ow = (_out_size(in_sp[i], pb[i], pe[i], k[i], s[i], d[i], False) for i in range(2))
    span = [(k[i] - 1) * d[i] + 1 for i in range(2)]
    _check_windows(cx, in_sp, [oh, ow], span, pb, pe)
    if groups < 1 or xs[3] != w.shape[1] * groups or cout % groups:
        raise Unsupported(f"weight {list(w.shape)} with group={groups} does not match "
                          f"{xs[3]} input channels: the model is invalid")
    attrs = ir.ConvAttrs(tuple(s), tuple(d), (pb[0], pb[1], pe[0], pe[1]), groups)
    wname = cx.b.const(cx.node.input[1], np.transpose(w, (0, 2, 3, 1)))
    bias = np.zeros(cout, np.float32) if b is None else b.reshape(cout)
    bname = cx.b.const(cx.node.input[2] if b is not None else f"{cx.out()}__bias", bias)
    _finish_2d(cx, "Conv2D", [x, wname, bname], (xs[0], oh, ow, cout), attrs, is_1d)


def pool(cx: Ctx) -> None:
    a = cx.attrs()
    op = "MaxPool" if cx.node.op_type == "MaxPool" else "AvgPool"
    dil = [int(dd) for dd in a.get("dilations", [])]
    if any(dd != 1 for dd in dil) and all(dd >= 1 for dd in dil):  # < 1: invalid, said below
        # the int8 pooling kernels read contiguous windows; ignoring the attribute would
        # change both the output shape and its values
        raise Unsupported(f"{cx.node.op_type} with dilations {dil}: dilated pooling windows "
                          "are not supported (only dilations of 1)")
    if op == "MaxPool":
        if a.get("storage_order", 0) != 0:
            raise Unsupported("MaxPool storage_order=1")
        if not cx.unused(1):
            raise Unsupported("MaxPool Indices output")
    nsp = len(cx.shape(cx.node.input[0])) - 2
    k, s, _ = _window_attrs(a, nsp)
    x, xs, is_1d = _to_2d(cx, 0)
    in_sp = [xs[2]] if is_1d else [xs[1], xs[2]]
    pb, pe = _spatial_pads(a, in_sp, k, s, [1] * nsp)
    # onnxruntime: "Pad should be smaller than kernel" (a window of padding only has no value)
    if any(pb[i] >= k[i] or pe[i] >= k[i] for i in range(nsp)):
        raise Unsupported(f"pads {pb + pe} not smaller than the kernel {k}: the model is invalid")
    if is_1d:
        k, s, pb, pe, in_sp = [1] + k, [1] + s, [0] + pb, [0] + pe, [1] + in_sp
    ceil = bool(a.get("ceil_mode", 0))
    outs = [_out_size(in_sp[i], pb[i], pe[i], k[i], s[i], 1, ceil) for i in range(2)]
    _check_windows(cx, in_sp, outs, k, pb, pe)
    # ceil_mode: the last window may reach past the declared padding; pad that part implicitly.
    extra = [max((outs[i] - 1) * s[i] + k[i] - (in_sp[i] + pb[i] + pe[i]), 0) for i in range(2)]
    include = bool(a.get("count_include_pad", 0)) and op == "AvgPool" and any(pb + pe)
    if include and any(extra):
        # onnxruntime counts the declared pads but not the ceil extension: make the declared
        # pads real zeros and let the extension be uncounted padding.
        pads = ((0, 0), (pb[0], pe[0]), (pb[1], pe[1]), (0, 0))
        shape = (xs[0], xs[1] + pb[0] + pe[0], xs[2] + pb[1] + pe[1], xs[3])
        x = cx.b.add("Pad", [x], f"{cx.out()}__pad", shape, ir.PadAttrs(pads), source=cx.source)
        pb, pe, include = [0, 0], [0, 0], False
    pads = (pb[0], pb[1], pe[0] + extra[0], pe[1] + extra[1])
    attrs = ir.PoolAttrs(tuple(k), tuple(s), pads, include)
    _finish_2d(cx, op, [x], (xs[0], outs[0], outs[1], xs[3]), attrs, is_1d)


def global_pool(cx: Ctx) -> None:
    op = "MaxPool" if cx.node.op_type == "GlobalMaxPool" else "AvgPool"
    x, xs, is_1d = _to_2d(cx, 0)
    attrs = ir.PoolAttrs((xs[1], xs[2]), (1, 1))
    _finish_2d(cx, op, [x], (xs[0], 1, 1, xs[3]), attrs, is_1d)


def reduce_mean(cx: Ctx) -> None:
    a = cx.attrs()
    logical = cx.shape(cx.node.input[0])
    axes = list(a.get("axes", [])) if cx.const(1) is None else [int(v) for v in cx.const(1)]
    axes = sorted(ax % len(logical) for ax in axes)
    if axes != list(range(2, len(logical))) or len(logical) not in (3, 4):
        raise Unsupported(f"ReduceMean over axes {axes} (only the spatial axes of NCHW / NCL)")
    x, xs, is_1d = _to_2d(cx, 0)
    attrs = ir.PoolAttrs((xs[1], xs[2]), (1, 1))
    out_shape = (xs[0], 1, 1, xs[3])
    if a.get("keepdims", 1):
        _finish_2d(cx, "AvgPool", [x], out_shape, attrs, is_1d)
        return
    y = cx.b.add("AvgPool", [x], f"{cx.out()}__pool", out_shape, attrs, cx.name, cx.source)
    cx.set(cx.b.reshape(y, (xs[0], xs[3]), cx.out(), cx.source), (0, 1))


def _fully_connected(cx: Ctx, w: np.ndarray, bias: np.ndarray, trans_a: bool = False) -> None:
    """x [..., K] (last logical axis kept last physically), w [Cout, K] -> y [..., Cout].
    trans_a (Gemm transA=1, 2-D): x is [K, M] and its transpose [M, K] is used (a free change
    of layout)."""
    logical = cx.shape(cx.node.input[0])
    v = cx.value(0, hidden=True)  # rows are independent: a hidden sample axis is fine
    if trans_a:
        cx.check_samples("Gemm with transA=1 (a contraction over axis 0)", [0])
        v = type(v)(v.name, tuple(1 - p for p in v.perm), v.hidden)  # logical axes swapped
        logical = logical[::-1]
    if v.perm[-1] != len(logical) - 1:
        v = cx.b.to_row_major(v, logical, cx.source)
    xs = cx.b.shape(v.name)
    if xs[-1] != w.shape[1]:
        raise Unsupported(f"weight K {w.shape[1]} does not match input {xs}")
    wname = cx.b.const(cx.node.input[1], w)
    bname = cx.b.const(cx.node.input[2] if cx.has_input(2) else f"{cx.out()}__bias", bias)
    out_shape = xs[:-1] + (w.shape[0],)
    y = cx.b.add("FullyConnected", [v.name, wname, bname], cx.out(), out_shape, ir.FCAttrs(),
                 cx.name, cx.source)
    cx.set(y, v.perm, hidden=v.hidden)


def matmul(cx: Ctx) -> None:
    w = cx.const(1)
    if w is None:
        if cx.is_const(0):
            raise Unsupported("MatMul with a constant first operand is not supported yet")
        raise Unsupported("MatMul between two activations is not supported yet")
    if w.ndim != 2:
        raise Unsupported(f"MatMul with a {w.ndim}-D weight (only 2-D)")
    _fully_connected(cx, np.ascontiguousarray(w.T), np.zeros(w.shape[1], np.float32))


def gemm(cx: Ctx) -> None:
    a = cx.attrs()
    b = cx.const(1)
    if b is None:
        raise Unsupported("Gemm with a non-constant B is not supported yet")
    if len(cx.shape(cx.node.input[0])) != 2:
        raise Unsupported("Gemm on a non 2-D input")
    w = b if a.get("transB", 0) else b.T
    w = np.float32(a.get("alpha", 1.0)) * w
    cout = w.shape[0]
    c = cx.const(2)
    if cx.has_input(2) and c is None:
        raise Unsupported("Gemm with a non-constant C is not supported")
    bias, matrix = np.zeros(cout, np.float32), None
    rows = cx.shape(cx.node.input[0])[1 if a.get("transA", 0) else 0]
    if c is not None:
        beta = np.float32(a.get("beta", 1.0))
        try:
            full = np.broadcast_to(np.asarray(c, np.float32), (rows, cout))
        except ValueError:
            raise Unsupported(f"Gemm bias C of shape {list(c.shape)} does not broadcast to the "
                              f"output [{rows}, {cout}]: the model is invalid") from None
        if c.ndim < 2 or c.shape[0] == 1:  # one bias per output column
            bias = beta * full[0]
        else:  # a bias per output element ([M, N]): an Add of a constant after the FC
            matrix = beta * full
    _fully_connected(cx, np.ascontiguousarray(w), bias.astype(np.float32),
                     bool(a.get("transA", 0)))
    if matrix is not None:
        v = cx.values[cx.out()]
        cname = cx.b.const(cx.node.input[2], const_to_physical(matrix, 2, v.perm))
        y = cx.b.add("Add", [v.name, cname], f"{cx.out()}__c", cx.b.shape(v.name),
                     ir.BinaryAttrs(), f"{cx.name}__c", cx.source)
        cx.set(y, v.perm, hidden=v.hidden)


def batch_norm(cx: Ctx) -> None:
    a = cx.attrs()
    if a.get("training_mode", 0) or any(not cx.unused(i) for i in (1, 2)):
        raise Unsupported("BatchNormalization in training mode")
    params = [cx.const(i) for i in range(1, 5)]
    if any(p is None for p in params):
        raise Unsupported("BatchNormalization with non-constant parameters")
    gamma, beta, mean, var = (p.astype(np.float64) for p in params)
    eps = float(a.get("epsilon", 1e-5))
    if not np.isfinite(eps) or eps < 0 or not np.all(var + eps > 0):
        raise Unsupported(f"epsilon={eps} with variance min {float(np.min(var)):g}: variance + "
                          "epsilon must be positive: the model is invalid")
    w = gamma / np.sqrt(var + eps)
    b = beta - mean * w
    w, b = w.astype(np.float32), b.astype(np.float32)
    logical = cx.shape(cx.node.input[0])
    c = logical[1]
    v = cx.value(0, hidden=True)
    if v.hidden and not any(logical[p] == 1 for p in v.perm):  # no batch (static dim 0 > 1)
        _batch_norm_hidden(cx, v, logical, w, b)
        return
    if len(logical) > 4:
        _channel_affine(cx, logical, w, b)
        return
    # A depthwise 1x1 conv (fuse.py folds it into a preceding conv): per-channel int8 weights
    # and an int32 bias. Mul + Add by int8 constants would lose [N, C] and [N, C, L] inputs to
    # cancellation, since the shift b = beta - mean * w nearly cancels x * w.
    wname = cx.b.const(f"{cx.out()}__scale", w.reshape(c, 1, 1, 1))
    bname = cx.b.const(f"{cx.out()}__shift", b)
    attrs = ir.ConvAttrs(groups=c)
    if len(logical) == 2:  # [N, C] is [N, 1, 1, C] in NHWC
        v = cx.b.to_logical(cx.value(0), logical, cx.source)
        n = logical[0]
        x = cx.b.reshape(v.name, (n, 1, 1, c), f"{v.name}__2d", cx.source)
        y = cx.b.add("Conv2D", [x, wname, bname], f"{cx.out()}__2d", (n, 1, 1, c), attrs,
                     cx.name, cx.source)
        cx.set(cx.b.reshape(y, (n, c), cx.out(), cx.source), (0, 1))
        return
    x, xs, is_1d = _to_2d(cx, 0)
    _finish_2d(cx, "Conv2D", [x, wname, bname], xs, attrs, is_1d)


def _batch_norm_hidden(cx: Ctx, v, logical: tuple, w: np.ndarray, b: np.ndarray) -> None:
    """BatchNormalization of a tensor without a batch axis ([2, 3, 4, 5] as data): channels
    (axis 1) moved last, every other axis one row of a [1, P, 1, C] depthwise 1x1 conv."""
    rank, c = len(logical), logical[1]
    target = (0,) + tuple(range(2, rank)) + (1,)
    v = cx.b.to_perm(v, logical, target, cx.source)
    rows = int(np.prod(logical)) // c
    x = cx.b.reshape(v.name, (1, rows, 1, c), f"{cx.out()}__2d", cx.source)
    wname = cx.b.const(f"{cx.out()}__scale", w.reshape(c, 1, 1, 1))
    bname = cx.b.const(f"{cx.out()}__shift", b)
    y = cx.b.add("Conv2D", [x, wname, bname], f"{cx.out()}__conv", (1, rows, 1, c),
                 ir.ConvAttrs(groups=c), cx.name, cx.source)
    cx.set(cx.b.reshape(y, cx.b.shape(v.name), cx.out(), cx.source), target, hidden=True)


def _channel_affine(cx: Ctx, logical: tuple, w: np.ndarray, b: np.ndarray) -> None:
    """x * w + b per channel (axis 1) as Mul + Add by constants, for ranks the conv can't take."""
    v = cx.value(0)
    rank = len(logical)
    bshape = (logical[1],) + (1,) * (rank - 2)
    wname = cx.b.const(f"{cx.out()}__scale", const_to_physical(w.reshape(bshape), rank, v.perm))
    bname = cx.b.const(f"{cx.out()}__shift", const_to_physical(b.reshape(bshape), rank, v.perm))
    phys = cx.b.shape(v.name)
    m = cx.b.add("Mul", [v.name, wname], f"{cx.out()}__mul", phys, ir.BinaryAttrs(),
                 source=cx.source)
    y = cx.b.add("Add", [m, bname], cx.out(), phys, ir.BinaryAttrs(), cx.name, cx.source)
    cx.set(y, v.perm)
