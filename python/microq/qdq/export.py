"""QDQ ONNX out: the original float ONNX graph with our exact int8 quantization made explicit.

Every activation microq quantizes gets a QuantizeLinear -> DequantizeLinear pair with our scale
and zero point; Conv/Gemm/MatMul weights become int8 initializers dequantized per output channel,
biases int32 at s_in * s_w. A BatchNormalization or constant scale/shift folded into a layer is
folded in the exported graph too; a fused ReLU/Clip stays as its own node, and the Q after it
carries the layer's output parameters.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import qir
from ..errors import MicroqError
from ..quant.quantize import quantize_weights_per_channel
from ..ref.arith import round_half_away

WEIGHTED = ("Conv", "Gemm", "MatMul")
AFFINE = ("BatchNormalization", "Add", "Sub", "Mul")
MIN_QDQ_OPSET = 13  # per-axis DequantizeLinear


class _Writer:
    def __init__(self, model: onnx.ModelProto, qg: qir.QGraph):
        self.m, self.g, self.qg = model, model.graph, qg
        self.consts = {i.name: numpy_helper.to_array(i) for i in self.g.initializer}
        seen: set[str] = set()
        self.by_name = {n.name: n for n in self.g.node if n.name}  # the importer's node names
        for i, n in enumerate(self.g.node):  # unique node names: nodes are keyed by name below
            if not n.name or n.name in seen:
                n.name = f"{n.name or n.op_type}__{i}"
            seen.add(n.name)
        self.names = set(self.consts) | {t for n in self.g.node for t in n.output}
        self.names |= {i.name for i in self.g.input}
        self.head: list[onnx.NodeProto] = []  # weight DequantizeLinear nodes, first
        self.after: dict[str, list[onnx.NodeProto]] = {}  # node name -> nodes placed after it

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def init(self, base: str, arr: np.ndarray) -> str:
        name = self.fresh(base)
        self.g.initializer.append(numpy_helper.from_array(np.asarray(arr), name))
        self.consts[name] = np.asarray(arr)
        return name

    def dequantized_const(self, base: str, q: np.ndarray, scale, zp, axis: int | None) -> str:
        s = self.init(f"{base}_scale", np.asarray(scale, np.float32))
        z = self.init(f"{base}_zero_point", np.asarray(zp, q.dtype))
        data = self.init(f"{base}_quantized", q)
        out = self.fresh(f"{base}_dequantized")
        kw = {} if axis is None else {"axis": axis}
        self.head.append(helper.make_node("DequantizeLinear", [data, s, z], [out],
                                          name=self.fresh(f"{base}_DequantizeLinear"), **kw))
        return out

    # -- weighted layers -------------------------------------------------------------------
    def producer(self, tensor: str) -> onnx.NodeProto | None:
        for n in self.g.node:
            if tensor in n.output:
                return n
        return None

    def onnx_tensor(self, t: str) -> str:
        """The ONNX tensor an IR tensor stands for (a Conv1D's 2-D view -> its reshape; the
        NHWC copy of a 4-D graph output -> the transpose back to the ONNX layout; a Conv1D
        output read directly by the next Conv1D, whose view reshapes cancelled -> the output
        of the last ONNX node the layer implements)."""
        start = t
        while self.producer(t) is None:
            nxt = [n for n in self.qg.nodes
                   if n.kernel in ("reshape", "transpose") and n.inputs == [t]]
            if not nxt:
                found = self.source_tensor(start)
                if found is None:
                    raise MicroqError(f"tensor '{t}' is not in the ONNX graph; cannot export it")
                return found
            t = nxt[0].outputs[0]
        return t

    def source_tensor(self, t: str) -> str | None:
        """Output 0 of the last ONNX node (in graph order) that the node writing `t` implements."""
        qn = next((n for n in self.qg.nodes if t in n.outputs), None)
        nodes = [self.by_name[s] for s in (qn.source if qn is not None else [])
                 if s in self.by_name]
        if not nodes:
            return None
        order = {id(n): i for i, n in enumerate(self.g.node)}
        return max(nodes, key=lambda n: order[id(n)]).output[0]

    def internal_to_onnx(self, t: str, produced: set[str]) -> str | None:
        """The ONNX tensor carrying the quantization of `t`, a tensor only microq's graph has, or
        None when it needs no pair of its own. A Conv1D layer writes its [N,1,L,C] view; when
        the next Conv1D reads that view directly (the reshapes between them cancelled) the view
        is the layer's only output, and its pair goes on the output of the last ONNX node the
        layer implements (the Conv, or the Relu/Clip fused into it). qdq.importer maps it back
        by the same rule. Layout copies (reshape, transpose) share their input's parameters."""
        qn = next((n for n in self.qg.nodes if t in n.outputs), None)
        if qn is None or qn.kernel in ("reshape", "transpose") or t != qn.outputs[0]:
            return None  # a later output (a recurrent layer's scratch state) has no ONNX tensor
        o = self.source_tensor(t)
        if o is None or o not in produced or o in self.qg.tensors:
            return None
        return o

    def chain(self, end: str) -> tuple[onnx.NodeProto, list[onnx.NodeProto]]:
        """(weighted node, the constant affine nodes folded into it) of the layer ending at
        `end`; reshapes in between stay."""
        t, affines = end, []
        p = self.producer(t)
        if p is not None and p.op_type in ("Relu", "Clip"):
            p = self.producer(p.input[0])
        reshapes = ("Reshape", "Squeeze", "Unsqueeze", "Flatten")  # unbatched Conv1d: Squeeze
        while p is not None and p.op_type in AFFINE + reshapes:
            if p.op_type not in reshapes:
                consts = [i for i in p.input[1:] if i in self.consts]
                if p.op_type == "Add":
                    consts = [i for i in p.input if i in self.consts]
                if not consts:
                    break
                affines.append(p)
            p = self.producer(next(i for i in p.input if i not in self.consts))
        if p is None or p.op_type not in WEIGHTED:
            raise MicroqError(f"tensor '{end}': cannot find the Conv/Gemm/MatMul producing it")
        return p, affines

    def bypass(self, node: onnx.NodeProto) -> None:
        """Remove a folded node: its readers read its activation input instead."""
        x = next(i for i in node.input if i not in self.consts)
        y = node.output[0]
        if y in {o.name for o in self.g.output}:  # keep the graph output's name
            x, y = y, x
            self.producer(y).output[:] = [x if o == y else o for o in self.producer(y).output]
        for n in self.g.node:
            n.input[:] = [x if i == y else i for i in n.input]
        self.g.node.remove(node)

    def weighted(self, qn: qir.QNode, w_ir: np.ndarray) -> None:
        wq, s_w = quantize_weights_per_channel(w_ir)
        filt = qn.params.filter
        mine = wq.transpose(3, 1, 2, 0) if qn.kernel == "depthwise_conv2d" else wq
        if not np.array_equal(mine, filt):
            raise MicroqError(f"node '{qn.name}': the quantized graph does not come from this "
                              "model (its weights differ)")
        w, affines = self.chain(self.onnx_tensor(qn.outputs[0]))
        s_in = self.qg.tensors[qn.inputs[0]].q.scale
        base = w.name
        s32 = s_w.astype(np.float32)
        zeros = np.zeros(len(s_w), np.int8)
        b_dq = self.dequantized_const(f"{base}_bias", qn.params.bias.astype(np.int32),
                                      np.float32(s_in) * s32, np.zeros(len(s_w), np.int32), 0)
        if w.op_type == "Conv":
            shape = self.consts[w.input[1]].shape if w.input[1] in self.consts else None
            q = wq.transpose(0, 3, 1, 2)
            q = q.reshape(shape) if shape is not None else q
            w_dq = self.dequantized_const(f"{base}_weight", q, s32, zeros, 0)
            del w.input[1:]
            w.input.extend([w_dq, b_dq])
        elif w.op_type == "Gemm":  # alpha is in w_ir; store B as [N, K]
            w_dq = self.dequantized_const(f"{base}_weight", wq, s32, zeros, 0)
            del w.input[1:]
            w.input.extend([w_dq, b_dq])
            keep = [a for a in w.attribute if a.name == "transA"]
            del w.attribute[:]
            w.attribute.extend(keep + [helper.make_attribute("transB", 1)])
        else:  # MatMul [K, N], then the bias as an Add: the model's own when it has one
            w.input[1] = self.dequantized_const(f"{base}_weight", np.ascontiguousarray(wq.T),
                                                s32, zeros, 1)
            adds = [a for a in affines if a.op_type == "Add"]
            if adds:
                add = adds[0]
                affines.remove(add)
                add.input[:] = [b_dq if i in self.consts else i for i in add.input]
            else:
                y = w.output[0]
                w.output[0] = self.fresh(f"{y}_matmul")
                add = helper.make_node("Add", [w.output[0], b_dq], [y],
                                       name=self.fresh(f"{base}_bias"))
                self.after.setdefault(w.name, []).append(add)
        for a in affines:
            self.bypass(a)

    # -- activations -----------------------------------------------------------------------
    def qdq_pair(self, t: str, q: qir.QParams) -> tuple[list[onnx.NodeProto], str, str]:
        """Q/DQ nodes for activation `t`: (nodes, float source name, dequantized name)."""
        s = self.init(f"{t}_scale", np.float32(q.scale))
        z = self.init(f"{t}_zero_point", np.int8(q.zero_point))
        qt = self.fresh(f"{t}_quantized")
        outputs = {o.name for o in self.g.output}
        src, dst = (self.fresh(f"{t}_float"), t) if t in outputs else (t, self.fresh(f"{t}_dq"))
        nodes = [helper.make_node("QuantizeLinear", [src, s, z], [qt], name=f"{t}_QuantizeLinear"),
                 helper.make_node("DequantizeLinear", [qt, s, z], [dst],
                                  name=f"{t}_DequantizeLinear")]
        return nodes, src, dst

    def finish(self) -> None:
        inputs = {i.name for i in self.g.input if i.name not in self.consts}
        produced = {t for n in self.g.node for t in n.output}
        order: list[onnx.NodeProto] = []
        for n in self.g.node:
            order += [n] + self.after.get(n.name, [])
        renames: dict[str, str] = {}  # consumers read the dequantized tensor
        placed: dict[str, list[onnx.NodeProto]] = {}
        pre: list[onnx.NodeProto] = []
        produced |= {t for ns in self.after.values() for n in ns for t in n.output}
        for t, qt in self.qg.tensors.items():
            if qt.const is not None:
                if t in self.consts and self.consts[t].dtype.kind == "f":
                    v = self.consts[t].astype(np.float64)
                    data = np.clip(round_half_away(v / qt.q.scale) + qt.q.zero_point, -128, 127)
                    renames[t] = self.dequantized_const(t, data.astype(np.int8), qt.q.scale,
                                                        np.int8(qt.q.zero_point), None)
                continue
            if t not in inputs and t not in produced:
                t = self.internal_to_onnx(t, produced)
                if t is None:
                    continue
            nodes, src, dst = self.qdq_pair(t, qt.q)
            renames[t] = dst
            if src != t:  # a graph output: its producer now writes the float source
                for n in order:
                    n.output[:] = [src if o == t else o for o in n.output]
            (pre if t in inputs else placed.setdefault(src, [])).extend(nodes)
        body: list[onnx.NodeProto] = []
        for n in order:
            n.input[:] = [renames.get(i, i) for i in n.input]
            body.append(n)
            for o in n.output:
                body += placed.get(o, [])
        nodes = self.head + pre + body
        used = {i for n in nodes for i in n.input}
        inits = [i for i in self.g.initializer if i.name in used]
        del self.g.node[:]
        self.g.node.extend(nodes)
        del self.g.initializer[:]
        self.g.initializer.extend(inits)
        del self.g.value_info[:]


