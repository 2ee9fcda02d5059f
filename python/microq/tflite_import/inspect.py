"""`microq inspect MODEL.tflite`: the int8 TFLite model as compile lowers it (one row per kernel
call, TFLite's own NHWC shapes, the MACs compile counts), or the operators microq cannot lower."""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedModelError
from ..ops import kernel_macs


def _params(qg, node) -> int:
    """Filter and bias elements (in the node's params) plus constant operands."""
    p = node.params
    n = sum(int(np.size(getattr(p, f))) for f in ("filter", "bias", "input_weights",
                                                  "recurrent_weights", "input_bias")
            if getattr(p, f, None) is not None)  # the last three: an LSTM's
    return n + sum(int(np.prod(qg.tensors[i].shape)) for i in node.inputs
                   if qg.tensors[i].const is not None)


def inspect_tflite(path: str):
    from ..onnx_import.inspect import InspectReport, InspectRow
    from . import import_tflite

    try:
        qg = import_tflite(path)
    except UnsupportedModelError as e:
        return InspectReport(path, {}, {}, unsupported=list(e.problems), quantized=True,
                             layout_note="int8 TFLite model (NHWC)")
    report = InspectReport(
        path,
        {i: tuple(qg.tensors[i].shape) for i in qg.inputs},
        {o: tuple(qg.tensors[o].shape) for o in qg.outputs},
        quantized=True,
        layout_note=("16x8 (int16 activations)" if any(
            t.dtype == "int16" for t in qg.tensors.values()) else "int8") +
        " TFLite model: compile uses its own scales and zero points (no "
        "--calib); shapes are NHWC, as in the file and the C",
    )
    for node in qg.nodes:
        acts = [tuple(qg.tensors[i].shape) for i in node.inputs if qg.tensors[i].const is None]
        # the MACs compile counts (the op table's, as the emitters)
        macs = kernel_macs(node.kernel, [qg.tensors[i].shape for i in node.inputs],
                           [qg.tensors[o].shape for o in node.outputs], node.params)
        report.rows.append(InspectRow(node.name, node.kernel, acts,
                                      tuple(qg.tensors[node.outputs[0]].shape), macs,
                                      _params(qg, node), list(node.source)))
    return report
