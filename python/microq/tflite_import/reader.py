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


def _buffer_bytes(model, raw: bytes, index: int) -> bytes | None:
    buf = model.Buffers(index)
    if buf is None:
        return None
    if buf.DataLength() > 0:
        return buf.DataAsNumpy().tobytes()
    # Models over 2 GB keep buffers after the flatbuffer, addressed by offset and size.
    offset = getattr(buf, "Offset", lambda: 0)()  # absent from older schema packages
    if offset > 1 and buf.Size() > 0:
        return raw[offset : offset + buf.Size()]
    return None


def _tensor(model, sg, raw: bytes, i: int, type_names: dict[int, str]) -> TfTensor:
    t = sg.Tensors(i)
    dtype = type_names.get(t.Type(), f"type {t.Type()}")
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    q = t.Quantization()
    scales = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else np.zeros(0)
    zps = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else np.zeros(0)
    qdim = q.QuantizedDimension() if q is not None else 0
    data = None
    blob = _buffer_bytes(model, raw, t.Buffer())
    if blob is not None:
        if dtype not in _NUMPY_DTYPES:
            raise MicroqError(f"constant tensor '{t.Name().decode()}' has unsupported type {dtype}")
        data = np.frombuffer(blob, dtype=_NUMPY_DTYPES[dtype]).reshape(shape).copy()
    return TfTensor(i, t.Name().decode(errors="replace"), dtype, shape,
                    np.asarray(scales, np.float32), np.asarray(zps, np.int64), int(qdim), data)


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


def read_tflite(path: str | Path) -> TfModel:
    """Parse the first subgraph of a .tflite file."""
    require_schema()
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise MicroqError(f"{p}: cannot read ({e.strerror})") from None
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise MicroqError(f"{p}: not a TFLite flatbuffer (no TFL3 identifier)")
    model = tflite.Model.GetRootAsModel(raw, 0)
    if model.SubgraphsLength() != 1:
        raise MicroqError(f"{p}: {model.SubgraphsLength()} subgraphs; only single-subgraph "
                          "models are supported")
    sg = model.Subgraphs(0)
    type_names = _enum_names(tflite.TensorType)
    op_names = _enum_names(tflite.BuiltinOperator)
    tensors = [_tensor(model, sg, raw, i, type_names) for i in range(sg.TensorsLength())]
    ops = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        oc = model.OperatorCodes(op.OpcodeIndex())
        # Codes above 127 live in BuiltinCode only; older files fill DeprecatedBuiltinCode.
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        opcode = op_names.get(code, f"BUILTIN_{code}")
        if opcode == "CUSTOM":
            opcode = f"CUSTOM({(oc.CustomCode() or b'?').decode(errors='replace')})"
        ins = tuple(int(v) for v in op.InputsAsNumpy()) if op.InputsLength() else ()
        outs = tuple(int(v) for v in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        ops.append(TfOp(i, opcode, ins, outs, _options(op, opcode)))
    return TfModel(str(p), tensors, ops, [int(v) for v in sg.InputsAsNumpy()],
                   [int(v) for v in sg.OutputsAsNumpy()])
