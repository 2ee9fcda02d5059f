"""TFLite flatbuffer reader: a .tflite file -> plain tensors and operators (numpy arrays, option
objects of the `tflite` schema package). Knows the file format, nothing about our kernels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MicroqError

try:
    import tflite
except ImportError:  # pragma: no cover - depends on the environment
    tflite = None

_NUMPY_DTYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "FLOAT64": np.float64,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
}

# Operator code -> its builtin options table class name in the schema package.
_OPTIONS = {
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "ADD": "AddOptions",
    "SUB": "SubOptions",
    "MUL": "MulOptions",
    "SOFTMAX": "SoftmaxOptions",
    "RESHAPE": "ReshapeOptions",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTMOptions",
    "STRIDED_SLICE": "StridedSliceOptions",
    "CONCATENATION": "ConcatenationOptions",
}


@dataclass(frozen=True, eq=False)
class TfTensor:
    index: int
    name: str
    dtype: str  # schema TensorType name: "INT8", "FLOAT32", ...
    shape: tuple[int, ...]
    scales: np.ndarray  # float32, empty when not quantized
    zero_points: np.ndarray  # int64
    quantized_dimension: int
    data: np.ndarray | None  # constant contents with `shape`, None for activations
    is_variable: bool = False  # a state tensor (an LSTM's hidden and cell state)


@dataclass(frozen=True, eq=False)
class TfOp:
    index: int
    opcode: str  # schema BuiltinOperator name: "CONV_2D", ...
    inputs: tuple[int, ...]  # tensor indices, -1 for an omitted optional input
    outputs: tuple[int, ...]
    options: object | None  # the schema's options table (Conv2DOptions, ...) or None

    @property
    def name(self) -> str:
        return "graph" if self.index < 0 else f"op{self.index}_{self.opcode.lower()}"


@dataclass(frozen=True, eq=False)
class TfModel:
    path: str
    tensors: list[TfTensor]
    ops: list[TfOp]
    inputs: list[int]
    outputs: list[int]


def require_schema() -> None:
    if tflite is None:
        raise MicroqError("reading .tflite models needs the `tflite` package: pip install tflite")


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_")}


# A tensor beyond this many elements (16 MiB as int8) is a corrupt shape, not a microcontroller
# model; the same bound as the ONNX importer's.
MAX_ELEMENTS = 2**24


class _Corrupt(Exception):
    """An inconsistency found while reading; read_tflite turns it into a MicroqError."""


def _vector_in_file(tab, slot: int, elem: int, n_raw: int, what: str) -> int:
    """Length of vector field `slot` after checking that it lies inside the file."""
    o = tab.Offset(4 + 2 * slot)
    if not o:
        return 0
    start, n = tab.Vector(o), tab.VectorLen(o)
    if start < 0 or n < 0 or start + n * elem > n_raw:
        raise _Corrupt(f"{what} ({n} elements at byte {start}) lies outside the "
                       f"{n_raw}-byte file")
    return n


def _buffer_bytes(model, raw: bytes, index: int, tname: str) -> bytes | None:
    if not 0 <= index < model.BuffersLength():
        raise _Corrupt(f"tensor '{tname}' refers to buffer {index}, the file has "
                       f"{model.BuffersLength()}")
    buf = model.Buffers(index)
    if buf is None:
        return None
    if _vector_in_file(buf._tab, 0, 1, len(raw), f"the data of buffer {index}") > 0:
        return buf.DataAsNumpy().tobytes()
    # Models over 2 GB keep buffers after the flatbuffer, addressed by offset and size.
    offset = getattr(buf, "Offset", lambda: 0)()  # absent from older schema packages
    if offset > 1 and buf.Size() > 0:
        if offset + buf.Size() > len(raw):
            raise _Corrupt(f"buffer {index} (offset {offset}, size {buf.Size()}) lies outside "
                           f"the {len(raw)}-byte file")
        return raw[offset : offset + buf.Size()]
    return None


def _tensor(model, sg, raw: bytes, i: int, type_names: dict[int, str]) -> TfTensor:
    t = sg.Tensors(i)
    name = (t.Name() or b"").decode(errors="replace")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise MicroqError(f"tensor {i} name {name[:40]!r} contains control characters: the "
                          "file is corrupt")
    label = f"tensor {i} '{name}'"
    dtype = type_names.get(t.Type(), f"type {t.Type()}")
    n_dims = _vector_in_file(t._tab, 0, 4, len(raw), f"the shape of {label}")
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if n_dims else ()
    # An empty dimension is only legal on a tensor no operator reads or writes (the LSTM's
    # unused float "intermediates"); read_tflite refuses it anywhere else.
    if len(shape) > 8 or any(not 0 <= d <= MAX_ELEMENTS for d in shape) \
            or int(np.prod(shape, dtype=object)) > MAX_ELEMENTS:
        raise MicroqError(f"{label} has shape {list(shape)}; expected at most 8 dimensions "
                          f"of 1..{MAX_ELEMENTS} and at most {MAX_ELEMENTS} elements: the file "
                          "is corrupt or the model is not for a microcontroller")
    q = t.Quantization()
    n_s = n_z = 0
    if q is not None:
        n_s = _vector_in_file(q._tab, 2, 4, len(raw), f"the scales of {label}")
        n_z = _vector_in_file(q._tab, 3, 8, len(raw), f"the zero points of {label}")
    scales = q.ScaleAsNumpy() if n_s else np.zeros(0)
    zps = q.ZeroPointAsNumpy() if n_z else np.zeros(0)
    qdim = q.QuantizedDimension() if q is not None else 0
    if n_s and n_z and n_s != n_z:
        raise MicroqError(f"{label} has {n_s} scales but {n_z} zero points: the file is corrupt")
    if n_s > 1 and not (0 <= qdim < len(shape) and shape[qdim] == n_s):
        raise MicroqError(f"{label} {list(shape)} has {n_s} scales on axis {qdim}: the file is "
                          "corrupt")
    data = None
    blob = _buffer_bytes(model, raw, t.Buffer(), name)
    if blob is not None:
        if 0 in shape:
            raise MicroqError(f"constant {label} has an empty shape {list(shape)}: the file is "
                              "corrupt")
        if dtype not in _NUMPY_DTYPES:
            raise MicroqError(f"constant {label} has unsupported type {dtype}")
        itemsize = np.dtype(_NUMPY_DTYPES[dtype]).itemsize
        want = int(np.prod(shape, dtype=object)) * itemsize
        if len(blob) != want:
            raise MicroqError(f"constant {label} {dtype} {list(shape)} needs {want} bytes, its "
                              f"buffer has {len(blob)}: the file is corrupt")
        data = np.frombuffer(blob, dtype=_NUMPY_DTYPES[dtype]).reshape(shape).copy()
    return TfTensor(i, name, dtype, shape,
                    np.asarray(scales, np.float32), np.asarray(zps, np.int64), int(qdim), data,
                    bool(t.IsVariable()))


def _options(op, opcode: str):
    cls_name = _OPTIONS.get(opcode)
    table = op.BuiltinOptions()
    if cls_name is None or table is None:
        return None
    # As TFLite's parser: options of another type than the op's (a union tag mismatch) are
    # ignored, the op then runs with its defaults.
    if op.BuiltinOptionsType() != getattr(tflite.BuiltinOptions, cls_name):
        return None
    opts = getattr(tflite, cls_name)()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _indices(vec, n: int, what: str, optional: bool) -> tuple[int, ...]:
    """Tensor indices in range; -1 (an omitted optional input) only where `optional`."""
    out = tuple(int(v) for v in vec)
    for v in out:
        if not (0 <= v < n or (optional and v == -1)):
            raise MicroqError(f"{what} refers to tensor {v}; the subgraph has {n} tensors "
                              "(0..{}{}): the file is corrupt".format(
                                  n - 1, ", or -1 for an omitted input" if optional else ""))
    return out


def read_tflite(path: str | Path) -> TfModel:
    """Parse the first subgraph of a .tflite file. Every index, offset and size read from the
    file is checked before use: a corrupt or crafted file is a MicroqError."""
    require_schema()
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise MicroqError(f"{p}: cannot read ({e.strerror})") from None
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise MicroqError(f"{p}: not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        return _read(p, raw)
    except MicroqError as e:
        raise MicroqError(f"{p}: {e}") from None
    except _Corrupt as e:
        raise MicroqError(f"{p}: corrupt TFLite flatbuffer: {e}") from None
    except Exception as e:  # noqa: BLE001 - flatbuffers reads raise struct.error, IndexError...
        first = (str(e).splitlines() or [""])[0][:120]
        raise MicroqError(f"{p}: corrupt TFLite flatbuffer (an offset or length points outside "
                          f"the file: {type(e).__name__}: {first})") from None


def _read(p: Path, raw: bytes) -> TfModel:
    model = tflite.Model.GetRootAsModel(raw, 0)
    if model.SubgraphsLength() != 1:
        raise MicroqError(f"{model.SubgraphsLength()} subgraphs; only single-subgraph "
                          "models are supported")
    sg = model.Subgraphs(0)
    n_raw = len(raw)
    # every table takes at least 4 bytes: a longer vector of them is a corrupt length
    for n, what in ((sg.TensorsLength(), "tensors"), (sg.OperatorsLength(), "operators"),
                    (model.BuffersLength(), "buffers"),
                    (model.OperatorCodesLength(), "operator codes")):
        if n * 4 > n_raw:
            raise _Corrupt(f"{n} {what} do not fit in {n_raw} bytes")
    type_names = _enum_names(tflite.TensorType)
    op_names = _enum_names(tflite.BuiltinOperator)
    tensors = [_tensor(model, sg, raw, i, type_names) for i in range(sg.TensorsLength())]
    n_t = len(tensors)
    ops = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        oc_index = op.OpcodeIndex()
        if not 0 <= oc_index < model.OperatorCodesLength():
            raise MicroqError(f"operator {i} has opcode index {oc_index}; the file has "
                              f"{model.OperatorCodesLength()} operator codes: the file is corrupt")
        oc = model.OperatorCodes(oc_index)
        # Codes above 127 live in BuiltinCode only; older files fill DeprecatedBuiltinCode.
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        opcode = op_names.get(code, f"BUILTIN_{code}")
        if opcode == "CUSTOM":
            opcode = f"CUSTOM({(oc.CustomCode() or b'?').decode(errors='replace')})"
        label = f"operator {i} ({opcode})"
        n_in = _vector_in_file(op._tab, 1, 4, n_raw, f"the inputs of {label}")
        n_out = _vector_in_file(op._tab, 2, 4, n_raw, f"the outputs of {label}")
        ins = _indices(op.InputsAsNumpy(), n_t, f"{label} input", True) if n_in else ()
        outs = _indices(op.OutputsAsNumpy(), n_t, f"{label} output", False) if n_out else ()
        ops.append(TfOp(i, opcode, ins, outs, _options(op, opcode)))
    n_gi = _vector_in_file(sg._tab, 1, 4, n_raw, "the subgraph inputs")
    n_go = _vector_in_file(sg._tab, 2, 4, n_raw, "the subgraph outputs")
    inputs = list(_indices(sg.InputsAsNumpy(), n_t, "graph input", False)) if n_gi else []
    outputs = list(_indices(sg.OutputsAsNumpy(), n_t, "graph output", False)) if n_go else []
    used = [(i, op.name) for op in ops for i in op.inputs + op.outputs if i >= 0]
    used += [(i, "the graph's inputs / outputs") for i in inputs + outputs]
    for i, who in used:
        if 0 in tensors[i].shape:
            raise MicroqError(f"tensor {i} '{tensors[i].name}' has shape "
                              f"{list(tensors[i].shape)}, an empty dimension, and {who} uses "
                              "it: the file is corrupt")
    return TfModel(str(p), tensors, ops, inputs, outputs)
