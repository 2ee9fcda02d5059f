"""Mixed int8 / 16x8 quantization of an ONNX graph (`compile --int16 LAYER,...|auto`).

A chosen layer runs its 16x8 kernel (c_runtime/src/mq_s16.c): its output is int16, symmetric
(zero point 0, scale max|calibrated range| / 32767), its weights stay int8 per channel, its
bias int64. Where an int8 tensor enters a chosen layer it is requantized to int16 (the values
keep int8 precision: the gain is in the layer's own output); where an int16 tensor reaches a
layer that is not chosen, or a graph output, it is requantized back to int8. So a chain of
chosen layers passes int16 between them, and choosing the producer of a tensor with outlier
channels (e.g. the FC before a LayerNorm) together with its consumer keeps that tensor int16.
Reshape passes an int16 tensor through unchanged.

16x8 layers: Conv (incl. depthwise), FullyConnected (Gemm / MatMul with constant weights),
Add, Sub, Mul, Softmax, LayerNorm, MaxPool, AvgPool, and every elementwise activation (Sigmoid
and Tanh by TFLite's int16 kernels, the others by a 513-entry int16 table). A pool whose input
is int16 stays int16 without being named.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import ir, qir
from ..errors import MicroqError
from ..ref.arith import round_half_away
from . import s16 as scheme16
from .calibrate import Range
from .quantize import HANDLERS, _Quantizer, _up_f32
from .scheme import channel_multipliers as _multipliers

INT16_MAX = 32767
INT64_BIAS = 1 << 46  # |bias| bound keeping the 16x8 accumulator below 2^47 (guards)
LAYERS_16 = ("Conv2D", "FullyConnected", "Add", "Sub", "Mul", "Softmax", "Activation",
             "LayerNorm", "MaxPool", "AvgPool")


def params16_from_range(lo: float, hi: float) -> qir.QParams:
    """Symmetric int16 parameters covering [lo, hi]: scale max(|lo|, |hi|) / 32767, zero 0."""
    amax = max(abs(float(lo)), abs(float(hi)))
    if amax < 1e-12:
        return qir.QParams(1.0, 0)
    return qir.QParams(_up_f32(amax / INT16_MAX), 0)


def supports_16(node: ir.Node) -> bool:
    return node.op in LAYERS_16


class _Quantizer16(_Quantizer):
    def __init__(self, graph: ir.Graph, ranges: dict[str, Range], rounding: str,
                 layers: set[str]):
        super().__init__(graph, ranges, rounding)
        self.layers = set(layers)
        self.as8_of: dict[str, str] = {}
        self.as16_of: dict[str, str] = {}

    # -- tensors -------------------------------------------------------------------------
    def is16(self, name: str) -> bool:
        return name in self.tensors and self.tensors[name].dtype == "int16"

    def add16(self, name: str, q: qir.QParams, const=None) -> None:
        self.tensors[name] = qir.QTensor(name, tuple(self.g.tensors[name].shape), q, const,
                                         "int16")

    def calibrated16(self, name: str) -> qir.QParams:
        self.calibrated(name)  # the same checks (reached, finite)
        r = self.ranges[name]
        return params16_from_range(r.lo, r.hi)

    def _requant(self, src: str, dst: str, why: str) -> None:
        qi, qo = self.q(src), self.q(dst)
        p = scheme16.requantize_params_s16(qi.scale, qi.zero_point, self.is16(src), qo.scale,
                                           qo.zero_point, self.is16(dst))
        self.nodes.append(qir.QNode(f"{dst}__{why}", "requantize_s16", [src], [dst], p, []))

    def as8(self, name: str) -> str:
        """The int8 form of `name` (itself when int8)."""
        if not self.is16(name):
            return name
        if name not in self.as8_of:
            tmp = f"{name}__s8"
            self.g.tensors[tmp] = ir.Tensor(tmp, self.g.tensors[name].shape)
            self.add_tensor(tmp, self.calibrated(name))
            self._requant(name, tmp, "to_s8")
            self.as8_of[name] = tmp
        return self.as8_of[name]

    def as16(self, name: str) -> str:
        """The int16 form of `name` (a constant is quantized to int16 directly)."""
        if self.is16(name):
            return name
        t = self.g.tensors[name]
        if t.const is not None:
            tmp = f"{name}__s16c"
            if tmp not in self.tensors:
                self.g.tensors[tmp] = ir.Tensor(tmp, t.shape, t.const)
                q = params16_from_range(float(t.const.min()), float(t.const.max()))
                data = np.clip(round_half_away(t.const / q.scale), -32768, 32767)
                self.add16(tmp, q, data.astype(np.int16))
            return tmp
        self.operand(name)
        if name not in self.as16_of:
            tmp = f"{name}__s16"
            self.g.tensors[tmp] = ir.Tensor(tmp, t.shape)
            self.add16(tmp, self.calibrated16(name))
            self._requant(name, tmp, "to_s16")
            self.as16_of[name] = tmp
        return self.as16_of[name]

    # -- dispatch ------------------------------------------------------------------------
    def handle(self, node: ir.Node) -> None:
        if node.name in self.layers:
            if not supports_16(node):
                what = node.attrs.kind if node.op == "Activation" else node.op
                raise MicroqError(f"node '{node.name}' ({what}) has no 16x8 kernel; --int16 "
                                  "takes Conv, Gemm/MatMul, Add, Sub, Mul, Softmax, LayerNorm, "
                                  "pooling and activation layers")
            try:
                HANDLERS_16[node.op](self, node)
            except MicroqError as e:
                if f"'{node.name}'" in str(e):
                    raise
                raise MicroqError(f"node '{node.name}' ({node.op}, 16x8): {e}") from None
            return
        if node.op in ("MaxPool", "AvgPool") and self.is16(node.inputs[0]):
            return self.pool16(node)  # an int16 tensor is pooled in int16: no loss, no cost
        if node.op == "Reshape" and self.is16(node.inputs[0]):
            x, out = node.inputs[0], node.outputs[0]
            self.add16(out, self.q(x))
            self.emit(node, "reshape", [x], [out], qir.ReshapeParams(tuple(node.attrs.shape)))
            return
        if any(self.is16(t) for t in node.inputs):
            node = dataclasses.replace(node, inputs=[self.as8(t) for t in node.inputs])
        super().handle(node)

    def run(self) -> qir.QGraph:
        g = super().run()
        # int16 graph outputs go back to int8 under their own names (the C API stays int8)
        outs = []
        for name in g.outputs:
            if self.is16(name):
                wide = f"{name}__s16out"
                self._rename(name, wide)
                self.g.tensors[name] = ir.Tensor(name, self.g.tensors[wide].shape)
                self.add_tensor(name, self.calibrated(name))
                self._requant(wide, name, "out_s8")
            outs.append(name)
        return qir.QGraph(g.name, self.tensors, self.nodes, g.inputs, outs, g.input_perm,
                          g.logical_shapes)

    def _rename(self, old: str, new: str) -> None:
        self.g.tensors[new] = ir.Tensor(new, self.g.tensors[old].shape)
        t = self.tensors.pop(old)
        self.tensors[new] = dataclasses.replace(t, name=new)
        for n in self.nodes:
            n.inputs = [new if t == old else t for t in n.inputs]
            n.outputs = [new if t == old else t for t in n.outputs]

    # -- 16x8 layers ---------------------------------------------------------------------
    def _act16(self, out: str, lo_f: float, hi_f: float) -> tuple[int, int]:
        s = self.q(out).scale
        lo = -32768 if not np.isfinite(lo_f) else max(-32768, round_half_away(lo_f / s))
        hi = 32767 if not np.isfinite(hi_f) else min(32767, round_half_away(hi_f / s))
        return int(lo), int(hi)

    def _widen16(self, out: str, bound: float) -> None:
        if self.q(out).scale <= bound * (1 + 2**-20):
            self.add16(out, qir.QParams(_up_f32(bound * (1 + 2**-20)), 0))

    def _bias64(self, node: ir.Node, s_in: float, s_w: np.ndarray) -> np.ndarray:
        b = self.g.tensors[node.inputs[2]].const.astype(np.float64)
        q = round_half_away(b / (s_in * s_w))
        return np.clip(q, -INT64_BIAS, INT64_BIAS).astype(np.int64)

    def _out16(self, node: ir.Node, s_in: float, s_w: np.ndarray) -> str:
        out = node.outputs[0]
        self.add16(out, self.calibrated16(out))
        # the 64-bit MBQM takes shifts <= 7: a nearly dead output is widened
        self._widen16(out, float(np.max(s_in * s_w)) / 2.0**7)
        return out

    def conv16(self, node: ir.Node) -> None:
        a: ir.ConvAttrs = node.attrs
        x = self.as16(node.inputs[0])
        s_in = self.q(x).scale
        wf = self.g.tensors[node.inputs[1]].const
        wq, s_w = self.weights(node)
        bias = self._bias64(node, s_in, s_w)
        out = self._out16(node, s_in, s_w)
        mult, shift = _multipliers(s_in, s_w, self.q(out).scale, self.rounding)
        lo, hi = self._act16(out, a.act_min, a.act_max)
        cin = self.g.tensors[node.inputs[0]].shape[-1]
        depthwise = a.groups == cin and wf.shape[3] == 1 and a.groups > 1
        p = qir.ConvParams(
            stride_h=a.stride[0], stride_w=a.stride[1], pad_top=a.pads[0], pad_left=a.pads[1],
            dilation_h=a.dilation[0], dilation_w=a.dilation[1], input_offset=0,
            output_offset=0, act_min=lo, act_max=hi,
            ch_mult=wf.shape[0] // cin if depthwise else 1, multiplier=mult, shift=shift,
            filter=wq.transpose(3, 1, 2, 0).copy() if depthwise else wq, bias=bias)
        kernel = "depthwise_conv2d_s16" if depthwise else "conv2d_s16"
        self.emit(node, kernel, [x], [out], p)

    def fc16(self, node: ir.Node) -> None:
        a: ir.FCAttrs = node.attrs
        x = self.as16(node.inputs[0])
        s_in = self.q(x).scale
        wq, s_w = self.weights(node)
        bias = self._bias64(node, s_in, s_w)
        out = self._out16(node, s_in, s_w)
        mult, shift = _multipliers(s_in, s_w, self.q(out).scale, self.rounding)
        lo, hi = self._act16(out, a.act_min, a.act_max)
        p = qir.FCParams(input_offset=0, filter_offset=0, output_offset=0, act_min=lo,
                         act_max=hi, multiplier=mult, shift=shift, filter=wq, bias=bias)
        self.emit(node, "fully_connected_s16", [x], [out], p)

    def binary16(self, node: ir.Node) -> None:
        a: ir.BinaryAttrs = node.attrs
        x1, x2 = (self.as16(t) for t in node.inputs)
        out = node.outputs[0]
        self.add16(out, self.calibrated16(out))
        s1, s2 = self.q(x1).scale, self.q(x2).scale
        if node.op == "Mul":
            self._widen16(out, s1 * s2)  # mq_mul_s16 does not shift left
        else:
            self._widen16(out, 2.0 * max(s1, s2) / 2.0**scheme16.ADD_LEFT_SHIFT_S16)
        so = self.q(out).scale
        lo, hi = self._act16(out, a.act_min, a.act_max)
        fn = scheme16.mul_params_s16 if node.op == "Mul" else scheme16.add_params_s16
        p = fn(s1, 0, s2, 0, so, 0, lo, hi)
        self.emit(node, f"{node.op.lower()}_s16", [x1, x2], [out], p)

    def pool16(self, node: ir.Node) -> None:
        a: ir.PoolAttrs = node.attrs
        x, out = self.as16(node.inputs[0]), node.outputs[0]
        self.add16(out, self.q(x))  # pooling keeps its input's quantization
        include = int(a.count_include_pad) if node.op == "AvgPool" else 0
        p = qir.PoolParams(
            kernel_h=a.kernel[0], kernel_w=a.kernel[1], stride_h=a.stride[0],
            stride_w=a.stride[1], pad_top=a.pads[0], pad_left=a.pads[1], pad_bottom=a.pads[2],
            pad_right=a.pads[3], count_include_pad=include, input_offset=0, output_offset=0,
            act_min=-32768, act_max=32767)
        self.emit(node, "max_pool_s16" if node.op == "MaxPool" else "avg_pool_s16", [x], [out], p)

    def softmax16(self, node: ir.Node) -> None:
        x, out = self.as16(node.inputs[0]), node.outputs[0]
        self.add16(out, qir.QParams(1.0 / 32768.0, 0))
        p = scheme16.softmax_params_s16(self.q(x).scale, node.attrs.beta, 1.0 / 32768.0)
        self.emit(node, "softmax_s16", [x], [out], p)

    def activation16(self, node: ir.Node) -> None:
        x, out = self.as16(node.inputs[0]), node.outputs[0]
        if node.attrs.kind not in ("sigmoid", "tanh"):  # any other: a 513-entry int16 table
            from ..ref import activations

            self.add16(out, self.calibrated16(out))
            table = scheme16.lut_table_s16(lambda v: activations.apply(node.attrs, v),
                                           self.q(x).scale, self.q(out).scale)
            self.emit(node, "lut_s16", [x], [out], qir.LutParams(table, node.attrs.kind))
            return
        self.add16(out, qir.QParams(2.0**-15, 0))
        tanh = node.attrs.kind == "tanh"
        p = scheme16.sigmoid_params_s16(self.q(x).scale, 2.0**-15, tanh)
        self.emit(node, "tanh_s16" if tanh else "logistic_s16", [x], [out], p)

    def layer_norm16(self, node: ir.Node) -> None:
        x = self.as16(node.inputs[0])
        _, gamma, beta = node.inputs
        out = node.outputs[0]
        self.add16(out, self.calibrated16(out))
        g, b = self.g.tensors[gamma].const, self.g.tensors[beta].const
        # gamma / s_out must stay <= 2^16 (the kernel's multiplier range)
        self._widen16(out, float(np.max(np.abs(g))) / 2.0**16)
        p = scheme16.layernorm_params_s16(self.q(x).scale, g, b, node.attrs.eps,
                                          self.q(out).scale, 0, -32768, 32767, self.rounding)
        self.emit(node, "layernorm_s16", [x], [out], p)


HANDLERS_16 = {
    "Conv2D": _Quantizer16.conv16,
    "FullyConnected": _Quantizer16.fc16,
    "Add": _Quantizer16.binary16,
    "Sub": _Quantizer16.binary16,
    "Mul": _Quantizer16.binary16,
    "Softmax": _Quantizer16.softmax16,
    "Activation": _Quantizer16.activation16,
    "LayerNorm": _Quantizer16.layer_norm16,
    "MaxPool": _Quantizer16.pool16,
    "AvgPool": _Quantizer16.pool16,
}
assert set(HANDLERS_16) <= set(HANDLERS)


def quantize_mixed(graph: ir.Graph, ranges: dict[str, Range], layers, rounding: str = "double"
                   ) -> qir.QGraph:
    """quantize() with the named layers in 16x8 (see module doc). Unknown names are an error
    listing the graph's layer names."""
    names = {n.name for n in graph.nodes}
    unknown = [n for n in layers if n not in names]
    if unknown:
        some = ", ".join(sorted(names)[:12])
        raise MicroqError(f"--int16: no layer named {', '.join(repr(u) for u in unknown)}; "
                          f"the layers are: {some}{' ...' if len(names) > 12 else ''}")
    return _Quantizer16(graph, ranges, rounding, set(layers)).run()


