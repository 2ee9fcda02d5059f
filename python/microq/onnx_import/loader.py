"""ONNX frontend, step 1: load and validate a model, fix the batch, infer shapes, fold constants."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import onnx
import onnx.inliner
from onnx import numpy_helper, shape_inference

from microq.errors import MicroqError

MIN_OPSET, MAX_OPSET = 11, 21


@dataclass
class Prepared:
    """A model ready for conversion: remaining nodes, folded constants and static logical shapes."""

    model: onnx.ModelProto
    path: str
    opset: int
    consts: dict[str, np.ndarray]  # initializers, Constant nodes and folded subgraphs
    shapes: dict[str, tuple[int, ...]]  # logical (ONNX) shape of every known tensor
    nodes: list[onnx.NodeProto]  # nodes left after folding, topologically sorted
    # the batch size the inputs were exported with when static (> 0), 0 when dynamic
    exported_batch: int = 0


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Read an ONNX file, raising a one-line MicroqError for anything that is not a usable model."""
    path = str(path)
    if not os.path.isfile(path):
        raise MicroqError(f"{path}: file not found")
    try:
        model = onnx.load(path)
    except Exception as exc:  # protobuf raises several unrelated types
        raise MicroqError(
            f"{path}: not a valid ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "export it again with torch.onnx.export or tf2onnx"
        ) from None
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise MicroqError(
            f"{path}: not a valid ONNX model (no graph); export it again with torch.onnx.export "
            "or tf2onnx"
        )
    opset_of(model, path)
    return model


def opset_of(model: onnx.ModelProto, path: str) -> int:
    """The default-domain opset; outside 11..21 is an error (older) or a warning (newer)."""
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise MicroqError(f"{path}: the model declares no ai.onnx opset")
    opset = versions[0]
    if opset < MIN_OPSET:
        raise MicroqError(
            f"{path}: opset {opset} is too old (microq supports {MIN_OPSET}..{MAX_OPSET}); "
            "convert it with onnx.version_converter.convert_version(model, 13)"
        )
    if opset > MAX_OPSET:
        warnings.warn(f"{path}: opset {opset} is newer than {MAX_OPSET}, the newest tested")
    return opset


def prepare(model: onnx.ModelProto, path: str) -> Prepared:
    """Inline functions, fix the batch to 1, infer shapes and fold every constant subgraph."""
    from microq.onnx_import.fold import fold_constants

    opset = opset_of(model, path)
    model = onnx.ModelProto.FromString(model.SerializeToString())  # never mutate the caller's
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    exported = fix_batch(model, path)
    model = infer(model, path)
    if exported > 1 and unbatch_reshapes(model, exported):
        model = infer(model, path)
    check_finite(model, path)
    consts, nodes = fold_constants(model, path, static_shapes(model))
    # Re-infer on the folded graph: Reshape targets built by shape subgraphs are now constants.
    rebuilt = infer(rebuild(model, consts, nodes), path)
    # A Shape node downstream of such a Reshape (TorchScript's x.view(x.size(0), -1) after a
    # flatten(2)) only gets a static input shape now: fold again until nothing more folds.
    while True:
        more, left = fold_constants(rebuilt, path, static_shapes(rebuilt))
        if len(left) == len(nodes):
            break
        consts.update(more)
        nodes = left
        rebuilt = infer(rebuild(rebuilt, consts, nodes), path)
    nodes = live_nodes(nodes, {o.name for o in rebuilt.graph.output})
    return Prepared(rebuilt, path, opset, consts, static_shapes(rebuilt), nodes, exported)


