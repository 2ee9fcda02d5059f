"""ONNX frontend, step 2: convert the prepared ONNX graph into the float IR (physical NHWC)."""

from __future__ import annotations

from typing import Callable

import onnx

from microq import ir
from microq.onnx_import import ops_attention as att
from microq.onnx_import import ops_conv3d as c3
from microq.onnx_import import ops_convtranspose as ct
from microq.onnx_import import ops_expand as ex
from microq.onnx_import import ops_resize as rs
from microq.onnx_import import ops_minmax as mm
from microq.onnx_import import ops_norm as nm
from microq.onnx_import import ops_recurrent as rnn
from microq.onnx_import import ops_spatial as sp
from microq.onnx_import import ops_tensor as tn
from microq.onnx_import import ops_unbatched as ub
from microq.onnx_import.context import Ctx, LayoutError, Unsupported
from microq.onnx_import.layout import NHWC, NLC, Value, identity, permute
from microq.onnx_import.loader import Prepared
from microq.onnx_import.patterns import fuse_patterns
from microq.onnx_import.patterns_prelu import fuse_prelu_body

# One explicit registry: ONNX op_type -> converter. Adding an op means adding a line here.
CONVERTERS: dict[str, Callable[[Ctx], None]] = {
    "Conv": c3.conv,  # Conv3D there, 1-D / 2-D in sp.conv
    "MaxPool": sp.pool,
    "AveragePool": sp.pool,
    "GlobalAveragePool": sp.global_pool,
    "GlobalMaxPool": sp.global_pool,
    "ReduceMean": ub.reduce_mean,  # att.reduce_mean unless batch-less
    "Gemm": sp.gemm,
    "MatMul": ub.matmul,  # att.matmul unless batch-less
    "BatchNormalization": sp.batch_norm,
    "Relu": tn.relu,
    "Abs": tn.abs_,
    "Clip": tn.clip,
    "LeakyRelu": tn.simple_activation,
    "Sigmoid": tn.simple_activation,
    "Tanh": tn.simple_activation,
    "HardSigmoid": tn.simple_activation,
    "HardSwish": tn.simple_activation,
    "Elu": tn.simple_activation,
    "Softplus": tn.simple_activation,
    "Mish": tn.simple_activation,
    "Gelu": tn.simple_activation,
    "Add": tn.binary,
    "Sub": tn.binary,
    "Mul": tn.binary,
    "Div": tn.binary,
    "Concat": tn.concat,
    "Expand": ex.expand,  # a Reshape + Concats of copies
    "Reshape": tn.reshape,
    "Flatten": tn.reshape,
    "Squeeze": tn.reshape,
    "Unsqueeze": tn.reshape,
    "Transpose": tn.transpose,
    "Softmax": tn.softmax,
    "MaskedSoftmax": att.masked_softmax,  # a Softmax with a constant mask (patterns.py)
    "Attention": att.attention,  # lowered by patterns.expand_attention; refusals here
    "Pad": tn.pad,
    "Identity": tn.passthrough,
    "Dropout": tn.passthrough,
    "Cast": tn.passthrough,
    "LayerNormalization": ub.layer_norm,  # att.layer_norm unless batch-less
    "Split": att.split,
    "Slice": att.slice_,
    "Gather": att.gather,
    "Resize": rs.resize,
    "ConvTranspose": ct.conv_transpose,
    "InstanceNormalization": nm.instance_norm,
    "GroupNormalization": nm.group_norm,
    "PRelu": mm.prelu,
    "Max": mm.max_min,
    "Min": mm.max_min,
    "ReduceMax": mm.reduce_extreme,
    "ReduceMin": mm.reduce_extreme,
    "ArgMax": mm.argmax,
    "LSTM": rnn.recurrent,
    "GRU": rnn.recurrent,
}