# ---- `--int16 auto`: which layers int8 cannot carry ------------------------------------------

AUTO_SQNR_DB = 35.0  # below this isolated int8 SQNR a layer's output goes to int16


def _consumers16(graph: ir.Graph, tensor: str) -> list[ir.Node]:
    """The 16x8-capable readers of `tensor`, through Reshape."""
    out = []
    for c in graph.consumers(tensor):
        if c.op == "Reshape":
            out += _consumers16(graph, c.outputs[0])
        elif supports_16(c):
            out.append(c)
    return out


# ---- `compare`: which layers would gain from 16x8, and by how much ---------------------------

GAIN_CANDIDATES = 5  # the lowest-isolated-SQNR 16x8-capable layers tried
GAIN_SAMPLES = 32


def int16_gains(graph: ir.Graph, feeds: dict[str, np.ndarray], rows, rounding: str = "double",
                candidates: int = GAIN_CANDIDATES, samples: int = GAIN_SAMPLES) -> list[dict]:
    """For the `candidates` 16x8-capable layers with the lowest isolated int8 SQNR (`rows`, as
    compare computes them) below AUTO_SQNR_DB (35 dB; none: nothing is run), the output SQNR
    (vs float, all graph outputs together) of the model with that layer and its 16x8-capable
    readers in 16x8, against all-int8. Both are quantized from min/max ranges of `feeds`
    (compare's data: the folder does not keep its calibration set) and run through the integer
    reference on its first `samples` samples. Sorted by gain."""
    from ..ref.float_exec import run_float
    from ..ref.int_exec import run_int
    from .calibrate import calibrate
    from .quantize import quantize

    by_tensor = {nd.outputs[0]: nd for nd in graph.nodes}
    cands = []
    for r in sorted(rows, key=lambda r: r.isolated.sqnr_db):
        node = by_tensor.get(r.tensor)
        if r.isolated.sqnr_db >= AUTO_SQNR_DB:  # a layer int8 carries well: not tried
            break
        if node is not None and supports_16(node) and node.name not in [c[0] for c in cands]:
            cands.append((node.name, float(r.isolated.sqnr_db)))
        if len(cands) >= candidates:
            break
    if not cands:
        return []
    feeds = {k: v[:samples] for k, v in feeds.items()}
    n = len(next(iter(feeds.values())))
    floats: dict[str, np.ndarray] = {}
    run_float(graph, feeds, on_tensor=floats.__setitem__)
    for k in graph.inputs:
        floats.setdefault(k, feeds[k])
    ranges = calibrate(graph, feeds, method="minmax")

    def out_sqnr(qg: qir.QGraph) -> float:
        sig = err = 0.0
        for i in range(n):
            ints = {}
            for k in qg.inputs:
                q = qg.tensors[k].q
                ints[k] = np.clip(np.round(feeds[k][i : i + 1] / q.scale) + q.zero_point,
                                  -128, 127).astype(np.int8)
            outs = run_int(qg, ints, rounding)
            for k, v in outs.items():
                q = qg.tensors[k].q
                got = (v.astype(np.float64) - q.zero_point) * q.scale
                ref = floats[k].reshape(n, -1)[i].astype(np.float64)
                sig += float((ref ** 2).sum())
                err += float(((ref - got.reshape(-1)) ** 2).sum())
        return float("inf") if err == 0 else 10 * np.log10(max(sig, 1e-30) / err)

    base = out_sqnr(quantize(graph, ranges, rounding))
    gains = []
    for name, iso in cands:
        node = next(nd for nd in graph.nodes if nd.name == name)
        layers = [name] + [c.name for c in _consumers16(graph, node.outputs[0])]
        try:
            mixed = quantize_mixed(graph, ranges, layers, rounding)
        except MicroqError as e:  # a 16x8 parameter limit: report, do not fail the compare
            gains.append({"layer": name, "layers": layers, "isolated_sqnr_db": iso,
                          "error": str(e)})
            continue
        s = out_sqnr(mixed)
        extra = sum(2 * int(np.prod(t.shape)) for t in mixed.tensors.values()
                    if t.dtype == "int16")
        gains.append({"layer": name, "layers": layers, "isolated_sqnr_db": iso,
                      "output_sqnr_int8_db": base, "output_sqnr_16x8_db": s,
                      "gain_db": s - base, "int16_bytes": extra})
    return sorted(gains, key=lambda g: -g.get("gain_db", -1e9))
