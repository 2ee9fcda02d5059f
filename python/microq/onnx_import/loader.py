"""ONNX frontend, step 1: load and validate a model, fix the batch, infer shapes, fold constants."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx.inliner
from onnx import numpy_helper, shape_inference

from microq.errors import MicroqError

MIN_OPSET, MAX_OPSET = 11, 24  # 22-24: the ONNX node tests and the Attention fixtures


@dataclass
class Prepared:
    """A model ready for conversion: remaining nodes, folded constants and static logical shapes."""

    model: onnx.ModelProto
    path: str
    opset: int
    consts: dict[str, np.ndarray]  # initializers, Constant nodes and folded subgraphs
    shapes: dict[str, tuple[int, ...]]  # logical (ONNX) shape of every known tensor
    nodes: list[onnx.NodeProto]  # nodes left after folding, topologically sorted
    # the batch size the inputs were exported with: 1 when static, 0 when dynamic, N for a
    # static N > 1 read as the batch (static_batches)
    exported_batch: int = 0
    # graph inputs without a batch axis (a static dim 0 > 1 is data): name -> that dim 0
    unbatched: dict[str, int] = field(default_factory=dict)
    # graph inputs whose static dim 0 > 1 was read as the batch (static_batches): name -> N
    static_batch: dict[str, int] = field(default_factory=dict)


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
    """The default-domain opset; outside MIN_OPSET..MAX_OPSET (11..24) is an error (older) or a warning (newer)."""
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


def prepare(model: onnx.ModelProto, path: str, static_batch: bool = True) -> Prepared:
    """Inline functions, fix the batch to 1, infer shapes and fold every constant subgraph.
    static_batch=False reads every static dim 0 > 1 as data (static_batches skipped)."""
    from microq.onnx_import.fold import fold_constants

    opset = opset_of(model, path)
    model = onnx.ModelProto.FromString(model.SerializeToString())  # never mutate the caller's
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    check_tensors(model, path)
    check_arity(model, path, opset)
    batched, reshapes = static_batches(model) if static_batch else ({}, set())
    exported, unbatched = fix_batch(model, path, batched)
    if exported > 1:  # the static batch baked into Reshape constants is the batch too
        unbatch_reshapes(model, exported, reshapes)
    model = infer(model, path)
    limit = size_limit(model)
    check_sizes(model, path, static_shapes(model), limit)
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
    check_sizes(rebuilt, path, static_shapes(rebuilt), limit)
    outputs = {o.name for o in rebuilt.graph.output}
    for node in nodes:
        ins = [i for i in node.input if i]
        if ins and all(i in consts for i in ins) and outputs & set(node.output):
            raise MicroqError(
                f"{path}: graph output '{sorted(outputs & set(node.output))[0]}' of "
                f"{_node_label(node)} is a constant (it depends on no graph input); remove it "
                "from the graph outputs"
            )
    nodes = live_nodes(nodes, outputs)
    return Prepared(rebuilt, path, opset, consts, static_shapes(rebuilt), nodes, exported,
                    unbatched, batched)


def live_nodes(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes whose results reach a graph output (dead branches left by folding or by a
    function body's unused statistics outputs are dropped)."""
    needed, keep = set(outputs), []
    for n in reversed(nodes):
        if any(o and o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    return keep[::-1]


# Constant element types microq reads (numpy_helper.to_array gives a plain numeric array).
_CONST_TYPES = {
    onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
    onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT16,
    onnx.TensorProto.UINT16, onnx.TensorProto.INT32, onnx.TensorProto.UINT32,
    onnx.TensorProto.INT64, onnx.TensorProto.UINT64, onnx.TensorProto.BOOL,
}
# No tensor of a model microq can put on a microcontroller comes near 2^24 elements (16 MiB as
# int8); the float calibration holds 32 samples of it, so 2^24 floats are already 2 GiB.
MAX_ELEMENTS = 2**24
# Nor does an activation exceed 256 x the model's largest input or weight (floor 2^20 elements):
# a shape beyond that comes from a corrupt attribute (pads=2000, a huge Resize scale, dims of
# 10^6) and is refused before anything is allocated for it.
REL_ELEMENTS, MIN_LIMIT = 256, 2**20


def _type_name(dt: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(dt)
    except ValueError:
        return "unknown"


def check_tensor(t: onnx.TensorProto, what: str, path: str) -> None:
    """A constant tensor's type, dims and stored data agree (before numpy ever reads it)."""
    dt = t.data_type
    if dt not in _CONST_TYPES:
        raise MicroqError(
            f"{path}: {what} has data_type {dt} ({_type_name(dt)}); microq reads float, "
            "integer and bool constants: fix or re-export the model"
        )
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise MicroqError(f"{path}: {what} has a negative dimension {dims}: the file is corrupt")
    want = int(np.prod(dims, dtype=object)) if dims else 1
    if want > 2**31:
        raise MicroqError(f"{path}: {what} declares {want} elements {dims}: the file is corrupt")
    if t.data_location == onnx.TensorProto.EXTERNAL:
        raise MicroqError(
            f"{path}: {what} keeps its data in an external file that was not loaded; keep the "
            "data file next to the model, or save the model with the data inside"
        )
    itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(dt)).itemsize
    if t.HasField("raw_data"):
        n_bytes = len(t.raw_data)
        have = n_bytes // itemsize if n_bytes % itemsize == 0 else None
        stored = f"{n_bytes} bytes of raw data"
    else:
        have = len(getattr(t, onnx.helper.tensor_dtype_to_field(dt)))
        stored = f"{have} values"
    if have != want:
        raise MicroqError(
            f"{path}: {what} declares shape {dims} ({want} x {_type_name(dt)}) but stores "
            f"{stored}: the file is corrupt, export it again"
        )


def check_names(model: onnx.ModelProto, path: str) -> None:
    """Every node and tensor name is text: protobuf hands a name that is not valid UTF-8 (a
    corrupt or crafted file) over as bytes."""
    g = model.graph
    named = [("node", n.name) for n in g.node] + [("node input", i) for n in g.node
                                                   for i in n.input]
    named += [("node output", o) for n in g.node for o in n.output]
    named += [("op type", n.op_type) for n in g.node] + [("domain", n.domain) for n in g.node]
    named += [("tensor", v.name) for v in list(g.input) + list(g.output) + list(g.value_info)]
    named += [("initializer", i.name) for i in g.initializer]
    for what, name in named:
        if not isinstance(name, str):
            raise MicroqError(f"{path}: a {what} name {bytes(name)[:40]!r} is not valid UTF-8: "
                              "the file is corrupt")
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise MicroqError(f"{path}: a {what} name {name[:40]!r} contains control "
                              "characters (newline, tab, ...): names must be printable text; "
                              "rename it in the exporter or with the onnx package")


def check_arity(model: onnx.ModelProto, path: str, opset: int) -> None:
    """Every standard node has as many inputs and outputs as its ONNX schema allows (a
    converter indexing input 1 of a one-input MatMul is never reached)."""
    from onnx import defs

    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            schema = defs.get_schema(node.op_type, opset, "")
        except defs.SchemaError:
            continue  # unknown op: the converter lists it as unsupported
        n_in, n_out = len(node.input), len(node.output)
        if not (schema.min_input <= n_in <= schema.max_input
                and schema.min_output <= n_out <= schema.max_output):
            raise MicroqError(
                f"{path}: {_node_label(node)} has {n_in} inputs and {n_out} outputs; ONNX "
                f"{node.op_type} takes {schema.min_input}..{schema.max_input} inputs and "
                f"{schema.min_output}..{schema.max_output} outputs: the model is invalid"
            )


def check_tensors(model: onnx.ModelProto, path: str) -> None:
    """Every initializer and Constant node value is readable as declared."""
    check_names(model, path)
    for init in model.graph.initializer:
        check_tensor(init, f"initializer '{init.name}'", path)
    for node in model.graph.node:
        if node.op_type != "Constant":
            continue
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                check_tensor(a.t, f"Constant node '{node.name or node.output[0]}'", path)
            elif a.type == onnx.AttributeProto.SPARSE_TENSOR:
                raise MicroqError(
                    f"{path}: Constant node '{node.name or node.output[0]}' holds a sparse "
                    "tensor; microq reads dense constants only"
                )


def size_limit(model: onnx.ModelProto) -> int:
    """The largest tensor (elements) microq accepts in this model: REL_ELEMENTS x its largest
    graph input or initializer, at least MIN_LIMIT, at most MAX_ELEMENTS."""
    sizes = [int(np.prod(i.dims, dtype=object)) if i.dims else 1 for i in model.graph.initializer]
    for vi in model.graph.input:
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim if d.HasField("dim_value")]
        sizes.append(int(np.prod(dims, dtype=object)) if dims else 1)
    return min(MAX_ELEMENTS, max(MIN_LIMIT, REL_ELEMENTS * max(sizes, default=1)))


