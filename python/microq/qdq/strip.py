"""QDQ ONNX in, step 1: remove QuantizeLinear/DequantizeLinear, keeping what they say.

The float model left behind (weights dequantized exactly, in float32) goes through the ordinary
ONNX importer; the activation parameters, the int8 weights and the int32 biases found here then
replace calibration and weight quantization (qdq.importer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import MicroqError
from ..qir import QParams

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
WEIGHT_INPUT = {"Conv": 1, "Gemm": 1, "MatMul": 1}


@dataclass
class ConstQ:
    """A constant stored quantized: integer data, scale and zero point (per `axis` if 1-D)."""

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None  # None: per tensor


@dataclass
class Stripped:
    model: onnx.ModelProto  # float model, no Q/DQ nodes
    acts: dict[str, QParams] = field(default_factory=dict)  # activation tensor -> int8 params
    consts: dict[str, ConstQ] = field(default_factory=dict)  # dequantized constant -> its ints
    node_inputs: dict[str, list[str]] = field(default_factory=dict)  # node name -> inputs
    node_ops: dict[str, str] = field(default_factory=dict)  # node name -> op_type
    node_attrs: dict[str, dict] = field(default_factory=dict)  # node name -> attributes


def is_qdq(model: onnx.ModelProto) -> bool:
    return any(n.op_type in QDQ_OPS for n in model.graph.node)


def _int8_params(tensor: str, scale: np.ndarray, zp: np.ndarray) -> QParams:
    """Per-tensor int8 activation parameters; uint8 maps exactly to int8 by zp - 128."""
    if scale.size != 1:
        raise MicroqError(f"tensor '{tensor}': per-channel activation quantization ({scale.size} "
                          "scales); microq's kernels take one scale per activation tensor")
    if zp.dtype == np.uint8:
        z = int(zp.reshape(-1)[0]) - 128
    elif zp.dtype == np.int8:
        z = int(zp.reshape(-1)[0])
    else:
        raise MicroqError(f"tensor '{tensor}': {zp.dtype} activation quantization; microq "
                          "supports int8 (or uint8) activations")
    s = float(scale.reshape(-1)[0])
    if not s > 0:
        raise MicroqError(f"tensor '{tensor}': quantization scale {s} is not positive")
    return QParams(s, z)


def _broadcast(v: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    if axis is None or v.size == 1:
        return v.reshape(())
    shape = [1] * ndim
    shape[axis] = v.size
    return v.reshape(shape)


def strip_qdq(model: onnx.ModelProto, path: str = "<model>") -> Stripped:
    """The float model without Q/DQ nodes, plus the quantization they carried."""
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    out = Stripped(model)
    quantized: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}  # Q output -> (x, s, zp)
    alias: dict[str, str] = {}  # DQ output -> the float activation it stands for
    floats: dict[str, np.ndarray] = {}  # dequantized constants
    kept: list[onnx.NodeProto] = []
    for n in g.node:
        if n.op_type not in QDQ_OPS:
            kept.append(n)
            continue
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        if len(n.input) < 2 or n.input[1] not in consts:
            raise MicroqError(f"{path}: node '{n.name}' ({n.op_type}) has a non-constant scale")
        scale = consts[n.input[1]].astype(np.float32)
        # an absent zero point means uint8 zero (ONNX)
        zp = consts[n.input[2]] if len(n.input) > 2 and n.input[2] else np.zeros((), np.uint8)
        x = n.input[0]
        if n.op_type == "QuantizeLinear":
            if x in consts or x in floats:  # a float constant stored through Q/DQ
                src = consts.get(x, floats.get(x))
                ax = a.get("axis", 1) % src.ndim if scale.size > 1 else None
                info = np.iinfo(zp.dtype)
                q = np.rint(src / _broadcast(scale, ax, src.ndim)) + _broadcast(zp, ax, src.ndim)
                consts[n.output[0]] = np.clip(q, info.min, info.max).astype(zp.dtype)
                continue
            quantized[n.output[0]] = (x, scale, zp)
            continue
        if x in consts:  # DequantizeLinear of stored integers: a weight, bias or constant
            q = consts[x]
            ax = a.get("axis", 1) % max(q.ndim, 1) if scale.size > 1 else None
            zpv = zp.astype(np.int64)
            f = (q.astype(np.int64) - _broadcast(zpv, ax, q.ndim)).astype(np.float32)
            floats[n.output[0]] = (f * _broadcast(scale, ax, q.ndim)).astype(np.float32)
            out.consts[n.output[0]] = ConstQ(q, scale.reshape(-1), zp.reshape(-1), ax)
            continue
        if x not in quantized:
            raise MicroqError(f"{path}: DequantizeLinear '{n.name}' reads '{x}', which is neither "
                              "a constant nor a QuantizeLinear output")
        src, qs, qz = quantized[x]
        if not (np.array_equal(qs, scale) and np.array_equal(qz, zp)):
            raise MicroqError(f"tensor '{src}': its QuantizeLinear and DequantizeLinear use "
                              "different scales or zero points")
        src = alias.get(src, src)
        p = _int8_params(src, scale, zp)
        if out.acts.setdefault(src, p) != p:
            raise MicroqError(f"tensor '{src}' is quantized twice with different parameters "
                              f"({out.acts[src]} and {p}); microq keeps one per tensor")
        alias[n.output[0]] = src
    _rebuild(out, g, kept, floats, alias, path)
    return out


def _rebuild(out: Stripped, g: onnx.GraphProto, kept: list, floats: dict, alias: dict,
             path: str) -> None:
    outputs = {o.name for o in g.output}
    # A graph output produced by a DequantizeLinear keeps its name: rename what it stands for.
    rename = {src: o for o, src in alias.items() if o in outputs}
    for o, src in list(alias.items()):
        alias[o] = rename.get(src, src)
    out.acts = {rename.get(k, k): v for k, v in out.acts.items()}
    names: set[str] = set()
    nodes = []
    for i, n in enumerate(kept):
        m = onnx.NodeProto()
        m.CopyFrom(n)
        if not m.name or m.name in names:
            m.name = f"{m.name or m.op_type}__{i}"
        names.add(m.name)
        for k, name in enumerate(m.input):
            m.input[k] = alias.get(name, name)
        for k, name in enumerate(m.output):
            m.output[k] = rename.get(name, name)
        out.node_inputs[m.name] = list(m.input)
        out.node_ops[m.name] = m.op_type
        out.node_attrs[m.name] = {a.name: helper.get_attribute_value(a) for a in m.attribute}
        nodes.append(m)
    used = {i for n in nodes for i in n.input}
    inits = [numpy_helper.from_array(v, k) for k, v in floats.items() if k in used]
    for init in g.initializer:
        if init.name in used and init.name not in floats:
            inits.append(init)
    for k in out.consts:
        if k in used and any(n.op_type in WEIGHT_INPUT for n in nodes if k in n.input[1:2]):
            _check_weight(k, out.consts[k])
    graph = helper.make_graph(nodes, g.name, list(g.input), list(g.output), inits)
    for o in graph.output:
        o.type.tensor_type.elem_type = TensorProto.FLOAT
    m = helper.make_model(graph, opset_imports=out.model.opset_import)
    m.ir_version = out.model.ir_version
    out.model = m


def _check_weight(name: str, c: ConstQ) -> None:
    if c.q.dtype != np.int8:
        raise MicroqError(f"weight '{name}': {c.q.dtype} weights; microq's kernels take int8 "
                          "weights (quantize with weight_type=QInt8)")
    if np.any(c.zero_point != 0):
        raise MicroqError(f"weight '{name}': asymmetric weight zero point "
                          f"{c.zero_point.tolist()[:4]}; microq's kernels need symmetric int8 "
                          "weights (zero point 0)")
