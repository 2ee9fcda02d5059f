"""ONNX frontend report: per-IR-node shapes, MACs and parameters, plus unsupported nodes."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np

from microq import ir


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

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)


def _macs(g: ir.Graph, n: ir.Node) -> int:
    out = g.tensors[n.outputs[0]].shape
    if n.op == "Conv2D":
        w = g.tensors[n.inputs[1]].shape
        return int(np.prod(out)) * int(np.prod(w[1:]))
    if n.op == "FullyConnected":
        return int(np.prod(out)) * g.tensors[n.inputs[1]].shape[1]
    return 0


def inspect_onnx(path: str | os.PathLike) -> InspectReport:
    """Describe a model; unsupported nodes are listed, not raised (only unreadable files raise)."""
    from microq.onnx_import import convert_with_problems

    g, problems = convert_with_problems(path)
    report = InspectReport(
        str(path),
        {i: g.logical_shapes.get(i, ()) for i in g.inputs},
        {o: g.logical_shapes.get(o, ()) for o in g.outputs},
        unsupported=problems,
    )
    for n in g.nodes:
        consts = [g.tensors[i] for i in n.inputs if g.tensors[i].is_const]
        report.rows.append(InspectRow(
            n.name,
            n.op,
            [g.tensors[i].shape for i in n.inputs if not g.tensors[i].is_const],
            g.tensors[n.outputs[0]].shape,
            _macs(g, n),
            sum(int(np.prod(t.shape)) for t in consts),
            list(n.source),
        ))
    return report


def format_table(report: InspectReport) -> str:
    """An aligned text table, totals, then the unsupported nodes."""
    head = ("#", "name", "op", "inputs", "output", "MACs", "params", "fused ONNX nodes")
    body = [
        (str(i), r.name, r.op, " ".join(_dims(s) for s in r.input_shapes), _dims(r.output_shape),
         f"{r.macs:,}", f"{r.params:,}", ", ".join(r.fused))
        for i, r in enumerate(report.rows)
    ]
    widths = [max(len(row[c]) for row in [head] + body) for c in range(len(head) - 1)]
    lines = [f"{report.path}: inputs "
             + ", ".join(f"{k} {_dims(v)}" for k, v in report.inputs.items())
             + "; outputs " + ", ".join(f"{k} {_dims(v)}" for k, v in report.outputs.items())]
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
        "unsupported": [{"node": n, "op": op, "reason": why} for n, op, why in report.unsupported],
        "total_macs": report.total_macs,
        "total_params": report.total_params,
    }


def _dims(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"