def _node_label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} node '{node.name}'" if node.name else f"a {node.op_type} node"


def check_sizes(
    model: onnx.ModelProto, path: str, shapes: dict[str, tuple[int, ...]], limit: int
) -> None:
    """No tensor whose shape inference knows its size is absurdly large (see size_limit)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name for i in model.graph.initializer}
    for name, shape in shapes.items():
        n = int(np.prod(shape, dtype=object)) if shape else 1
        if n == 0 and name not in inits and name not in producer:
            raise MicroqError(f"{path}: graph input '{name}' has shape {list(shape)}, no "
                              "elements: export with a fixed, non-empty input size")
        if n > limit:
            node = producer.get(name)
            by = f" (output of {_node_label(node)})" if node is not None else ""
            raise MicroqError(
                f"{path}: tensor '{name}'{by} would have shape {list(shape)} = {n:,} elements, "
                f"more than the {limit:,} microq accepts for this model; check that node's "
                "attributes and inputs"
            )


def empty_outputs(prep: Prepared, names: list[str]) -> list[tuple[str, str, str]]:
    """(node, op_type, reason) for every remaining node (uniquely named by `names`) that
    computes a tensor with no elements (Slice start past the end, Split of size 0): the
    calibration and the kernels have nothing to work on."""
    problems = []
    for node, name in zip(prep.nodes, names):
        for o in node.output:
            shape = prep.shapes.get(o)
            if o and shape is not None and 0 in shape:
                problems.append((name, node.op_type, f"output '{o}' has shape {list(shape)}, "
                                 "no elements: the model is invalid"))
                break
    return problems


BATCH_RULE = ("a dynamic dim 0 is the batch (fixed to 1), a static dim 0 of 1 is the batch, a "
              "static dim 0 > 1 is data: the model has no batch axis there, unless it reaches "
              "a per-image op (Conv, pools, Instance/GroupNorm, Resize) at axis 0: then it is "
              "the batch (fixed to 1)")


def warn_static_batch(prep: Prepared) -> None:
    """The one-line warning for each input whose static dim 0 > 1 was read as the batch."""
    for name, n in prep.static_batch.items():
        warnings.warn(f"{prep.path}: input '{name}' was exported with a static batch of {n}: "
                      "microq compiles one sample; export with batch 1 or a dynamic batch to "
                      "silence this")


def unbatched_note(prep: Prepared) -> str:
    """Which inputs the batch rule read as having no batch axis, for messages."""
    return ", ".join(f"input '{k}' has a static dim 0 of {d}" for k, d in prep.unbatched.items())


def fix_batch(model: onnx.ModelProto, path: str, batched: dict[str, int] | None = None
              ) -> tuple[int, dict[str, int]]:
    """The batch rule (as onnx2c): a symbolic/dynamic dim 0 of a graph input is the batch and
    becomes 1; a static dim 0 of 1 is the batch; a static dim 0 > 1 is data, and that input is
    compiled with its shape exactly as given, without a batch axis (every axis is data). Any
    other symbolic dim is an error naming the input, except one dynamic dim after a static dim 0
    > 1 ([T, N, F], a sequence-first recurrent model's dynamic batch): it becomes 1 and the input
    stays batch-less (the sample is [T, 1, F]). Nothing else is touched: shape inference
    computes every other shape, graph outputs included. Returns (the exported batch: 1 when
    static, 0 when dynamic; {input without a batch axis: its dim 0}). `batched` (from
    static_batches) names inputs whose static dim 0 > 1 is nevertheless the batch: the
    graph applies a per-image op to it; they are fixed to 1 too and the exported batch is N."""
    batched = batched or {}
    inits = {i.name for i in model.graph.initializer}
    exported: set[int] = set()
    unbatched: dict[str, int] = {}
    seq_batch: dict[str, int] = {}  # input -> its dynamic batch axis > 0 (sequence first)
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            if i == 0 and inp.name in batched:
                exported.add(batched[inp.name])
                d.dim_value = 1
            elif i == 0 and d.HasField("dim_value") and d.dim_value != 1:
                unbatched[inp.name] = int(d.dim_value)  # > 1 (data); 0 is refused as empty
            elif i == 0:
                exported.add(d.dim_value if d.HasField("dim_value") else 0)
                d.ClearField("dim_param")
                d.dim_value = 1
            elif d.HasField("dim_value") and d.dim_value == 0:
                raise MicroqError(
                    f"{path}: input '{inp.name}' has a dimension {i} of size 0 (shape "
                    f"{[x.dim_value if x.HasField('dim_value') else x.dim_param for x in dims]})"
                    ": an empty tensor, nothing to compute; export with a non-empty input size")
            elif (not d.HasField("dim_value") or d.dim_value < 0) and inp.name in unbatched \
                    and not seq_batch.get(inp.name):
                # [T, N, F] as torch exports a sequence-first model (nn.LSTM/GRU with
                # batch_first=False) with a dynamic batch: N is the batch, fixed to 1; T (a static
                # dim 0 > 1) keeps the input batch-less, the sample is the whole [T, 1, F]
                seq_batch[inp.name] = i
                d.ClearField("dim_param")
                d.dim_value = 1
            elif not d.HasField("dim_value") or d.dim_value < 0:
                name = d.dim_param or "?"
                raise MicroqError(
                    f"{path}: input '{inp.name}' has a dynamic dimension {i} ('{name}'); only "
                    "dim 0 may be dynamic (it is then the batch): export with a fixed input size"
                )
    # Stale shapes of intermediate tensors and outputs may still carry the symbolic batch (or an
    # exporter's wrong guess): infer them all again from the inputs.
    del model.graph.value_info[:]
    for out in model.graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")
    return (exported.pop() if len(exported) == 1 else 0), unbatched


# Ops that compute one image (or one 1-D / 3-D signal) of an [N, C, ...] tensor at a time: an
# input whose static dim 0 > 1 reaches one of them in that position is a batch of images.
PER_IMAGE = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool",
             "GlobalMaxPool", "LpPool", "GlobalLpPool", "InstanceNormalization",
             "GroupNormalization", "Resize", "BatchNormalization")


def static_batches(model: onnx.ModelProto) -> tuple[dict[str, int], set[str]]:
    """Graph inputs with a static dim 0 = N > 1 that are a batch after all: the graph applies
    a per-image op (PER_IMAGE, on a rank >= 3 tensor) to a tensor whose axis 0 is that input's
    axis 0 (N there), e.g. torch.onnx.export(model, images[:8]). Axis 0 is followed from the
    input through every node whose output still has N at axis 0 (a Transpose that moves axis 0
    away, a Reshape or Concat that changes it, ends it). Returns ({input: N}, the outputs of the
    Reshapes that keep N at axis 0 downstream of such an input: their constant target's N is
    the batch too); every other static dim 0 > 1 stays data (the ONNX node tests' [2, 3, 4]
    with Softmax on axis 0)."""
    g = model.graph
    inits = {i.name for i in g.initializer}
    cands: dict[str, int] = {}
    for inp in g.input:
        dims = inp.type.tensor_type.shape.dim
        if inp.name in inits or not dims or not dims[0].HasField("dim_value"):
            continue
        if dims[0].dim_value > 1:
            cands[inp.name] = int(dims[0].dim_value)
    if not cands or not any(n.op_type in PER_IMAGE for n in g.node):
        return {}, set()
    try:
        shapes = static_shapes(shape_inference.infer_shapes(model, data_prop=True))
    except Exception:  # noqa: BLE001 - the real inference after fix_batch reports it
        return {}, set()
    found: dict[str, int] = {}
    reshapes: set[str] = set()
    for name, n in cands.items():
        reach, mine = {name}, set()
        for node in g.node:
            ins = [i for i in node.input if i in reach]
            if not ins:
                continue
            x = node.input[0] if node.input else ""
            if (node.op_type in PER_IMAGE and x in reach and len(shapes.get(x, ())) >= 3
                    and shapes[x][0] == n):
                found[name] = n
            if node.op_type in ("Shape", "Size"):  # [4] of a rank-4 shape is not the batch
                continue
            if node.op_type == "Transpose":
                perm = [a.ints for a in node.attribute if a.name == "perm"]
                if perm and list(perm[0])[:1] != [0]:
                    continue
            for o in node.output:
                if o and shapes.get(o, ())[:1] == (n,):
                    reach.add(o)
                    if node.op_type == "Reshape" and x in reach:
                        mine.add(o)
        if name in found:
            reshapes |= mine
    return found, reshapes


def unbatch_reshapes(model: onnx.ModelProto, batch: int, reshapes: set[str]) -> bool:
    """A model exported with a static batch B > 1 bakes B into its Reshape constants ([B, -1],
    [B, 12]): in the Reshapes `reshapes` (named by output; static_batches found B at axis 0 of
    their input and output) a constant target's leading B becomes 1. True if any did."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant" and n.attribute
              and n.attribute[0].name == "value"}
    changed = False
    for node in g.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.output[0] not in reshapes:
            continue
        src = inits.get(node.input[1])
        tensor = src if src is not None else (
            consts[node.input[1]].attribute[0].t if node.input[1] in consts else None)
        if tensor is None:
            continue
        target = numpy_helper.to_array(tensor).astype(np.int64)
        if target.ndim != 1 or not len(target) or int(target[0]) != batch:
            continue
        fixed = numpy_helper.from_array(np.concatenate([[1], target[1:]]).astype(np.int64),
                                        tensor.name)
        tensor.CopyFrom(fixed)
        changed = True
    if changed:
        del g.value_info[:]
        for out in g.output:
            out.type.tensor_type.ClearField("shape")
    return changed


