"""Float reference executor: runs the float IR in numpy on a batch (calibration and golden outputs).

Activations are physical (NHWC) float32 arrays whose axis 0 is the batch of N samples; the IR's
shapes have batch 1, so every Reshape keeps the batch as its leading dim.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from microq import ir
from microq.ref import resize as resize_ref
from microq.ref import activations, conv3d, transpose_conv
from microq.ref import recurrent as recurrent_ref


def to_physical(graph: ir.Graph, name: str, x_logical: np.ndarray) -> np.ndarray:
    """A graph input in the user's (ONNX) layout -> the physical layout the graph expects."""
    perm = graph.input_perm.get(name)
    x = np.asarray(x_logical, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(perm) if perm is not None else x)


def run_float(
    graph: ir.Graph,
    feeds: dict[str, np.ndarray],
    on_tensor: Callable[[str, np.ndarray], None] | None = None,
) -> dict[str, np.ndarray]:
    """Run the graph on physical-layout feeds (batch N); return the outputs (logical, batch N)."""
    env: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        env[name] = np.asarray(feeds[name], dtype=np.float32)
    for node in graph.nodes:
        args = []
        for i in node.inputs:
            t = graph.tensors[i]
            args.append(t.const if t.is_const else env[i])
        if node.op == "Concat" and node.attrs.axis != 0:
            args = _concat_consts_per_sample(node, graph, args)
        ys = OPS[node.op](args, node.attrs)
        for out, y in zip(node.outputs, ys if isinstance(ys, tuple) else (ys,)):
            y = y.astype(np.float32, copy=False)
            env[out] = y
            if on_tensor is not None:
                on_tensor(out, y)
    return {name: env[name] for name in graph.outputs}


def _concat_consts_per_sample(node: ir.Node, graph: ir.Graph, args: list) -> list:
    """A constant Concat input (a ViT's class token, `cls.expand(B, -1, -1)` folded at batch 1)
    holds one sample's worth: repeat it for every sample of the activations' batch."""
    n = max((a.shape[0] for i, a in zip(node.inputs, args)
             if not graph.tensors[i].is_const and a.ndim), default=1)
    return [np.broadcast_to(a, (n, *a.shape[1:])) if graph.tensors[i].is_const and a.ndim
            and a.shape[0] == 1 and n != 1 else a for i, a in zip(node.inputs, args)]


def _clamp(y: np.ndarray, attrs: object) -> np.ndarray:
    if attrs is None or (attrs.act_min == -np.inf and attrs.act_max == np.inf):
        return y
    return np.clip(y, attrs.act_min, attrs.act_max)


def _windows(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> np.ndarray:
    """A read-only view [N, OH, OW, KH, KW, C] of every window of the (already padded) x."""
    n, h, w, c = x.shape
    kh, kw = kernel
    oh = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    s0, s1, s2, s3 = x.strides
    shape = (n, oh, ow, kh, kw, c)
    strides = (s0, s1 * stride[0], s2 * stride[1], s1 * dilation[0], s2 * dilation[1], s3)
    return as_strided(x, shape, strides, writeable=False)


def _pad_hw(x: np.ndarray, pads: tuple[int, int, int, int], value: float) -> np.ndarray:
    top, left, bottom, right = pads
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def conv2d(args: list[np.ndarray], a: ir.ConvAttrs) -> np.ndarray:
    x, w, b = args
    cout, kh, kw, cg = w.shape
    win = _windows(_pad_hw(x, a.pads, 0.0), (kh, kw), a.stride, a.dilation)
    g = a.groups
    if g == 1:
        y = np.tensordot(win, w, axes=([3, 4, 5], [1, 2, 3]))
    elif cg == 1:  # depthwise: output channel o = ci * mult + m reads input channel ci
        mult = cout // g
        wd = w[..., 0].reshape(g, mult, kh, kw)
        y = np.zeros(win.shape[:3] + (g, mult), np.float32)
        for i in range(kh):
            for j in range(kw):
                y += win[:, :, :, i, j, :, None] * wd[:, :, i, j]
        y = y.reshape(win.shape[:3] + (cout,))
    else:
        og = cout // g
        parts = [
            np.tensordot(win[..., k * cg : (k + 1) * cg], w[k * og : (k + 1) * og],
                         axes=([3, 4, 5], [1, 2, 3]))
            for k in range(g)
        ]
        y = np.concatenate(parts, axis=-1)
    return _clamp(y + b, a)


def fully_connected(args: list[np.ndarray], a: ir.FCAttrs) -> np.ndarray:
    x, w, b = args
    y = x.reshape(-1, x.shape[-1]) @ w.T + b
    return _clamp(y.reshape(x.shape[:-1] + (w.shape[0],)), a)


def max_pool(args: list[np.ndarray], a: ir.PoolAttrs) -> np.ndarray:
    win = _windows(_pad_hw(args[0], a.pads, -np.inf), a.kernel, a.stride, (1, 1))
    return win.max(axis=(3, 4))


def avg_pool(args: list[np.ndarray], a: ir.PoolAttrs) -> np.ndarray:
    x = args[0]
    total = _windows(_pad_hw(x, a.pads, 0.0), a.kernel, a.stride, (1, 1)).sum(axis=(3, 4))
    if a.count_include_pad:
        return total / np.float32(a.kernel[0] * a.kernel[1])
    ones = _pad_hw(np.ones((1,) + x.shape[1:3] + (1,), np.float32), a.pads, 0.0)
    count = _windows(ones, a.kernel, a.stride, (1, 1)).sum(axis=(3, 4))
    return total / count


def activation(args: list[np.ndarray], a: ir.ActAttrs) -> np.ndarray:
    """The one definition (ref.activations, which the quantizer's lookup tables sample too)."""
    return activations.apply(a, args[0]).astype(np.float32)


def softmax(args: list[np.ndarray], a: ir.SoftmaxAttrs) -> np.ndarray:
    x = args[0] * np.float32(a.beta)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def masked_softmax(args: list[np.ndarray], a: ir.SoftmaxAttrs) -> np.ndarray:
    """Softmax of the kept keys (keep broadcasts over the batch); masked and all-masked -> 0."""
    keep = np.broadcast_to(args[1] != 0, args[0].shape)
    x = np.where(keep, args[0] * np.float32(a.beta), -np.inf)
    m = x.max(axis=-1, keepdims=True)
    e = np.where(keep, np.exp(x - np.where(np.isfinite(m), m, 0)), 0)
    s = e.sum(axis=-1, keepdims=True)
    return e / np.where(s > 0, s, 1)


def reshape(args: list[np.ndarray], a: ir.ReshapeAttrs) -> np.ndarray:
    return args[0].reshape((-1,) + tuple(a.shape[1:]))  # the leading dim carries the batch


def pad(args: list[np.ndarray], a: ir.PadAttrs) -> np.ndarray:
    return np.pad(args[0], a.pads, constant_values=a.value)


def matmul(args: list[np.ndarray], a: ir.MatMulAttrs) -> np.ndarray:
    x, y = args
    y = np.matmul(x, np.swapaxes(y, -1, -2) if a.transpose_b else y)
    return y if a.alpha == 1.0 else y * np.float32(a.alpha)


def layer_norm(args: list[np.ndarray], a: ir.LayerNormAttrs) -> np.ndarray:
    x, gamma, beta = (v.astype(np.float64) for v in args)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + a.eps) * gamma + beta).astype(np.float32)


