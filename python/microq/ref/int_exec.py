"""The integer executor: runs a quantized graph (qir) node by node through the numpy reference
kernels; the spec the generated C must equal bit for bit.

KERNELS is the one registry: kernel name -> adapter(node, graph, inputs, rounding) -> output.
Adapters only reshape; every bit of arithmetic lives in the ref kernel they call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..qir import QGraph, QNode
from . import conv, elementwise, fc, layernorm, matmul, pool, softmax, tensor
from . import conv3d, groupnorm, minmax, recurrent, reduce, resize, transpose_conv
from . import s16
from . import slice as slice_ref  # not `slice`: that is a builtin

Adapter = Callable[[QNode, QGraph, list, str], np.ndarray]


def _out_shape(node: QNode, g: QGraph) -> tuple[int, ...]:
    return tuple(g.tensors[node.outputs[0]].shape)


def _out_hw(node: QNode, g: QGraph) -> tuple[int, int]:
    shape = _out_shape(node, g)
    return int(shape[1]), int(shape[2])


def _conv2d(node, g, xs, rounding):
    return conv.conv2d(node.params, xs[0], _out_hw(node, g), rounding)


def _depthwise(node, g, xs, rounding):
    return conv.depthwise_conv2d(node.params, xs[0], _out_hw(node, g), rounding)


def _fully_connected(node, g, xs, rounding):
    x = xs[0]
    rows = x.reshape(-1, x.shape[-1])  # leading dims are rows (batches)
    return fc.fully_connected(node.params, rows, rounding).reshape(_out_shape(node, g))


def _max_pool(node, g, xs, rounding):
    return pool.max_pool(node.params, xs[0], _out_hw(node, g))


def _avg_pool(node, g, xs, rounding):
    return pool.avg_pool(node.params, xs[0], _out_hw(node, g))


def _add(node, g, xs, rounding):
    return elementwise.add(node.params, xs[0], xs[1], rounding)


def _sub(node, g, xs, rounding):
    return elementwise.sub(node.params, xs[0], xs[1], rounding)


def _mul(node, g, xs, rounding):
    return elementwise.mul(node.params, xs[0], xs[1], rounding)


def _lut(node, g, xs, rounding):
    return elementwise.lut(node.params, xs[0])


def _requantize(node, g, xs, rounding):
    return elementwise.requantize(node.params, xs[0], rounding)


def _softmax(node, g, xs, rounding):
    return softmax.softmax(node.params, xs[0], rounding)


def _softmax_masked(node, g, xs, rounding):
    p = node.params
    rows = p.mask.shape[0]
    x = xs[0]
    x2 = x.reshape(-1, rows, x.shape[-1])  # row r of the [rows, row_size] view uses mask r % m
    return softmax.softmax_masked(p.softmax, x2, p.mask, rounding).reshape(x.shape)


def _concat(node, g, xs, rounding):
    return tensor.concat(node.params, xs)


def _pad(node, g, xs, rounding):
    x = xs[0]
    view = (1,) * (4 - x.ndim) + tuple(x.shape)  # the 4-D view of PadParams: leading 1s
    return tensor.pad(node.params, x.reshape(view)).reshape(_out_shape(node, g))


def _transpose(node, g, xs, rounding):
    return tensor.transpose(node.params, xs[0])


def _reshape(node, g, xs, rounding):
    return np.reshape(xs[0], _out_shape(node, g))


def _batch_matmul(node, g, xs, rounding):
    return matmul.batch_matmul(node.params, xs[0], xs[1], rounding).reshape(_out_shape(node, g))


def _layernorm(node, g, xs, rounding):
    x = xs[0]
    rows = x.reshape(-1, x.shape[-1])  # normalized over the last axis, leading dims are rows
    return layernorm.layernorm(node.params, rows, rounding).reshape(x.shape)


def _slice(node, g, xs, rounding):
    # The output shape may drop a gathered axis of size 1: same bytes.
    return slice_ref.strided_slice(node.params, xs[0]).reshape(_out_shape(node, g))


def _resize_nearest(node, g, xs, rounding):
    return resize.resize_nearest(node.params, xs[0], _out_hw(node, g))


def _resize_bilinear(node, g, xs, rounding):
    return resize.resize_bilinear(node.params, xs[0], _out_hw(node, g))


def _transpose_conv2d(node, g, xs, rounding):
    return transpose_conv.transpose_conv2d(node.params, xs[0], _out_hw(node, g), rounding)


def _conv3d(node, g, xs, rounding):
    return conv3d.conv3d(node.params, xs[0], tuple(_out_shape(node, g)[1:4]), rounding)
def _groupnorm(node, g, xs, rounding):
    x = xs[0]
    view = (x.shape[0], -1, x.shape[-1])  # [N, spatial, C]: all axes between N and C pooled
    return groupnorm.groupnorm(node.params, x.reshape(view), rounding).reshape(x.shape)


def _maximum(node, g, xs, rounding):
    return minmax.maximum(node.params, xs[0], xs[1], rounding)


def _minimum(node, g, xs, rounding):
    return minmax.minimum(node.params, xs[0], xs[1], rounding)


def _prelu(node, g, xs, rounding):
    return minmax.prelu(node.params, xs[0], xs[1], rounding)


def _reduce_max(node, g, xs, rounding):
    return reduce.reduce_max(node.params, xs[0])


def _reduce_min(node, g, xs, rounding):
    return reduce.reduce_min(node.params, xs[0])


def _argmax(node, g, xs, rounding):
    return reduce.argmax(node.params, xs[0])


def _recurrent(node, g, xs, rounding):
    x = xs[0]  # [1, T, I]: batch 1, the steps in order
    fn = recurrent.lstm_tfl if node.kernel == "lstm_tfl" else recurrent.recurrent
    y = fn(node.params, x.reshape(-1, x.shape[-1]), rounding)
    return y.reshape(_out_shape(node, g))


def _fc_s16(node, g, xs, rounding):
    x = xs[0]
    rows = x.reshape(-1, x.shape[-1])
    return s16.fully_connected_s16(node.params, rows).reshape(_out_shape(node, g))


def _requantize_s16(node, g, xs, rounding):
    return s16.requantize_s16(node.params, xs[0], _np_dtype(g, node.outputs[0]), rounding)


def _layernorm_s16(node, g, xs, rounding):
    x = xs[0]
    y = s16.layernorm_s16(node.params, x.reshape(-1, x.shape[-1]),
                          _np_dtype(g, node.outputs[0]), rounding)
    return y.reshape(x.shape)


def _np_dtype(g: QGraph, tensor: str):
    return np.int16 if g.tensors[tensor].dtype == "int16" else np.int8


KERNELS: dict[str, Adapter] = {
    "conv2d": _conv2d,
    "depthwise_conv2d": _depthwise,
    "fully_connected": _fully_connected,
    "max_pool": _max_pool,
    "avg_pool": _avg_pool,
    "add": _add,
    "sub": _sub,
    "mul": _mul,
    "lut": _lut,
    "requantize": _requantize,
    "softmax": _softmax,
    "softmax_masked": _softmax_masked,
    "concat": _concat,
    "pad": _pad,
    "transpose": _transpose,
    "reshape": _reshape,
    "batch_matmul": _batch_matmul,
    "layernorm": _layernorm,
    "slice": _slice,
    "resize_nearest": _resize_nearest,
    "resize_bilinear": _resize_bilinear,
    "transpose_conv2d": _transpose_conv2d,
    "conv3d": _conv3d,
    "groupnorm": _groupnorm,
    "maximum": _maximum,
    "minimum": _minimum,
    "prelu": _prelu,
    "reduce_max": _reduce_max,
    "reduce_min": _reduce_min,
    "argmax": _argmax,
    "lstm": _recurrent,
    "gru": _recurrent,
    "lstm_tfl": _recurrent,
    "conv2d_s16": lambda n, g, xs, r: s16.conv2d_s16(n.params, xs[0], _out_hw(n, g)),
    "depthwise_conv2d_s16": lambda n, g, xs, r: s16.depthwise_conv2d_s16(n.params, xs[0],
                                                                          _out_hw(n, g)),
    "fully_connected_s16": _fc_s16,
    "add_s16": lambda n, g, xs, r: s16.add_s16(n.params, xs[0], xs[1], rounding=r),
    "sub_s16": lambda n, g, xs, r: s16.add_s16(n.params, xs[0], xs[1], True, r),
    "mul_s16": lambda n, g, xs, r: s16.mul_s16(n.params, xs[0], xs[1], r),
    "softmax_s16": lambda n, g, xs, r: s16.softmax_s16(n.params, xs[0], r),
    "logistic_s16": lambda n, g, xs, r: s16.logistic_s16(n.params, xs[0]),
    "tanh_s16": lambda n, g, xs, r: s16.tanh_s16(n.params, xs[0]),
    "requantize_s16": _requantize_s16,
    "abs": lambda node, g, xs, rounding: elementwise.abs_(node.params, xs[0], rounding),
    "layernorm_s16": _layernorm_s16,
    "max_pool_s16": lambda n, g, xs, r: s16.max_pool_s16(n.params, xs[0], _out_hw(n, g)),
    "avg_pool_s16": lambda n, g, xs, r: s16.avg_pool_s16(n.params, xs[0], _out_hw(n, g)),
    "lut_s16": lambda n, g, xs, r: s16.lut_lookup(n.params.table, xs[0]).astype(np.int16),
}


def run_int(
    qgraph: QGraph,
    feeds: dict[str, np.ndarray],
    rounding: str = "double",
    on_tensor: Callable[[str, np.ndarray], None] | None = None,
) -> dict[str, np.ndarray]:
    """Execute `qgraph` on integer `feeds` (physical shapes, batch 1; int8, or int16 for a 16x8
    tensor); returns every graph output. `on_tensor(name, value)` sees each tensor a node
    produces."""
    values: dict[str, np.ndarray] = {}
    for name in qgraph.inputs:
        if name not in feeds:
            raise KeyError(f"missing feed for graph input '{name}'")
        x = np.asarray(feeds[name])
        expected = tuple(qgraph.tensors[name].shape)
        want = _np_dtype(qgraph, name)
        if x.dtype != want or x.shape != expected:
            raise ValueError(f"feed '{name}': expected {np.dtype(want).name} {expected}, got "
                             f"{x.dtype} {x.shape}")
        values[name] = x
    for t in qgraph.tensors.values():
        if t.const is not None:
            values[t.name] = np.asarray(t.const, dtype=_np_dtype(qgraph, t.name)).reshape(t.shape)
    for node in qgraph.nodes:
        if node.kernel not in KERNELS:
            raise KeyError(f"node '{node.name}': no integer kernel '{node.kernel}'")
        xs = [values[t] for t in node.inputs]
        y = KERNELS[node.kernel](node, qgraph, xs, rounding)
        y = np.asarray(y)
        expected = _out_shape(node, qgraph)
        want = _np_dtype(qgraph, node.outputs[0])
        if y.dtype != want or y.shape != expected:
            raise AssertionError(
                f"node '{node.name}' ({node.kernel}): kernel returned {y.dtype} {y.shape}, "
                f"graph says {np.dtype(want).name} {expected}"
            )
        values[node.outputs[0]] = y
        if on_tensor is not None:
            on_tensor(node.outputs[0], y)
    return {name: values[name] for name in qgraph.outputs}
