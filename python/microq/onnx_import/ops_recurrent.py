"""ONNX frontend converters for LSTM and GRU (directions forward, reverse and bidirectional;
torch exports each layer of nn.LSTM / nn.GRU as one node with either exporter) -> one IR LSTM /
GRU per direction over x [1, T, I] physically, whatever the ONNX layout (0: [T, N, I],
1: [N, T, I]); the reverse one runs from the last step to the first (RecurrentAttrs.reverse).

Outputs: Y ([T, D, N, H] / [N, T, D, H]) is, with one direction, the IR output [1, T, H] seen
as [N, 1, T, H] (a free Reshape); with two, the Concat of both as [N, T, 2, H]. Y_h ([D, N, H] /
[N, D, H]) is a Slice of each direction's final step (the forward's last, the reverse's first),
concatenated when there are two. Y_c (the last cell state) is refused when
something reads it. Initial states must be absent or constant zeros, sequence_lens absent or
all T, peepholes absent or zero; clip, input_forget and non-default activations are refused."""

from __future__ import annotations

import numpy as np

from microq import ir
from microq.ops import check_node
from microq.onnx_import.context import Ctx, Unsupported

DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
GATES = {"LSTM": 4, "GRU": 3}


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _zero_input(cx: Ctx, idx: int, what: str) -> None:
    if not cx.has_input(idx):
        return
    arr = cx.const(idx)
    if arr is None:
        raise Unsupported(f"{cx.node.op_type} with a computed {what} (input {idx}): only an "
                          "absent or constant-zero one is supported")
    if np.any(np.asarray(arr) != 0):
        raise Unsupported(f"{cx.node.op_type} with a non-zero {what}: only zero is supported")


def recurrent(cx: Ctx) -> None:
    op = cx.node.op_type
    a = cx.attrs()
    direction = _text(a.get("direction", "forward"))
    if direction not in ("forward", "reverse", "bidirectional"):
        raise Unsupported(f"{op} direction '{direction}': expected forward, reverse or "
                          "bidirectional")
    dirs = 2 if direction == "bidirectional" else 1
    if "hidden_size" not in a:
        raise Unsupported(f"{op} without hidden_size")
    hidden = int(a["hidden_size"])
    layout = int(a.get("layout", 0))
    acts = [_text(s) for s in a.get("activations", [])]
    if acts and [s.lower() for s in acts] != [s.lower() for s in DEFAULT_ACTS[op]]:
        raise Unsupported(f"{op} activations {acts}: only the default "
                          f"{DEFAULT_ACTS[op]} are supported")
    if a.get("clip") is not None:
        raise Unsupported(f"{op} with clip: not supported")
    if int(a.get("input_forget", 0)):
        raise Unsupported(f"{op} with input_forget=1: not supported")
    reset_first = int(op == "GRU" and int(a.get("linear_before_reset", 0)) == 0)
    g = GATES[op] * hidden
    w, r = cx.const(1), cx.const(2)
    if w is None or r is None:
        raise Unsupported(f"{op} with non-constant weights W / R")
    w, r = np.asarray(w, np.float32), np.asarray(r, np.float32)
    if w.ndim != 3 or w.shape[0] != dirs or w.shape[1] != g or r.shape != (dirs, g, hidden):
        raise Unsupported(f"{op} weights W {list(w.shape)} / R {list(r.shape)} do not match "
                          f"{dirs} direction(s) of hidden_size {hidden}")
    bias = cx.const(3)
    if cx.has_input(3) and bias is None:
        raise Unsupported(f"{op} with a non-constant bias B")
    bias = np.zeros((dirs, 2 * g), np.float32) if bias is None else np.asarray(bias, np.float32)
    if bias.shape != (dirs, 2 * g):
        raise Unsupported(f"{op} bias B {list(bias.shape)}, expected [{dirs}, {2 * g}]")
    logical = cx.shape(cx.node.input[0])
    if len(logical) != 3:
        raise Unsupported(f"{op} input of rank {len(logical)} (needs 3)")
    steps, batch = (logical[0], logical[1]) if layout == 0 else (logical[1], logical[0])
    if batch != 1:
        raise Unsupported(f"{op} over {batch} sequences at once (its batch_size axis "
                          f"{1 if layout == 0 else 0} has size {batch}, data in this model): "
                          "the recurrent kernel runs one sequence; export with a batch of 1 or "
                          "a dynamic batch")
    if cx.has_input(4):
        lens = cx.const(4)
        if lens is None or np.any(np.asarray(lens) != steps):
            raise Unsupported(f"{op} with sequence_lens other than the full {steps} steps")
    _zero_input(cx, 5, "initial_h")
    if op == "LSTM":
        _zero_input(cx, 6, "initial_c")
        _zero_input(cx, 7, "peephole weights P")
        if not cx.unused(2):
            raise Unsupported("LSTM whose last cell state Y_c (output 2) is used: only Y and "
                              "Y_h are supported")
    target = (1, 0, 2) if layout == 0 else (0, 1, 2)
    v = cx.b.to_perm(cx.value(0), logical, target, cx.source)
    base = cx.node.output[0] or cx.node.output[1] or cx.name
    ys, finals = [], []
    for d in range(dirs):
        rev = int(direction == "reverse" or d == 1)
        tag = ("__rev" if rev else "__fwd") if dirs == 2 else ""
        consts = [cx.b.const(f"{cx.out()}{tag}__{k}", arr) for k, arr in
                  (("W", w[d]), ("R", r[d]), ("Wb", bias[d, :g]), ("Rb", bias[d, g:]))]
        y = cx.b.activation(f"{base}{tag}__seq", (1, steps, hidden))
        state = cx.b.activation(f"{base}{tag}__state", (1, steps, hidden))
        attrs = ir.RecurrentAttrs(hidden, reset_first, rev)
        check_node(f"node '{cx.name}'", op, attrs)
        cx.b.nodes.append(ir.Node(cx.b.node_name(cx.name + tag), op, [v.name] + consts,
                                  [y, state], attrs, cx.source))
        ys.append(y)
        if not cx.unused(1):  # the final state: the last step, or the first when reversed
            t = 0 if rev else steps - 1
            attrs = ir.SliceAttrs((0, t, 0), (1, t + 1, hidden), (1, 1, 1))
            out = cx.out(1) + tag
            finals.append(cx.b.add("Slice", [y], out, (1, 1, hidden), attrs, source=cx.source))
    if not cx.unused(0):
        if dirs == 1:
            yy = cx.b.reshape(ys[0], (1, 1, steps, hidden), f"{cx.out(0)}", cx.source)
            cx.set(yy, (2, 1, 0, 3) if layout == 0 else (0, 2, 1, 3), 0)
        else:  # physical [N, T, 2, H]
            parts = [cx.b.reshape(y, (1, steps, 1, hidden), f"{y}__4d", cx.source) for y in ys]
            yy = cx.b.add("Concat", parts, cx.out(0), (1, steps, 2, hidden),
                          ir.ConcatAttrs(2), source=cx.source)
            cx.set(yy, (2, 0, 1, 3) if layout == 0 else (0, 1, 2, 3), 0)
        cx.set_batch(2 if layout == 0 else 0, 0)
    if not cx.unused(1):
        yh = finals[0] if dirs == 1 else cx.b.add(
            "Concat", finals, cx.out(1), (1, 2, hidden), ir.ConcatAttrs(1), source=cx.source)
        cx.set(yh, (1, 0, 2) if layout == 0 else (0, 1, 2), 1)
        cx.set_batch(1 if layout == 0 else 0, 1)
