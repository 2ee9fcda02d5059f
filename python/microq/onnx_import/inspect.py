"""ONNX frontend report: per-IR-node shapes, MACs and parameters, plus unsupported nodes."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np

from microq import ir
from microq.ops import op_macs


@dataclass(frozen=True)
class InspectRow:
    name: str
    op: str
    input_shapes: list[tuple[int, ...]]
    output_shape: tuple[int, ...]
    macs: int
    params: int
    fused: list[str]  # the ONNX nodes merged into this IR node


@dataclass
class InspectReport:
    path: str
    inputs: dict[str, tuple[int, ...]]  # logical (ONNX) shapes
    outputs: dict[str, tuple[int, ...]]
    rows: list[InspectRow] = field(default_factory=list)
    unsupported: list[tuple[str, str, str]] = field(default_factory=list)  # (node, op, reason)
    quantized: bool = False  # a QDQ model: shown without its QuantizeLinear/DequantizeLinear
    layout_note: str = ""  # printed under the header line (what the shapes' layout is)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)


def _macs(g: ir.Graph, n: ir.Node) -> int:
    """The op table's MAC count (microq.ops.OpDef.macs) on the node's shapes."""
    return op_macs(n.op, [g.tensors[i].shape for i in n.inputs],
                   [g.tensors[o].shape for o in n.outputs], n.attrs)


def inspect_onnx(path: str | os.PathLike, model=None, quantized: bool = False) -> InspectReport:
    """Describe a float ONNX model (`model`, else the file at `path`); unsupported nodes are
    listed, not raised (only unreadable files raise). `quantized`: `model` is a QDQ model with
    its Q/DQ nodes stripped (api.inspect does that, and reads .tflite files)."""
    from microq.onnx_import.frontend import convert_with_problems
    from microq.onnx_import.loader import load_onnx

    path = str(path)
    if model is None:
        model = load_onnx(path)
    g, problems = convert_with_problems(model, path)
    report = InspectReport(
        path,
        {i: g.logical_shapes.get(i, ()) for i in g.inputs},
        {o: g.logical_shapes.get(o, ()) for o in g.outputs},
        unsupported=problems,
        quantized=quantized,
    )
    if any(tuple(p) != tuple(range(len(p))) for p in g.input_perm.values()):
        report.layout_note = ("inputs/outputs above: the ONNX layout (NCHW); the rows: microq's "
                              "layout, channels last (NHWC), as the generated C")
    for n in g.nodes:
        consts = [g.tensors[i] for i in n.inputs if g.tensors[i].is_const]
        report.rows.append(InspectRow(
            n.name,
            _op_label(g, n),
            [g.tensors[i].shape for i in n.inputs if not g.tensors[i].is_const],
            g.tensors[n.outputs[0]].shape,
            _macs(g, n),
            sum(int(np.prod(t.shape)) for t in consts),
            list(n.source),
        ))
    return report


def format_table(report: InspectReport) -> str:
    """An aligned text table, totals, then the unsupported nodes."""
    head = ("#", "name", "op", "inputs", "output", "MACs", "params",
            "TFLite tensors" if path_is_tflite(report.path) else "fused ONNX nodes")
    body = [
        (str(i), r.name, r.op, " ".join(_dims(s) for s in r.input_shapes), _dims(r.output_shape),
         f"{r.macs:,}", f"{r.params:,}", ", ".join(r.fused))
        for i, r in enumerate(report.rows)
    ]
    widths = [max(len(row[c]) for row in [head] + body) for c in range(len(head) - 1)]
    lines = [f"{report.path}: inputs "
             + ", ".join(f"{k} {_dims(v)}" for k, v in report.inputs.items())
             + "; outputs " + ", ".join(f"{k} {_dims(v)}" for k, v in report.outputs.items())]
    if report.layout_note:
        lines.append(report.layout_note)
    if report.quantized and not path_is_tflite(report.path):
        lines.append("already quantized (QDQ model): QuantizeLinear/DequantizeLinear nodes not "
                     "shown; compile uses the model's own scales and needs no --calib")
    for row in [head] + body:
        cells = [c.rjust(w) if j in (0, 5, 6) else c.ljust(w) for j, (c, w) in
                 enumerate(zip(row, widths))]
        lines.append("  ".join(cells + [row[-1]]).rstrip())
    lines.append(f"total: {len(report.rows)} nodes, {report.total_macs:,} MACs, "
                 f"{report.total_params:,} parameters")
    if report.unsupported:
        lines.append(f"{len(report.unsupported)} unsupported node(s):")
        lines += [f"  {n} ({op}): {why}" for n, op, why in report.unsupported]
    return "\n".join(lines)


def to_json(report: InspectReport) -> dict:
    """A JSON-ready dict (lists instead of tuples)."""
    return {
        "path": report.path,
        "inputs": {k: list(v) for k, v in report.inputs.items()},
        "outputs": {k: list(v) for k, v in report.outputs.items()},
        "rows": [
            {**asdict(r), "input_shapes": [list(s) for s in r.input_shapes],
             "output_shape": list(r.output_shape)}
            for r in report.rows
        ],
        "quantized": report.quantized,
        "unsupported": [{"node": n, "op": op, "reason": why} for n, op, why in report.unsupported],
        "total_macs": report.total_macs,
        "total_params": report.total_params,
    }


def path_is_tflite(path: str) -> bool:
    return str(path).lower().endswith(".tflite")


def _op_label(g: ir.Graph, n: ir.Node) -> str:
    """The IR op, with depthwise and grouped convolutions named as such."""
    if n.op != "Conv2D":
        return n.op
    groups = int(getattr(n.attrs, "groups", 1) or 1)
    cin = g.tensors[n.inputs[0]].shape[-1]
    if groups > 1 and groups == cin:
        return "DepthwiseConv2D"
    return f"Conv2D (groups={groups})" if groups > 1 else "Conv2D"


def _dims(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"