def onnx_node_names(nodes: list[onnx.NodeProto]) -> list[str]:
    """Unique, non-empty ONNX node names (op_type + index when empty or repeated)."""
    seen: set[str] = set()
    names = []
    for i, n in enumerate(nodes):
        name = n.name or f"{n.op_type}{i}"
        while name in seen:
            name = f"{name}_{i}"
        seen.add(name)
        names.append(name)
    return names


def _input_perm(prep: Prepared, name: str, rank: int) -> tuple[int, ...]:
    if rank == 4:
        return NHWC
    if rank == 3:  # a Conv1D / pool1D input: [N, C, L] is stored [N, L, C]
        for n in prep.nodes:
            if name == (n.input[0] if n.input else "") and n.op_type in CONV1D_CANDIDATES:
                return NLC
    if rank == 5:  # a Conv3D input: [N, C, D, H, W] is stored NDHWC
        for n in prep.nodes:
            if name == (n.input[0] if n.input else "") and n.op_type == "Conv":
                return c3.NDHWC
    return identity(rank)


CONV1D_CANDIDATES = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool",
                     "GlobalMaxPool", "InstanceNormalization", "GroupNormalization")


def convert(prep: Prepared) -> tuple[ir.Graph, list[tuple[str, str, str]]]:
    """The IR graph plus every unsupported (node, op_type, reason); never raises for those."""
    cx = Ctx(prep)
    g = prep.model.graph
    inputs, input_perm, logical_shapes = [], {}, {}
    for inp in g.input:
        if inp.name in prep.consts:
            continue
        shape = prep.shapes[inp.name]
        if inp.name in prep.unbatched:  # a static dim 0 > 1: data, no batch axis (fix_batch)
            perm = identity(len(shape))  # kept as given; the sample axis is a leading 1
            cx.b.activation(inp.name, (1,) + tuple(shape))
            cx.values[inp.name] = Value(inp.name, perm, True)
            cx.batch[inp.name] = None
        else:
            perm = _input_perm(prep, inp.name, len(shape))
            cx.b.activation(inp.name, permute(shape, perm))
            cx.values[inp.name] = Value(inp.name, perm)
            cx.batch[inp.name] = 0  # loader.fix_batch made dim 0 the batch, of size 1
        inputs.append(inp.name)
        logical_shapes[inp.name] = shape
        if perm != identity(len(shape)):
            input_perm[inp.name] = perm

    problems: list[tuple[str, str, str]] = []
    named = list(zip(prep.nodes, onnx_node_names(prep.nodes)))
    poisoned: set[str] = set()  # outputs of unsupported nodes and of everything after them
    named, cx.merged = fuse_patterns(named, prep.consts, prep.shapes, {o.name for o in g.output},
                                     prep.opset)
    named, more = fuse_prelu_body(named, prep.consts, {o.name for o in g.output})
    for name, srcs in more.items():  # PRelu's function body (patterns_prelu)
        cx.merged[name] = [s for src in srcs for s in cx.merged.pop(src, [src])]
    for node, name in named:
        cx.node, cx.name = node, name
        fn = CONVERTERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        try:
            if fn is None:
                raise Unsupported(f"op {node.domain + '.' if node.domain else ''}"
                                  f"{node.op_type} is not supported")
            if ub.needs_per_image(cx):  # a static N > 1 of images is data: one at a time
                ub.per_image(cx, fn)
            else:
                fn(cx)
            _default_batch(cx, node)
        except (Unsupported, LayoutError) as exc:
            problems.append((name, node.op_type, str(exc)))
            _poison(cx, node)
            poisoned.update(node.output)
        except Exception as exc:  # noqa: BLE001 - report it with the others, never a traceback
            if not any(i in poisoned for i in node.input):
                why = f"cannot convert ({type(exc).__name__}: {exc})"
                problems.append((name, node.op_type, why))
            _poison(cx, node)
            poisoned.update(node.output)
        if any(i in poisoned for i in node.input):
            poisoned.update(node.output)

    outputs = []
    batchless = bool(prep.unbatched) and set(inputs) <= set(prep.unbatched)
    for out in g.output:
        v = cx.values.get(out.name)
        if v is None:  # never silently dropped: a folder with NUM_OUTPUTS 0 does not build
            why = ("it is a constant (initializer), not computed from the inputs: invalid for "
                   "microq" if out.name in prep.consts else
                   "it is produced by no node and is not a graph input: the model is invalid")
            problems.append((out.name, "graph output",
                             f"{why} (remove it from the graph outputs)"))
            continue
        logical = cx.shape(out.name)
        cx.name = out.name
        v, logical_shapes[out.name] = _output_layout(cx, v, logical, cx.batch.get(out.name))
        if batchless and v.hidden:  # no batch anywhere: the output's shape is the ONNX one
            logical_shapes[out.name] = tuple(logical)
        if v.name != out.name:
            _name_output(cx, v.name, out.name, inputs + outputs)
        outputs.append(out.name)
    graph = ir.Graph(g.name or "model", cx.b.tensors, cx.b.nodes, inputs, outputs, input_perm,
                     logical_shapes, prep.path)
    return graph, problems


