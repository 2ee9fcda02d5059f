"""Empirical bias correction: a pass on the quantized graph (after quant.quantize) that removes
each conv / fully-connected layer's per-output-channel mean error, measured on calibration data.

For each such layer, in graph order, the integer reference (ref.int_exec's kernels) and the float
layer (ref.float_exec's ops, float weights) see the same dequantized int8 input. The mean of
(int8 output dequantized) - (float output) per output channel is the shift that weight rounding
and requantization add; it is subtracted from the int32 bias, in bias units
(s_in * s_w[c] = M[c] * s_out). The mean is taken over the elements that neither output clamps
(a fused ReLU hides a shift of the negative side, and saturation hides it at the range ends).
Layers are corrected in order, each measured on the already corrected layers before it.

Only bias values change, so the generated C stays bit-exact with the integer reference.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from .. import ir, qir
from ..ops import KERNELS as KERNELS_TABLE
from ..ref.arith import INT32_MAX
from .guards import channel_weight_sums, reach
from ..ref.float_exec import OPS
from ..ref.int_exec import KERNELS

CORRECTED = tuple(k for k, d in KERNELS_TABLE.items() if d.bias_correction)
MAX_SAMPLES = 256  # measured on at most this many calibration samples


def quantize_feed(q: qir.QParams, x: np.ndarray) -> np.ndarray:
    """Float -> int8 the way compare and the tests quantize model inputs."""
    return qir.quantize_int8(x, q.scale, q.zero_point)


def dequantize(q: qir.QParams, v: np.ndarray) -> np.ndarray:
    return ((v.astype(np.float64) - q.zero_point) * q.scale).astype(np.float32)


def bias_scale(p, s_out: float) -> np.ndarray:
    """s_in * s_w[c] per output channel, from the stored multiplier: M = m * 2^(shift - 31)."""
    m = p.multiplier.astype(np.float64) * np.exp2(p.shift.astype(np.float64) - 31)
    return m * s_out


def _run_node(node: qir.QNode, qg: qir.QGraph, values: dict[str, np.ndarray], n: int,
              rounding: str) -> np.ndarray:
    """One integer node over n samples (the reference kernels take batch 1; constants are
    passed whole)."""
    kernel = KERNELS[node.kernel]
    consts = {t: np.asarray(qg.tensors[t].const, np.int8).reshape(qg.tensors[t].shape)
              for t in node.inputs if qg.tensors[t].const is not None}
    outs = [kernel(node, qg, [consts[t] if t in consts else values[t][i : i + 1]
                              for t in node.inputs], rounding) for i in range(n)]
    return np.concatenate([np.asarray(o) for o in outs])


def channel_error(node: qir.QNode, fnode: ir.Node, graph: ir.Graph, qg: qir.QGraph,
                  x_int: np.ndarray, y_int: np.ndarray) -> np.ndarray:
    """Per-output-channel mean of deq(y_int) - float layer(deq(x_int)), over unclamped elements."""
    p = node.params
    qi, qo = qg.tensors[node.inputs[0]].q, qg.tensors[node.outputs[0]].q
    w, b = (graph.tensors[t].const for t in fnode.inputs[1:])
    a = fnode.attrs
    y_f = OPS[fnode.op]([dequantize(qi, x_int), w, b], a)
    y_q = dequantize(qo, y_int)
    cout = y_f.shape[-1]
    yf, yq, yi = (v.reshape(-1, cout) for v in (y_f, y_q, y_int))
    free = (yf > a.act_min) & (yf < a.act_max) & (yi > p.act_min) & (yi < p.act_max)
    count = free.sum(axis=0)
    err = np.where(free, yq.astype(np.float64) - yf, 0.0).sum(axis=0)
    return np.where(count > 0, err / np.maximum(count, 1), 0.0)


def _walk(graph, qg, feeds, rounding, max_samples, fix, progress):
    """Run qg node by node on the quantized feeds; measure (and with fix, remove) each conv/FC
    layer's per-channel mean error. Returns (nodes, {node name: error before any fix})."""
    fnodes = {n.name: n for n in graph.nodes}
    last_use = {t: i for i, n in enumerate(qg.nodes) for t in n.inputs}
    values = {k: quantize_feed(qg.tensors[k].q, v[:max_samples]) for k, v in feeds.items()}
    n = len(next(iter(values.values())))
    nodes, errors = [], {}
    for i, node in enumerate(qg.nodes):
        y = _run_node(node, qg, values, n, rounding)
        fnode = fnodes.get(node.name)
        if node.kernel in CORRECTED and fnode is not None:
            err = channel_error(node, fnode, graph, qg, values[node.inputs[0]], y)
            errors[node.name] = err
            if fix:
                node = _corrected(node, err, qg.tensors[node.outputs[0]].q.scale)
                y = _run_node(node, qg, values, n, rounding)
        nodes.append(node)
        values[node.outputs[0]] = y
        for t in node.inputs:
            if last_use.get(t) == i and t not in qg.outputs:
                values.pop(t, None)
        if progress:
            progress(1)
    return nodes, errors


def _corrected(node: qir.QNode, err: np.ndarray, s_out: float) -> qir.QNode:
    p = node.params
    scale = bias_scale(p, s_out)
    # a zero multiplier makes the channel a constant: its bias has no effect
    delta = np.round(np.where(scale > 0, err / np.where(scale > 0, scale, 1.0), 0.0))
    bias = np.zeros(len(p.multiplier), np.int64) if p.bias is None else p.bias.astype(np.int64)
    # keep the accumulator bound of guards.py: reach * sum|w| + |bias| <= 2^31 - 1
    room = INT32_MAX - reach(p.input_offset) * channel_weight_sums(
        node.kernel, p.filter, getattr(p, "filter_offset", 0))
    # clip in float64 first: a huge delta would not survive a cast to int64
    new_bias = np.clip(bias - np.clip(delta, -2.0**33, 2.0**33), -room, room).astype(np.int32)
    return dataclasses.replace(node, params=dataclasses.replace(p, bias=new_bias))


def correct_biases(
    graph: ir.Graph,
    qg: qir.QGraph,
    feeds: dict[str, np.ndarray],
    rounding: str = "double",
    max_samples: int = MAX_SAMPLES,
    progress: Callable[[int], None] | None = None,
) -> qir.QGraph:
    """A copy of `qg` with corrected conv/FC biases. `feeds`: physical-layout float32 inputs
    (samples on axis 0). `progress(1)` is called per node."""
    nodes, _ = _walk(graph, qg, feeds, rounding, max_samples, True, progress)
    return dataclasses.replace(qg, nodes=nodes)


def channel_errors(
    graph: ir.Graph,
    qg: qir.QGraph,
    feeds: dict[str, np.ndarray],
    rounding: str = "double",
    max_samples: int = MAX_SAMPLES,
) -> dict[str, np.ndarray]:
    """Each conv/FC layer's per-output-channel mean error (what correct_biases would remove)."""
    return _walk(graph, qg, feeds, rounding, max_samples, False, None)[1]
