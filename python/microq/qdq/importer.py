"""QDQ ONNX in, step 2: quantize the stripped float graph with the model's own parameters.

The quantizer (quant.quantize) runs unchanged except for its inputs: activation parameters
come from the Q/DQ pairs instead of calibration, and Conv/Gemm/MatMul weights and biases keep
the model's integers. Where a kernel fixes its output parameters (pooling, reshape, softmax)
and the model asks for others, a requantize follows it. Anything our kernels cannot represent
exactly (uint8 or asymmetric weights, per-channel activations) is a MicroqError naming the
tensor.
"""

from __future__ import annotations

import os

import numpy as np
import onnx

from .. import ir, qir
from ..errors import MicroqError
from ..quant import scheme
from ..quant.quantize import _Quantizer
from .strip import ConstQ, Stripped, strip_qdq

# ops whose output parameters follow from their input (softmax: fixed at 1/256, -128)
FIXED_OUTPUT = ("MaxPool", "AvgPool", "Reshape", "Transpose", "Pad", "Softmax", "Resize",
                "MaskedSoftmax")


class _FixedQuantizer(_Quantizer):
    def __init__(self, graph: ir.Graph, qdq: Stripped, rounding: str):
        super().__init__(graph, {}, rounding)
        self.qdq = qdq

    def after(self, node: ir.Node) -> None:
        """A requantize after an op whose output parameters are fixed by its kernel when the
        model gives others (onnxruntime's average pooling, its softmax output at 1/255)."""
        if node.op in FIXED_OUTPUT:
            self._requantize_to_given(node)

    def _requantize_to_given(self, node: ir.Node) -> None:
        out = node.outputs[0]
        want, have = self.qdq.acts.get(out), self.q(out)
        if want is None or _close(want, have):
            return
        tmp = f"{out}__shared"
        shape = self.g.tensors[out].shape
        self.g.tensors[tmp] = ir.Tensor(tmp, shape)
        self.add_tensor(tmp, have)
        self.nodes[-1].outputs = [tmp]
        self.add_tensor(out, want)
        try:
            p = scheme.requantize_params(have.scale, have.zero_point, want.scale,
                                         want.zero_point, rounding=self.rounding)
        except MicroqError as e:
            raise MicroqError(f"node '{node.name}' ({node.op}) output: {e}") from None
        self.emit(node, "requantize", [tmp], [out], p)

    def widen_to(self, out, bound) -> None:
        """The model's output scale is kept as given: an unsafe rescale is refused."""

    def calibrated(self, name: str) -> qir.QParams:
        p = self.qdq.acts.get(name)
        if p is not None:
            return p
        # Tensors the importer adds (a Conv1D's 2-D view) share the quantization of the
        # ONNX tensor they are reshaped into.
        users = self.g.consumers(name)
        if len(users) == 1 and users[0].op in ("Reshape", "Transpose"):
            return self.calibrated(users[0].outputs[0])
        # A Conv1D's view read directly by the next Conv1D (the reshapes between them cancelled):
        # its pair is on the output of the last ONNX node the layer implements (qdq.export).
        onnx_name = self._source_output(name)
        if onnx_name is not None and onnx_name in self.qdq.acts:
            return self.qdq.acts[onnx_name]
        raise MicroqError(f"tensor '{name}' has no QuantizeLinear/DequantizeLinear pair; a QDQ "
                          "model must quantize every activation microq computes")

    def _source_output(self, name: str) -> str | None:
        """Output 0 of the last ONNX node (in graph order) merged into the node writing `name`,
        when that node computes (not a reshape/transpose) and `name` is not an ONNX tensor."""
        prod = next((n for n in self.g.nodes if name in n.outputs), None)
        if prod is None or prod.op in ("Reshape", "Transpose"):
            return None
        order = getattr(self, "_onnx_order", None)
        if order is None:
            order = {n.name: (i, n.output[0] if n.output else None)
                     for i, n in enumerate(self.qdq.model.graph.node) if n.name}
            self._onnx_order = order
        found = [order[s] for s in prod.source if s in order]
        return max(found)[1] if found else None

    def _source_input(self, node: ir.Node, ops: tuple[str, ...], idx: int) -> tuple[str, str]:
        """(ONNX node, its input `idx`) of the first source node of one of `ops`."""
        for src in node.source:
            ins = self.qdq.node_inputs.get(src)
            op = self.qdq.node_ops.get(src)
            if ins is not None and op in ops and idx < len(ins):
                return src, ins[idx]
        return "", ""

    def weights(self, node: ir.Node) -> tuple[np.ndarray, np.ndarray]:
        src, wname = self._source_input(node, ("Conv", "Gemm", "MatMul"), 1)
        c = self.qdq.consts.get(wname)
        if c is None:  # float weights in a QDQ model: quantize them ourselves
            return super().weights(node)
        w = self.g.tensors[node.inputs[1]].const
        cout = w.shape[0]
        if c.axis is not None and c.axis != _out_axis(self.qdq, src, c.q.ndim):
            raise MicroqError(f"weight '{wname}': quantized per channel along axis {c.axis}, not "
                              "the output channels; microq needs per-output-channel scales")
        if not np.all(np.isfinite(c.scale) & (np.asarray(c.scale) > 0)):
            raise MicroqError(f"weight '{wname}' has scale {np.asarray(c.scale).min()!r}: "
                              "quantized weights need positive finite scales")
        s = np.broadcast_to(c.scale.astype(np.float32), (cout,))
        bshape = (cout,) + (1,) * (w.ndim - 1)
        q = np.rint(w / s.reshape(bshape))
        exact = np.array_equal((q * s.reshape(bshape)).astype(np.float32), w)
        if not exact or np.abs(q).max() > 128:
            raise MicroqError(f"node '{src}': weight '{wname}' is no longer int8 after the "
                              "importer's fusions (a BatchNormalization or scale after a "
                              "quantized Conv); fold it before quantizing")
        return q.astype(np.int8), s.astype(np.float64)

    def bias(self, node: ir.Node, s_in: float, s_w: np.ndarray) -> np.ndarray:
        b = self.g.tensors[node.inputs[2]].const
        for idx, ops in ((2, ("Conv", "Gemm")), (1, ("Add",)), (0, ("Add",))):
            _, bname = self._source_input(node, ops, idx)
            c: ConstQ | None = self.qdq.consts.get(bname)
            if c is None or c.q.dtype != np.int32 or c.q.size != b.size:
                continue
            if not np.all(np.isfinite(c.scale) & (np.asarray(c.scale) > 0)):
                raise MicroqError(f"bias '{bname}' has scale {np.asarray(c.scale).min()!r}: a "
                                  "quantized bias needs positive finite scales")
            expect = np.float32(s_in) * s_w.astype(np.float32)
            same_scale = np.allclose(np.broadcast_to(c.scale, b.shape), expect, rtol=1e-6)
            unchanged = np.array_equal((c.q.astype(np.float32) * c.scale).astype(np.float32), b)
            if same_scale and unchanged and not np.any(c.zero_point):
                return c.q.reshape(b.shape).astype(np.int32)
        return super().bias(node, s_in, s_w)