def group_norm(args: list[np.ndarray], a: ir.GroupNormAttrs) -> np.ndarray:
    """x [N, ..., C]: each run of C / groups channels normalized over all axes but N and C."""
    x, gamma, beta = (v.astype(np.float64) for v in args)
    n, c = x.shape[0], x.shape[-1]
    xg = x.reshape(n, -1, a.groups, c // a.groups)
    mean = xg.mean(axis=(1, 3), keepdims=True)
    var = ((xg - mean) ** 2).mean(axis=(1, 3), keepdims=True)
    y = ((xg - mean) / np.sqrt(var + a.eps)).reshape(x.shape)
    return _clamp((y * gamma + beta).astype(np.float32), a)


def argmax(args: list[np.ndarray], a: ir.ArgMaxAttrs) -> np.ndarray:
    """Indices as float32, first on ties (last with select_last_index), the axis kept."""
    x = args[0]
    if a.select_last_index:
        idx = x.shape[a.axis] - 1 - np.flip(x, axis=a.axis).argmax(axis=a.axis)
    else:
        idx = x.argmax(axis=a.axis)
    return np.expand_dims(idx, a.axis).astype(np.float32)


def recurrent(kind: str):
    """LSTM / GRU: (y, state) over x [N, T, I]; see ref.recurrent.float_recurrent."""
    return lambda x, a: recurrent_ref.float_recurrent(kind, *x, with_cell=True,
                                                      reset_first=a.reset_first,
                                                      reverse=a.reverse)


def slice_(args: list[np.ndarray], a: ir.SliceAttrs) -> np.ndarray:
    index = (slice(None),) + tuple(slice(b, e, s) for b, e, s in
                                   zip(a.begin[1:], a.end[1:], a.step[1:]))
    return np.ascontiguousarray(args[0][index])  # axis 0 carries the batch


OPS: dict[str, Callable[[list[np.ndarray], object], np.ndarray]] = {
    "Conv2D": conv2d,
    "FullyConnected": fully_connected,
    "MaxPool": max_pool,
    "AvgPool": avg_pool,
    "Add": lambda x, a: _clamp(x[0] + x[1], a),
    "Sub": lambda x, a: _clamp(x[0] - x[1], a),
    "Mul": lambda x, a: _clamp(x[0] * x[1], a),
    "Concat": lambda x, a: np.concatenate(x, axis=a.axis),
    "Reshape": reshape,
    "Transpose": lambda x, a: np.ascontiguousarray(x[0].transpose(a.perm)),
    "Pad": pad,
    "Softmax": softmax,
    "MaskedSoftmax": masked_softmax,
    "Activation": activation,
    "MatMul": matmul,
    "LayerNorm": layer_norm,
    "Slice": slice_,
    "Resize": resize_ref.float_resize,
    "ConvTranspose2D": transpose_conv.float_transpose_conv,
    "Conv3D": conv3d.float_conv3d,
    "GroupNorm": group_norm,
    "Max": lambda x, a: _clamp(np.maximum(x[0], x[1]), a),
    "Min": lambda x, a: _clamp(np.minimum(x[0], x[1]), a),
    "PRelu": lambda x, a: _clamp(np.where(x[0] >= 0, x[0], x[0] * x[1]).astype(np.float32), a),
    "ReduceMax": lambda x, a: x[0].max(axis=a.axes, keepdims=True),
    "ReduceMin": lambda x, a: x[0].min(axis=a.axes, keepdims=True),
    "ArgMax": argmax,
    "LSTM": recurrent("lstm"),
    "GRU": recurrent("gru"),
    "Abs": lambda x, a: np.abs(x[0]),
}
