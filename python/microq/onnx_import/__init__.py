"""ONNX frontend: load an ONNX model and build the float IR (physical NHWC); inspect a model."""

from __future__ import annotations

import os

import onnx

from microq import ir
from microq.errors import UnsupportedModelError
from microq.onnx_import.convert import convert, onnx_node_names
from microq.onnx_import.fuse import fuse
from microq.onnx_import.inspect import InspectReport, format_table, inspect_onnx, to_json
from microq.onnx_import.loader import empty_outputs, load_onnx, prepare

__all__ = ["load_onnx", "import_onnx", "inspect_onnx", "InspectReport", "format_table", "to_json"]


def import_onnx(model_or_path: onnx.ModelProto | str | os.PathLike) -> ir.Graph:
    """Convert an ONNX model (or file) to the float IR; raise UnsupportedModelError listing all
    unsupported nodes at once."""
    graph, problems = convert_with_problems(model_or_path)
    if problems:
        raise UnsupportedModelError(graph.source_path, problems)
    return graph


def convert_with_problems(
    model_or_path: onnx.ModelProto | str | os.PathLike, path: str | None = None,
) -> tuple[ir.Graph, list[tuple[str, str, str]]]:
    """The fused IR graph plus the unsupported nodes, without raising for them; `path` names a
    model given as a proto in messages."""
    if isinstance(model_or_path, onnx.ModelProto):
        model, path = model_or_path, path or model_or_path.graph.name or "<model>"
    else:
        path = str(model_or_path)
        model = load_onnx(path)
    prep = prepare(model, path)
    graph, problems = convert(prep)
    bad = {n for n, _, _ in problems}
    problems += [p for p in empty_outputs(prep, onnx_node_names(prep.nodes)) if p[0] not in bad]
    fuse(graph)
    return graph, problems
