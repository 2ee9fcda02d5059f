"""ONNX frontend, step 1b: evaluate every node whose inputs are all constants (numpy evaluator)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

Attrs = dict[str, object]


def _axes(node_inputs: list[np.ndarray], attrs: Attrs, idx: int = 1) -> list[int] | None:
    if len(node_inputs) > idx and node_inputs[idx] is not None:
        return [int(a) for a in np.asarray(node_inputs[idx]).reshape(-1)]
    a = attrs.get("axes")
    return None if a is None else [int(v) for v in a]


def _unsqueeze(x: list, a: Attrs) -> np.ndarray:
    axes = _axes(x, a)
    rank = x[0].ndim + len(axes)
    out = x[0]
    for ax in sorted(v % rank for v in axes):
        out = np.expand_dims(out, ax)
    return out


def _squeeze(x: list, a: Attrs) -> np.ndarray:
    axes = _axes(x, a)
    if axes is None:
        return np.squeeze(x[0])
    return np.squeeze(x[0], axis=tuple(v % x[0].ndim for v in axes))


def _slice(x: list, a: Attrs) -> np.ndarray:
    data = x[0]
    if len(x) > 1:
        starts, ends = list(x[1]), list(x[2])
        axes = list(x[3]) if len(x) > 3 and x[3] is not None else list(range(len(starts)))
        steps = list(x[4]) if len(x) > 4 and x[4] is not None else [1] * len(starts)
    else:  # opset < 10 attributes
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    index = [slice(None)] * data.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[int(ax) % data.ndim] = slice(int(s), int(e), int(st))
    return data[tuple(index)]


def _reshape(x: list, a: Attrs) -> np.ndarray:
    shape = [int(v) for v in x[1]]
    if not a.get("allowzero", 0):
        shape = [x[0].shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return x[0].reshape(shape)


def _shape(x: list, a: Attrs) -> np.ndarray:
    dims = np.array(x[0].shape, dtype=np.int64)
    return dims[a.get("start", 0) : a.get("end", None)]


def _constant_of_shape(x: list, a: Attrs) -> np.ndarray:
    value = a.get("value")
    fill = numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
    return np.full([int(v) for v in x[0]], fill.reshape(-1)[0], dtype=fill.dtype)


def _reduce(fn: Callable) -> Callable:
    def run(x: list, a: Attrs) -> np.ndarray:
        axes = _axes(x, a)
        keep = bool(a.get("keepdims", 1))
        return fn(x[0], axis=None if not axes else tuple(axes), keepdims=keep)

    return run


def _gather(x: list, a: Attrs) -> np.ndarray:
    return np.take(x[0], x[1].astype(np.int64), axis=int(a.get("axis", 0)))


def _cast(x: list, a: Attrs) -> np.ndarray:
    return x[0].astype(helper.tensor_dtype_to_np_dtype(int(a["to"])))


def _div(x: list, a: Attrs) -> np.ndarray:
    if x[0].dtype.kind in "iu":  # ONNX integer Div truncates toward zero
        return (np.trunc(x[0] / x[1])).astype(x[0].dtype)
    return x[0] / x[1]


EVALUATORS: dict[str, Callable[[list, Attrs], np.ndarray]] = {
    "Identity": lambda x, a: x[0],
    "CastLike": lambda x, a: np.asarray(x[0]).astype(x[1].dtype),
    "Sum": lambda x, a: sum(x[1:], x[0]),
    "Shape": _shape,
    "Size": lambda x, a: np.array(x[0].size, np.int64),
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda x, a: np.concatenate(x, axis=int(a["axis"])),
    "Slice": _slice,
    "Cast": _cast,
    "Reshape": _reshape,
    "Flatten": lambda x, a: x[0].reshape(int(np.prod(x[0].shape[: a.get("axis", 1)])), -1),
    "ConstantOfShape": _constant_of_shape,
    "Range": lambda x, a: np.arange(x[0], x[1], x[2]).astype(x[0].dtype),
    "Add": lambda x, a: x[0] + x[1],
    "Sub": lambda x, a: x[0] - x[1],
    "Mul": lambda x, a: x[0] * x[1],
    "Div": _div,
    "Pow": lambda x, a: np.power(x[0], x[1]).astype(x[0].dtype),
    "Equal": lambda x, a: np.equal(x[0], x[1]),
    "Less": lambda x, a: np.less(x[0], x[1]),
    "Greater": lambda x, a: np.greater(x[0], x[1]),
    "Not": lambda x, a: np.logical_not(x[0]),
    "Where": lambda x, a: np.where(x[0], x[1], x[2]),
    "Expand": lambda x, a: x[0] * np.ones([int(v) for v in x[1]], dtype=x[0].dtype),
    "Transpose": lambda x, a: np.transpose(x[0], a.get("perm")),
    "ReduceProd": _reduce(np.prod),
    "ReduceSum": _reduce(np.sum),
    "ReduceMax": _reduce(np.max),
    "ReduceMin": _reduce(np.min),
    "Floor": lambda x, a: np.floor(x[0]),
    "Ceil": lambda x, a: np.ceil(x[0]),
    "Sqrt": lambda x, a: np.sqrt(x[0]),
    "Reciprocal": lambda x, a: (1 / x[0]).astype(x[0].dtype),
    "Neg": lambda x, a: -x[0],
    "Abs": lambda x, a: np.abs(x[0]),
    "Min": lambda x, a: np.minimum.reduce(x),
    "Max": lambda x, a: np.maximum.reduce(x),
}


def _eval(node: onnx.NodeProto, inputs: list, opset: int) -> list[np.ndarray]:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Constant":
        return [_constant(node)]
    fn = EVALUATORS.get(node.op_type)
    if fn is not None:
        return [np.asarray(fn(inputs, attrs))]
    # Rare ops in shape subgraphs: let ONNX's own reference evaluator compute them.
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" for i in range(len(inputs))]
    sub = helper.make_node(node.op_type, names, list(node.output), domain=node.domain)
    sub.attribute.extend(node.attribute)
    graph = helper.make_graph(
        [sub],
        "fold",
        [helper.make_tensor_value_info(n, 0, None) for n in names],
        [helper.make_tensor_value_info(o, 0, None) for o in node.output],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return list(ReferenceEvaluator(model).run(None, dict(zip(names, inputs))))


def _constant(node: onnx.NodeProto) -> np.ndarray:
    attr = node.attribute[0]
    value = helper.get_attribute_value(attr)
    if attr.name == "value":
        return numpy_helper.to_array(value)
    if attr.name in ("value_float", "value_int", "value_string"):
        return np.array(value, dtype=np.float32 if attr.name == "value_float" else None)
    return np.array(value, dtype=np.float32 if attr.name == "value_floats" else np.int64)


def fold_constants(
    model: onnx.ModelProto, path: str, shapes: dict[str, tuple[int, ...]]
) -> tuple[dict[str, np.ndarray], list[onnx.NodeProto]]:
    """Split the graph into constants (by name) and the nodes that still need activations."""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    g = model.graph
    elem = {vi.name: vi.type.tensor_type.elem_type for vi in list(g.input) + list(g.value_info)
            + list(g.output) if vi.type.HasField("tensor_type")}
    outputs = {o.name for o in model.graph.output}
    remaining: list[onnx.NodeProto] = []
    for node in model.graph.node:
        ins = [i for i in node.input if i]
        if node.op_type == "Shape" and ins[0] not in consts and ins[0] in shapes:
            values = [np.broadcast_to(np.uint8(0), shapes[ins[0]])]  # only the shape matters
        elif (node.op_type == "CastLike" and ins[0] in consts and ins[1] not in consts
              and elem.get(ins[1], 0) != 0):
            # a constant cast like an activation (ONNX function bodies: CastLike(0.5, X)): the
            # type is known, the value is not needed
            dtype = helper.tensor_dtype_to_np_dtype(elem[ins[1]])
            consts[node.output[0]] = np.asarray(consts[ins[0]]).astype(dtype)
            continue
        elif node.op_type in ("Dropout",) or not all(i in consts for i in ins):
            remaining.append(node)
            continue
        elif any(o in outputs for o in node.output):
            remaining.append(node)  # a constant graph output stays a node: nothing to run
            continue
        else:
            values = [consts[i] if i else None for i in node.input]
        try:
            results = _eval(node, values, opset)
        except Exception:
            remaining.append(node)  # cannot fold: the converter will report it if unsupported
            continue
        for name, value in zip(node.output, results):
            consts[name] = np.asarray(value)
    return consts, remaining