# Ops whose output has its input's shape but that onnx's shape inference leaves untyped (function
# ops without an inference function): the typed output is filled in, then inference runs again.
SAME_SHAPE_UNINFERRED = ("GroupNormalization",)


def infer(model: onnx.ModelProto, path: str) -> onnx.ModelProto:
    try:
        model = shape_inference.infer_shapes(model, data_prop=True)
        for _ in range(len(model.graph.node)):
            typed = {vi.name: vi for vi in list(model.graph.input) + list(model.graph.value_info)
                     + list(model.graph.output) if vi.type.tensor_type.HasField("shape")}
            todo = [n for n in model.graph.node if n.op_type in SAME_SHAPE_UNINFERRED
                    and n.input and n.input[0] in typed and n.output[0] not in typed]
            if not todo:
                break
            for n in todo:
                vi = model.graph.value_info.add()
                vi.CopyFrom(typed[n.input[0]])
                vi.name = n.output[0]
            model = shape_inference.infer_shapes(model, data_prop=True)
        return model
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
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)) and not (
                    _mask_like(model, name, arr)):
                raise MicroqError(
                    f"{path}: initializer '{name}' used by node '{node.name or node.op_type}' "
                    f"({node.op_type}) contains NaN or Inf"
                )


def _mask_like(model: onnx.ModelProto, name: str, arr: np.ndarray) -> bool:
    """-inf (and no NaN / +inf) in a constant that every node uses as an attention mask: Add
    (before a Softmax), Where, or Attention's attn_mask. The importer turns those into keep
    masks; any -inf left in the float graph is refused there (quant.check_finite_weights)."""
    if np.isnan(arr).any() or (arr == np.inf).any():
        return False
    uses = [(n, i) for n in model.graph.node for i, x in enumerate(n.input) if x == name]
    return bool(uses) and all(n.op_type in ("Add", "Where") or (n.op_type == "Attention" and i == 3)
                              for n, i in uses)


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
