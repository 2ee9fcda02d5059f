"""ONNX frontend: load an ONNX model and build the float IR (physical NHWC); inspect a model."""

from __future__ import annotations

import os

import onnx

from microq import ir
from microq.errors import UnsupportedModelError
from microq.onnx_import.frontend import convert_with_problems
from microq.onnx_import.inspect import InspectReport, format_table, inspect_onnx, to_json
from microq.onnx_import.loader import load_onnx

__all__ = ["load_onnx", "import_onnx", "inspect_onnx", "InspectReport", "format_table", "to_json"]


def import_onnx(model_or_path: onnx.ModelProto | str | os.PathLike) -> ir.Graph:
    """Convert an ONNX model (or file) to the float IR; raise UnsupportedModelError listing all
    unsupported nodes at once."""
    graph, problems = convert_with_problems(model_or_path)
    if problems:
        raise UnsupportedModelError(graph.source_path, problems)
    check_shapes_by_running(graph)
    return graph


def check_shapes_by_running(graph: ir.Graph) -> None:
    """Run the float graph once on two zero samples and check every activation has the shape
    the importer declared (sample axis first): a converter that accepted an inconsistent model
    (or mishandled an axis) is a one-line error here, never a wrong folder or an internal error
    deep in calibration. Two samples also catch an op that mixes the samples of a batch."""
    import numpy as np

    from microq.errors import MicroqError
    from microq.ref.float_exec import run_float

    feeds = {}
    for name in graph.inputs:
        shape = graph.tensors[name].shape
        if not shape or shape[0] != 1:
            return
        feeds[name] = np.zeros((2, *shape[1:]), np.float32)
    producer = {o: n for n in graph.nodes for o in n.outputs}

    def where(tensor: str) -> str:
        n = producer.get(tensor)
        return f"node '{n.source[-1] if n and n.source else n.name if n else tensor}' ({n.op if n else '?'})"

    def observe(tensor: str, y: np.ndarray) -> None:
        shape = graph.tensors[tensor].shape
        if shape and shape[0] == 1 and tuple(y.shape) != (2, *shape[1:]):
            raise MicroqError(
                f"{graph.source_path}: {where(tensor)}: computes {list(y.shape[1:])} per sample "
                f"where the imported graph declares {list(shape[1:])}: the model's shapes are "
                "inconsistent or use a form microq mishandles; check the model (onnx.checker, "
                "onnxruntime) or re-export it")

    try:
        with np.errstate(all="ignore"):
            run_float(graph, feeds, on_tensor=observe)
    except MicroqError:
        raise
    except (ValueError, IndexError, TypeError) as e:
        raise MicroqError(
            f"{graph.source_path}: the imported graph cannot run ({type(e).__name__}: {e}); the "
            "model's shapes are inconsistent or use a form microq mishandles; check the model "
            "(onnx.checker, onnxruntime) or re-export it") from None