def _out_axis(qdq: Stripped, node: str, ndim: int) -> int:
    op = qdq.node_ops[node]
    if op == "Conv":
        return 0
    if op == "MatMul":
        return ndim - 1
    return 0 if qdq.node_attrs.get(node, {}).get("transB", 0) else 1


def import_qdq(model_or_path: onnx.ModelProto | str | os.PathLike,
               rounding: str = "double") -> qir.QGraph:
    """A QDQ ONNX model (ours, or onnxruntime's quantize_static with int8 weights and
    activations) -> the quantized graph, using the model's scales and zero points as given;
    multipliers are computed for `rounding` ("double" or "single")."""
    from ..onnx_import import import_onnx, load_onnx
    from ..quant.quantize import check_finite_weights

    if isinstance(model_or_path, onnx.ModelProto):
        model, path = model_or_path, model_or_path.graph.name or "<model>"
    else:
        path = str(model_or_path)
        model = load_onnx(path)
    qdq = strip_qdq(model, path)
    graph = import_onnx(qdq.model)
    graph.source_path = path
    check_finite_weights(graph)
    return _FixedQuantizer(graph, qdq, rounding).run()


def _close(a: qir.QParams, b: qir.QParams) -> bool:
    return a.zero_point == b.zero_point and abs(a.scale - b.scale) <= 1e-6 * b.scale