def _output_layout(cx: Ctx, v: Value, logical: tuple[int, ...], batch: int | None
                   ) -> tuple[Value, tuple[int, ...]]:
    """A graph output in row-major order with its batch first, and the shape users see.

    The shape is the ONNX one when its batch is axis 0 (always so for the usual models); an
    output whose batch sits elsewhere is given with that size-1 axis moved to the front, and
    one whose batch a Reshape merged away gets a leading batch axis of 1: the same bytes, so
    every output is (N, ...) for N samples."""
    if not logical or len(v.perm) != len(logical):  # a scalar, or an unsupported node's output
        return v, tuple(logical)
    if batch is None and logical[0] == 1:
        batch = 0
    if batch is not None:
        v = cx.b.rehome(v, logical, batch, [])
    v = cx.b.to_row_major(v, logical, [])
    if v.hidden:
        return v, (1,) + tuple(logical)
    return v, permute(logical, v.perm)


def _default_batch(cx: Ctx, node: onnx.NodeProto) -> None:
    """Outputs a converter gave no batch axis keep input 0's when the rank is the same."""
    src = cx.batch.get(node.input[0]) if node.input else None
    merged = cx.batch_merged.get(node.input[0]) if node.input else None
    for out in node.output:
        if out and out not in cx.batch and out in cx.values:
            same = len(cx.shape(out)) == len(cx.shape(node.input[0]))
            cx.batch[out] = src if same else None
            if same and merged is not None:
                cx.batch_merged[out] = merged


def _name_output(cx: Ctx, current: str, wanted: str, taken: list[str]) -> None:
    """Make the graph output tensor carry its ONNX name (rename, or copy via a Reshape).

    `taken`: graph inputs and outputs already named, which must keep their names."""
    if wanted in cx.b.tensors:  # its physical-layout version: free the name for the output
        _rename(cx, wanted, cx.b.tensor_name(f"{wanted}__phys"))
    produced = any(current in n.outputs for n in cx.b.nodes)
    if produced and current not in taken:
        _rename(cx, current, wanted)
        return
    shape = cx.b.shape(current)
    cx.b.add("Reshape", [current], wanted, shape, ir.ReshapeAttrs(shape), f"{wanted}__copy")


def _rename(cx: Ctx, old: str, new: str) -> None:
    """Rename an IR tensor and every ONNX value mapped to it: a later graph output (or any
    reader) of the old name must keep seeing the same data in the same layout."""
    cx.b.rename(old, new)
    for k, v in cx.values.items():
        if v.name == old:
            cx.values[k] = Value(new, v.perm)


def _poison(cx: Ctx, node: onnx.NodeProto) -> None:
    """Give an unsupported node's outputs placeholder tensors so conversion can go on."""
    for out in node.output:
        if not out or out in cx.values:
            continue
        shape = cx.prep.shapes.get(out, ())
        cx.values[out] = Value(cx.b.activation(out, shape), identity(len(shape)))
