"""ONNX frontend, steps 1-3 in one call: load and prepare, convert, fuse (without raising for
unsupported nodes: import_onnx raises, inspect lists them)."""

from __future__ import annotations

import os

import onnx

from microq import ir
from microq.onnx_import.convert import convert, onnx_node_names
from microq.onnx_import.fuse import fuse
from microq.onnx_import.loader import empty_outputs, load_onnx, prepare


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