def live_nodes(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes whose results reach a graph output (dead branches left by folding or by a
    function body's unused statistics outputs are dropped)."""
    needed, keep = set(outputs), []
    for n in reversed(nodes):
        if any(o and o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    return keep[::-1]


def fix_batch(model: onnx.ModelProto, path: str) -> None:
    """Set dim 0 (the batch) of every graph input to 1; any other symbolic dim is an error
    naming the input. Nothing else is touched: shape inference computes every other shape,
    graph outputs included (their dim 0 need not be the batch: after a Transpose or Squeeze
    it is data)."""
    inits = {i.name for i in model.graph.initializer}
    exported: set[int] = set()
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            if i == 0:
                exported.add(d.dim_value if d.HasField("dim_value") else 0)
                d.ClearField("dim_param")
                d.dim_value = 1
            elif not d.HasField("dim_value") or d.dim_value <= 0:
                name = d.dim_param or "?"
                raise MicroqError(
                    f"{path}: input '{inp.name}' has a dynamic dimension {i} ('{name}'); only the "
                    "batch (dim 0) may be dynamic: export with a fixed input size"
                )
    # Stale shapes of intermediate tensors and outputs may still carry the symbolic batch (or an
    # exporter's wrong guess): infer them all again from the inputs.
    del model.graph.value_info[:]
    for out in model.graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")
    return exported.pop() if len(exported) == 1 else 0


def unbatch_reshapes(model: onnx.ModelProto, batch: int) -> bool:
    """A model exported with a static batch B > 1 bakes B into its Reshape constants ([B, -1],
    [B, 12]): where such a constant's leading B is what makes it disagree with the batch-1
    input (B times the elements, or a -1 that does not resolve), it becomes 1. True if any did."""
    g = model.graph
    shapes = static_shapes(model)
    inits = {i.name: i for i in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant" and n.attribute
              and n.attribute[0].name == "value"}
    changed = False
    for node in g.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[0] not in shapes:
            continue
        src = inits.get(node.input[1])
        tensor = src if src is not None else (
            consts[node.input[1]].attribute[0].t if node.input[1] in consts else None)
        if tensor is None:
            continue
        target = numpy_helper.to_array(tensor).astype(np.int64)
        if target.ndim != 1 or not len(target) or int(target[0]) != batch:
            continue
        n_in = int(np.prod(shapes[node.input[0]]))
        rest = [int(d) for d in target[1:]]
        known = int(np.prod([d for d in rest if d > 0])) * batch
        if -1 in rest:
            mismatch = n_in % known != 0 and n_in % (known // batch) == 0
        else:
            mismatch = known == batch * n_in
        if not mismatch or 0 in rest:
            continue
        fixed = numpy_helper.from_array(np.array([1] + rest, np.int64), tensor.name)
        tensor.CopyFrom(fixed)
        changed = True
    if changed:
        del g.value_info[:]
        for out in g.output:
            out.type.tensor_type.ClearField("shape")
    return changed


def infer(model: onnx.ModelProto, path: str) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:
        raise MicroqError(
            f"{path}: ONNX shape inference failed ({str(exc).splitlines()[0]}); check the model "
            "with onnx.checker.check_model"
        ) from None


def static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Fully known shapes of graph inputs, outputs and value_info (initializers included)."""
    shapes: dict[str, tuple[int, ...]] = {}
    g = model.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if all(d >= 0 for d in dims):
            shapes[vi.name] = tuple(dims)
    for init in g.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def check_finite(model: onnx.ModelProto, path: str) -> None:
    """NaN/Inf in a weight used by the graph would poison every scale computed from it."""
    inits = {i.name: i for i in model.graph.initializer}
    checked: set[str] = set()
    for node in model.graph.node:
        for name in node.input:
            if name not in inits or name in checked:
                continue
            checked.add(name)
            arr = numpy_helper.to_array(inits[name])
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise MicroqError(
                    f"{path}: initializer '{name}' used by node '{node.name or node.op_type}' "
                    f"({node.op_type}) contains NaN or Inf"
                )


def rebuild(
    model: onnx.ModelProto, consts: dict[str, np.ndarray], nodes: list[onnx.NodeProto]
) -> onnx.ModelProto:
    """The same model with only the remaining nodes and the constants they use as initializers."""
    used = {i for n in nodes for i in n.input} | {o.name for o in model.graph.output}
    graph = onnx.helper.make_graph(
        nodes,
        model.graph.name,
        [i for i in model.graph.input if i.name not in consts],
        [o for o in model.graph.output],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items() if k in used],
    )
    out = onnx.helper.make_model(graph, opset_imports=model.opset_import)
    out.ir_version = model.ir_version
    return out