def export_qdq(model_path: str | os.PathLike, qgraph: qir.QGraph, out_path: str | os.PathLike,
               ) -> Path:
    """Write `qgraph` (quantized from the float model at `model_path`) as a QDQ ONNX model."""
    from ..onnx_import import import_onnx, load_onnx
    from ..onnx_import.loader import opset_of

    path = str(model_path)
    model = load_onnx(path)
    attention = next((n for n in model.graph.node if n.op_type == "Attention"), None)
    if attention is not None:  # its Q.K^T scores and probabilities are no ONNX tensors
        raise MicroqError(f"{path}: node '{attention.name or 'Attention'}' (Attention): a QDQ "
                          "model cannot carry the int8 parameters of its internal scores and "
                          "probabilities (they are not tensors of the graph); compile the float "
                          "model directly with microq compile")
    if opset_of(model, path) < MIN_QDQ_OPSET:
        model = onnx.version_converter.convert_version(model, MIN_QDQ_OPSET)
    float_ir = import_onnx(path)
    w = _Writer(model, qgraph)
    ir_nodes = {n.name: n for n in float_ir.nodes}
    for qn in qgraph.nodes:
        if qn.kernel in ("conv2d", "depthwise_conv2d", "fully_connected"):
            irn = ir_nodes.get(qn.name)
            if irn is None:
                raise MicroqError(f"node '{qn.name}' is not in {path}; pass the model it was "
                                  "quantized from")
            w.weighted(qn, float_ir.tensors[irn.inputs[1]].const)
    w.finish()
    model.graph.name = model.graph.name or qgraph.name
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise MicroqError(f"internal error: the QDQ model does not validate ({e})") from None
    out = Path(out_path)
    if not out.resolve().parent.is_dir():
        raise MicroqError(f"{out}: folder {out.resolve().parent} does not exist")
    onnx.save(model, str(out))
    return out
