"""ONNX frontend, steps 1-3 in one call: load and prepare, convert, fuse (without raising for
unsupported nodes: import_onnx raises, inspect lists them)."""

from __future__ import annotations

import os
import warnings

import onnx

from microq import ir
from microq.onnx_import.convert import convert, onnx_node_names
from microq.onnx_import.fuse import fuse
from microq.onnx_import.loader import empty_outputs, load_onnx, prepare, warn_static_batch


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
    if problems and prep.static_batch:
        # a static dim 0 > 1 read as the batch (it reaches a per-image op) that the graph also
        # mixes (a Softmax or Concat over it, ...): read as data instead, per-image ops then
        # run once per image (ops_unbatched.per_image), if that compiles
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            prep2 = prepare(model, path, static_batch=False)
            graph2, problems2 = convert(prep2)
        if not problems2:
            prep, graph, problems = prep2, graph2, problems2
            for w in said:  # the per-image notes of the reading kept
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    warn_static_batch(prep)
    bad = {n for n, _, _ in problems}
    problems += [p for p in empty_outputs(prep, onnx_node_names(prep.nodes)) if p[0] not in bad]
    fuse(graph)
    return graph, problems
