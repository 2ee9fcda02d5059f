"""TFLite frontend: an int8 .tflite model -> quantized IR (qir.QGraph), directly.

The model is already quantized, so nothing is calibrated: its scales, zero points, int8 weights
and int32 biases are used as stored, and every derived parameter is computed as TFLite Micro's
Prepare computes it, so the generated C equals TFLite Micro bit for bit.
"""

from __future__ import annotations

from pathlib import Path

from .. import qir
from ..errors import MicroqError, UnsupportedModelError
from .checks import check_graph
from .lower import HANDLERS, Lowering
from .reader import TfModel, TfOp, read_tflite


def _strip_float_edges(m: TfModel) -> tuple[list[TfOp], list[int], list[int]]:
    """Drop QUANTIZE from a float graph input and DEQUANTIZE to a float graph output: the C
    model's I/O is int8 (NAME.json gives the scales), as TFLite Micro's is after them."""
    inputs, outputs, ops = list(m.inputs), list(m.outputs), []
    for op in m.ops:
        src = m.tensors[op.inputs[0]] if op.inputs and op.inputs[0] >= 0 else None
        if op.opcode == "QUANTIZE" and src is not None and src.dtype == "FLOAT32" \
                and op.inputs[0] in inputs:
            inputs[inputs.index(op.inputs[0])] = op.outputs[0]
        elif op.opcode == "DEQUANTIZE" and op.outputs[0] in outputs:
            outputs[outputs.index(op.outputs[0])] = op.inputs[0]
        else:
            ops.append(op)
    return ops, inputs, outputs


def import_tflite(path: str | Path, rounding: str = "double") -> qir.QGraph:
    """Read an int8 .tflite and lower it to a QGraph. `rounding` ("double", TFLite Micro's
    default, or "single") selects how multipliers are quantized, as TFLITE_SINGLE_ROUNDING."""
    if rounding not in ("double", "single"):
        raise MicroqError(f"rounding must be 'double' or 'single', not '{rounding}'")
    m = read_tflite(path)
    ops, inputs, outputs = _strip_float_edges(m)
    unsupported = [(op.name, op.opcode, "no int8 kernel in microq") for op in ops
                   if op.opcode not in HANDLERS]
    if unsupported:
        raise UnsupportedModelError(str(path), unsupported)
    check_graph(m, ops, inputs, outputs)
    low = Lowering(m, rounding)
    for op in ops:
        try:
            HANDLERS[op.opcode](low, op)
        except MicroqError as e:  # a parameter check deeper down: name the file and operator
            if str(path) in str(e):
                raise
            raise MicroqError(f"{path}: {op.name} ({op.opcode}): {e}") from None
    io_op = TfOp(-1, "GRAPH_IO", (), (), None)
    in_names = [low.act(io_op, i, "graph input") for i in inputs]
    out_names = [low.act(io_op, i, "graph output") for i in outputs]
    produced = {t for n in low.nodes for t in n.outputs}
    for name in out_names:
        if name not in produced and name not in in_names:
            raise MicroqError(f"{path}: graph output '{name}' is not computed by any operator")
    shapes = {t: tuple(low.tensors[t].shape) for t in in_names + out_names}
    return qir.QGraph(Path(path).stem, low.tensors, low.nodes, in_names, out_names, {}, shapes)


__all__ = ["import_tflite"]
