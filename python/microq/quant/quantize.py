"""The float -> int8 rewrite: float IR + calibrated ranges -> quantized IR (qir).

Scheme (TFLite int8): activations asymmetric int8 per tensor; weights symmetric int8 in
[-127, 127] per output channel; bias int32 at scale s_in * s_w[c]; requantization multipliers
and shifts computed offline in float64. Pool, reshape, transpose and pad share their input's
quantization; softmax outputs (1/256, -128); every other elementwise nonlinearity becomes a
256-entry lookup table. Concat inputs whose quantization differs from the output are rescaled by
an inserted requantize node.
"""

from __future__ import annotations


import numpy as np

from .. import ir, qir
from ..errors import MicroqError
from ..ref import activations
from ..ref.arith import round_half_away
from . import guards, rules_attention, rules_minmax, rules_norm, rules_recurrent, rules_spatial, scheme
from .scheme import quantize_weights_per_channel
from .calibrate import Range

INT32_MAX = 2**31 - 1


def params_from_range(lo: float, hi: float) -> qir.QParams:
    """Asymmetric int8 parameters covering [lo, hi] (widened to include 0, as TFLite/ORT)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-12:
        return qir.QParams(1.0, 0)  # an all-zero tensor: any scale represents it exactly
    scale = (hi - lo) / 255.0
    zp = int(round_half_away(-128 - lo / scale))
    return qir.QParams(float(np.float32(scale)), max(-128, min(127, zp)))


def _bias(b: np.ndarray, s_in: float, s_w: np.ndarray) -> np.ndarray:
    q = round_half_away(b.astype(np.float64) / (s_in * s_w))
    return np.clip(q, -INT32_MAX, INT32_MAX).astype(np.int32)


def _up_f32(x: float) -> float:
    """The smallest float32 >= x (scales are stored as float32)."""
    f = np.float32(x)
    if float(f) < x:
        f = np.nextafter(f, np.float32(np.inf))
    return float(f)


def fit_channels(name: str, w: np.ndarray, b: np.ndarray, s_in: float, input_offset: int,
                 wq: np.ndarray, s_w: np.ndarray, bias: np.ndarray):
    """Make every output channel's int32 accumulator provably safe (guards.py): reach *
    sum|wq| + |bias| <= 2^31 - 1, with the bias not saturated. A channel whose bias does not
    fit (tiny weights, large bias: s_in * s_w / s_out below 2^-31 and the bias beyond int32)
    gets a larger weight scale, as TFLite's quantizer does (AdjustWeightsForBiasScale in
    tensorflow/lite/tools/optimize/quantization_utils.cc), so that its bias fits; its weights
    then quantize coarser, which is harmless as they are negligible next to the bias. A
    channel whose weights alone overflow (too deep a reduction) is refused.

    w: float weights [Cout, ...], b: float bias [Cout]; returns (wq, s_w, bias)."""
    limit = INT32_MAX
    r = guards.reach(input_offset)
    flat_w = w.reshape(w.shape[0], -1).astype(np.float64)
    b = np.asarray(b, np.float64).reshape(-1)
    wq = wq.reshape(w.shape[0], -1).copy()
    s_w = np.asarray(s_w, np.float64).copy()
    bias = np.asarray(bias, np.int64).copy()
    wsum = np.abs(wq.astype(np.int64)).sum(axis=1)
    deep = np.flatnonzero(r * wsum >= limit)
    if deep.size:
        c = int(deep[0])
        raise MicroqError(
            f"node '{name}': output channel {c} sums {flat_w.shape[1]} products whose int8 "
            f"magnitudes ({r} * {int(wsum[c])}) exceed the int32 accumulator; the reduction is "
            "too deep for int8 inference: split the layer into smaller ones")
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        raw = np.abs(b / (s_in * s_w))
    bad = np.flatnonzero(~(raw + r * wsum < limit) | (r * wsum + np.abs(bias) > limit))
    for c in bad:
        room = limit - r * int(wsum[c]) - 1  # > 0 by the depth check
        s = max(float(s_w[c]), _up_f32(abs(float(b[c])) / (s_in * room)))
        for _ in range(64):
            q = np.clip(round_half_away(flat_w[c] / s), -127, 127).astype(np.int64)
            qb = round_half_away(float(b[c]) / (s_in * s))
            if r * int(np.abs(q).sum()) + abs(qb) <= limit:
                break
            s = _up_f32(s * (1 + 2**-20))
        else:  # pragma: no cover - each step shrinks both terms
            raise MicroqError(f"node '{name}': the bias of output channel {c} cannot be fitted "
                              "into int32")
        wq[c], s_w[c], bias[c] = q, s, qb
    return wq.reshape(w.shape).astype(np.int8), s_w, bias.astype(np.int32)


class _Quantizer:
    def __init__(self, graph: ir.Graph, ranges: dict[str, Range], rounding: str = "double"):
        self.g = graph
        self.ranges = ranges
        self.rounding = rounding  # multipliers as TFLite computes them for this rounding mode
        self.tensors: dict[str, qir.QTensor] = {}
        self.nodes: list[qir.QNode] = []

    # -- tensors -------------------------------------------------------------------------
    def q(self, name: str) -> qir.QParams:
        return self.tensors[name].q

    def add_tensor(self, name: str, q: qir.QParams, const: np.ndarray | None = None) -> None:
        self.tensors[name] = qir.QTensor(name, tuple(self.g.tensors[name].shape), q, const)

    def calibrated(self, name: str) -> qir.QParams:
        r = self.ranges.get(name)
        if r is None:
            raise MicroqError(f"tensor '{name}' was never reached during calibration")
        if not (np.isfinite(r.lo) and np.isfinite(r.hi)):  # e.g. a bias of 3.4e38
            raise MicroqError(f"tensor '{name}' overflows float32 on the calibration data "
                              f"(range {r.lo}..{r.hi}); check the weights and biases feeding it")
        return params_from_range(r.lo, r.hi)

    def operand(self, name: str) -> str:
        """Make sure an input operand exists as a quantized tensor (constants get their own
        per-tensor parameters from their values)."""
        if name not in self.tensors:
            t = self.g.tensors[name]
            if t.const is None:
                raise MicroqError(f"tensor '{name}' is used before it is produced")
            qp = params_from_range(float(t.const.min()), float(t.const.max()))
            data = np.clip(round_half_away(t.const / qp.scale) + qp.zero_point, -128, 127)
            self.add_tensor(name, qp, data.astype(np.int8))
        return name

    def weights(self, node: ir.Node) -> tuple[np.ndarray, np.ndarray]:
        """Int8 weights [Cout, ...] and per-channel scales of a Conv2D/FC node (a QDQ import
        overrides this to keep the model's own)."""
        return quantize_weights_per_channel(self.g.tensors[node.inputs[1]].const)

    def bias(self, node: ir.Node, s_in: float, s_w: np.ndarray) -> np.ndarray:
        return _bias(self.g.tensors[node.inputs[2]].const, s_in, s_w)

    def fit(self, node: ir.Node, wq: np.ndarray, s_w: np.ndarray, bias: np.ndarray,
            s_in: float, input_offset: int):
        """fit_channels on this node's float weights and bias."""
        w, b = (self.g.tensors[node.inputs[i]].const for i in (1, 2))
        return fit_channels(node.name, w, b, s_in, input_offset, wq, s_w, bias)

    def widen_output(self, out: str, s_in: float, s_w: np.ndarray, bounds: np.ndarray) -> None:
        """A conv/FC multiplier above 1 left-shifts the accumulator, which must stay within
        int32 (guards.py). A nearly dead output (a calibrated range far below one accumulator
        step, e.g. a ReLU that almost never fires) would need more: its output scale is raised
        to the smallest one whose left shifts are safe, instead of refusing the layer."""
        bounds = np.maximum(np.asarray(bounds, np.float64), 1.0)
        max_left = np.minimum(np.floor(np.log2(INT32_MAX / bounds)), guards.SHIFT_MAX)
        if np.any(max_left < 0):
            return  # not bounded at all: the guard refuses the layer
        # real = s_in s_w / s_out < 2^max_left keeps the shift <= max_left (margin: rounding)
        self.widen_to(out, float(np.max(s_in * np.asarray(s_w, np.float64) / 2.0 ** max_left)))

    def widen_to(self, out: str, bound: float) -> None:
        """Give `out` a scale above `bound` (with a margin for the multiplier's rounding) if its
        calibrated one is not; the zero point keeps the calibrated lower end."""
        need = bound * (1 + 2**-20)
        if self.q(out).scale > need:
            return
        r = self.ranges.get(out)
        lo = min(r.lo, 0.0) if r is not None else 0.0
        scale = _up_f32(need)
        zp = int(np.clip(round_half_away(-128 - lo / scale), -128, 127))
        self.add_tensor(out, qir.QParams(scale, zp))

    def emit(self, node: ir.Node, kernel: str, inputs, outputs, params) -> None:
        qn = qir.QNode(node.name, kernel, list(inputs), list(outputs), params,
                       list(node.source) or [node.name])
        guards.check_node(qn, self.tensors, rounding=self.rounding)
        self.nodes.append(qn)

    # -- ops -----------------------------------------------------------------------------
    def run(self) -> qir.QGraph:
        for name in self.g.inputs:
            self.add_tensor(name, self.calibrated(name))
        for node in self.g.nodes:
            self.handle(node)
            self.after(node)
        return qir.QGraph(self.g.name, self.tensors, self.nodes, list(self.g.inputs),
                          list(self.g.outputs), dict(self.g.input_perm),
                          dict(self.g.logical_shapes))

    def after(self, node: ir.Node) -> None:
        """Hook run after each node is quantized (the QDQ importer requantizes to the model's
        own output parameters there)."""

    def handle(self, node: ir.Node) -> None:
        """Quantize one node; a scheme error is reported with the node's name."""
        handler = HANDLERS.get(node.op)
        if handler is None:
            raise MicroqError(f"node '{node.name}': op {node.op} has no quantized kernel")
        try:
            handler(self, node)
        except MicroqError as e:
            if f"'{node.name}'" in str(e):
                raise
            raise MicroqError(f"node '{node.name}' ({node.op}): {e}") from None

    def conv(self, node: ir.Node) -> None:
        a: ir.ConvAttrs = node.attrs
        x, w, b = node.inputs
        out = node.outputs[0]
        s_in, zp_in = self.q(x).scale, self.q(x).zero_point
        self.add_tensor(out, self.calibrated(out))
        wf = self.g.tensors[w].const
        wq, s_w = self.weights(node)
        wq, s_w, bias = self.fit(node, wq, s_w, self.bias(node, s_in, s_w), s_in, -zp_in)
        self.widen_output(out, s_in, s_w, guards.reach(-zp_in) * np.abs(
            wq.reshape(len(s_w), -1).astype(np.int64)).sum(axis=1) + np.abs(bias))
        qo = self.q(out)
        mult, shift = scheme.channel_multipliers(s_in, s_w, qo.scale, self.rounding)
        lo, hi = scheme.act_range(qo.scale, qo.zero_point, a.act_min, a.act_max)
        cin = self.g.tensors[x].shape[-1]
        cout = wf.shape[0]
        depthwise = a.groups == cin and wf.shape[3] == 1 and a.groups > 1
        kernel = "depthwise_conv2d" if depthwise else "conv2d"
        filt = wq.transpose(3, 1, 2, 0).copy() if depthwise else wq
        p = scheme.conv_params(a.stride, a.dilation, a.pads[:2], zp_in, qo.zero_point, (lo, hi),
                               mult, shift, filt, bias, cout // cin if depthwise else 1)
        self.emit(node, kernel, [x], [out], p)

    def fully_connected(self, node: ir.Node) -> None:
        a: ir.FCAttrs = node.attrs
        x, w, b = node.inputs
        out = node.outputs[0]
        qi = self.q(x)
        self.add_tensor(out, self.calibrated(out))
        wq, s_w = self.weights(node)
        wq, s_w, bias = self.fit(node, wq, s_w, self.bias(node, qi.scale, s_w), qi.scale,
                                 -qi.zero_point)
        self.widen_output(out, qi.scale, s_w, guards.reach(-qi.zero_point) * np.abs(
            wq.astype(np.int64)).sum(axis=1) + np.abs(bias))
        qo = self.q(out)
        mult, shift = scheme.channel_multipliers(qi.scale, s_w, qo.scale, self.rounding)
        lo, hi = scheme.act_range(qo.scale, qo.zero_point, a.act_min, a.act_max)
        p = scheme.fc_params(qi.zero_point, qo.zero_point, (lo, hi), mult, shift, wq, bias)
        self.emit(node, "fully_connected", [x], [out], p)

    def pool(self, node: ir.Node) -> None:
        a: ir.PoolAttrs = node.attrs
        x, out = node.inputs[0], node.outputs[0]
        qi = self.q(x)
        self.add_tensor(out, qi)  # pooling keeps its input's quantization
        include = int(a.count_include_pad) if node.op == "AvgPool" else 0
        p = qir.PoolParams(
            kernel_h=a.kernel[0], kernel_w=a.kernel[1], stride_h=a.stride[0],
            stride_w=a.stride[1], pad_top=a.pads[0], pad_left=a.pads[1], pad_bottom=a.pads[2],
            pad_right=a.pads[3], count_include_pad=include,
            input_offset=-qi.zero_point if include else 0,
            output_offset=qi.zero_point if include else 0, act_min=-128, act_max=127)
        self.emit(node, "max_pool" if node.op == "MaxPool" else "avg_pool", [x], [out], p)

    def binary(self, node: ir.Node) -> None:
        a: ir.BinaryAttrs = node.attrs
        x1, x2 = (self.operand(i) for i in node.inputs)
        out = node.outputs[0]
        self.add_tensor(out, self.calibrated(out))
        q1, q2 = self.q(x1), self.q(x2)
        # the kernels' limits on the output rescale (a nearly constant output is widened)
        if node.op == "Mul":
            self.widen_to(out, q1.scale * q2.scale / 2.0**scheme.MUL_MAX_SHIFT)
        else:
            self.widen_to(out, 2.0 * max(q1.scale, q2.scale) / 2.0**scheme.ADD_LEFT_SHIFT)
        qo = self.q(out)
        lo, hi = scheme.act_range(qo.scale, qo.zero_point, a.act_min, a.act_max)
        if node.op == "Mul":
            p = scheme.mul_params(q1.scale, q1.zero_point, q2.scale, q2.zero_point, qo.scale,
                                  qo.zero_point, lo, hi, self.rounding)
            self.emit(node, "mul", [x1, x2], [out], p)
        else:
            p = scheme.add_params(q1.scale, q1.zero_point, q2.scale, q2.zero_point, qo.scale,
                                  qo.zero_point, lo, hi, self.rounding)
            self.emit(node, "add" if node.op == "Add" else "sub", [x1, x2], [out], p)

    def activation(self, node: ir.Node) -> None:
        x, out = node.inputs[0], node.outputs[0]
        qi = self.q(x)
        self.add_tensor(out, self.calibrated(out))
        qo = self.q(out)
        table = scheme.lut_table(lambda v: activations.apply(node.attrs, v), qi.scale,
                                 qi.zero_point, qo.scale, qo.zero_point)
        self.emit(node, "lut", [x], [out], qir.LutParams(table, node.attrs.kind))

    def softmax(self, node: ir.Node) -> None:
        x, out = node.inputs[0], node.outputs[0]
        self.add_tensor(out, qir.QParams(1.0 / 256.0, -128))
        p = scheme.softmax_params(self.q(x).scale, node.attrs.beta, self.rounding)
        self.emit(node, "softmax", [x], [out], p)

    def shared(self, node: ir.Node) -> None:
        x, out = node.inputs[0], node.outputs[0]
        qi = self.q(x)
        self.add_tensor(out, qi)
        a = node.attrs
        if node.op == "Reshape":
            self.emit(node, "reshape", [x], [out], qir.ReshapeParams(tuple(a.shape)))
        elif node.op == "Transpose":
            self.emit(node, "transpose", [x], [out], qir.TransposeParams(tuple(a.perm)))
        else:  # Pad: a 4-D view, leading axes of size 1 added for lower ranks
            pads = [(0, 0)] * (4 - len(a.pads)) + [tuple(p) for p in a.pads]
            if len(pads) != 4:
                raise MicroqError(f"node '{node.name}': Pad supports tensors of rank <= 4")
            value = int(np.clip(round_half_away(a.value / qi.scale) + qi.zero_point, -128, 127))
            p = qir.PadParams(tuple(int(b) for b, _ in pads), tuple(int(e) for _, e in pads), value)
            self.emit(node, "pad", [x], [out], p)

    def concat(self, node: ir.Node) -> None:
        out = node.outputs[0]
        self.add_tensor(out, self.calibrated(out))
        qo = self.q(out)
        ins = []
        for i, name in enumerate(self.operand(n) for n in node.inputs):
            qi = self.q(name)
            if qi != qo:
                tmp = f"{out}__in{i}_requant"
                self.g.tensors[tmp] = ir.Tensor(tmp, self.g.tensors[name].shape)
                self.add_tensor(tmp, qo)
                p = scheme.requantize_params(qi.scale, qi.zero_point, qo.scale, qo.zero_point,
                                             rounding=self.rounding)
                self.emit(node, "requantize", [name], [tmp], p)
                name = tmp
            ins.append(name)
        self.emit(node, "concat", ins, [out], qir.ConcatParams(node.attrs.axis))

    # -- transformer ops -----------------------------------------------------------------
    def matmul(self, node: ir.Node) -> None:
        """Two per-tensor int8 activations; alpha (attention's 1/sqrt(d)) rides on the
        requantization multiplier."""
        a: ir.MatMulAttrs = node.attrs
        x1, x2 = (self.operand(i) for i in node.inputs)
        out = node.outputs[0]
        self.add_tensor(out, self.calibrated(out))
        q1, q2 = self.q(x1), self.q(x2)
        if not a.alpha > 0:
            raise MicroqError(f"node '{node.name}': MatMul scale {a.alpha!r} must be positive")
        self.widen_to(out, q1.scale * a.alpha * q2.scale)  # the kernel only shifts right
        qo = self.q(out)
        p = scheme.batch_matmul_params(q1.scale * a.alpha, q1.zero_point, q2.scale, q2.zero_point,
                                       qo.scale, qo.zero_point, a.transpose_b,
                                       rounding=self.rounding)
        self.emit(node, "batch_matmul", [x1, x2], [out], p)

    def layer_norm(self, node: ir.Node) -> None:
        x, gamma, beta = node.inputs
        out = node.outputs[0]
        qi = self.q(x)
        self.add_tensor(out, self.calibrated(out))
        qo = self.q(out)
        p = scheme.layernorm_params(qi.scale, qi.zero_point, self.g.tensors[gamma].const,
                                    self.g.tensors[beta].const, node.attrs.eps, qo.scale,
                                    qo.zero_point, rounding=self.rounding)
        self.emit(node, "layernorm", [x], [out], p)

    def abs_(self, node: ir.Node) -> None:
        """|x| requantized from the input's scale to the output's (calibrated, >= 0)."""
        x, out = node.inputs[0], node.outputs[0]
        qi = self.q(x)
        self.add_tensor(out, self.calibrated(out))
        qo = self.q(out)
        p = scheme.requantize_params(qi.scale, qi.zero_point, qo.scale, qo.zero_point,
                                     rounding=self.rounding)
        self.emit(node, "abs", [x], [out], p)

    def slice_(self, node: ir.Node) -> None:
        a: ir.SliceAttrs = node.attrs
        x, out = node.inputs[0], node.outputs[0]
        self.add_tensor(out, self.q(x))  # a slice keeps its input's quantization
        self.emit(node, "slice", [x], [out], qir.SliceParams(a.begin, a.end, a.step))


HANDLERS = {
    "Conv2D": _Quantizer.conv,
    "FullyConnected": _Quantizer.fully_connected,
    "MaxPool": _Quantizer.pool,
    "AvgPool": _Quantizer.pool,
    "Add": _Quantizer.binary,
    "Sub": _Quantizer.binary,
    "Mul": _Quantizer.binary,
    "Activation": _Quantizer.activation,
    "Softmax": _Quantizer.softmax,
    "MaskedSoftmax": rules_attention.masked_softmax,
    "Reshape": _Quantizer.shared,
    "Transpose": _Quantizer.shared,
    "Pad": _Quantizer.shared,
    "Concat": _Quantizer.concat,
    "MatMul": _Quantizer.matmul,
    "LayerNorm": _Quantizer.layer_norm,
    "Slice": _Quantizer.slice_,
    "Resize": rules_spatial.resize,
    "ConvTranspose2D": rules_spatial.transpose_conv,
    "Conv3D": rules_spatial.conv3d,
    "GroupNorm": rules_norm.group_norm,
    "Max": rules_minmax.max_min,
    "Min": rules_minmax.max_min,
    "PRelu": rules_minmax.prelu,
    "ReduceMax": rules_minmax.reduce_extreme,
    "ReduceMin": rules_minmax.reduce_extreme,
    "ArgMax": rules_minmax.argmax,
    "LSTM": rules_recurrent.recurrent,
    "GRU": rules_recurrent.recurrent,
    "Abs": _Quantizer.abs_,
}


def quantize(graph: ir.Graph, ranges: dict[str, Range], rounding: str = "double") -> qir.QGraph:
    """Rewrite the float graph into the quantized graph using calibrated ranges; multipliers
    are quantized for `rounding` ("double" or "single", as TFLITE_SINGLE_ROUNDING)."""
    return _Quantizer(graph, ranges, rounding).run()


MASK_MIN = -1e4  # an additive constant this negative before a Softmax is a "masked out" entry


def check_additive_masks(graph: ir.Graph) -> None:
    """A pure constant mask before a Softmax (0 and -inf-like entries) became a MaskedSoftmax in
    the importer; an Add still adding masked entries here also adds a bias (other non-zero
    finite values, e.g. ALiBi + causal), which has no int8 form: the -inf would swamp the
    scores' scale (measured 16.6 dB on a causal SDPA when it was compiled as data)."""
    def feeds_softmax(t: str) -> bool:  # directly or through layout moves
        return any(c.op == "Softmax" or (c.op in ("Transpose", "Reshape") and
                                         feeds_softmax(c.outputs[0]))
                   for c in graph.consumers(t))

    for n in graph.nodes:
        if n.op != "Add" or not feeds_softmax(n.outputs[0]):
            continue
        for name in n.inputs:
            c = graph.tensors[name].const
            if c is not None and c.size and not (np.nan_to_num(c, nan=0.0) > MASK_MIN).all():
                finite = c[np.isfinite(c) & (c > MASK_MIN) & (c != 0)]
                if not finite.size:  # a pure mask the importer did not fuse
                    raise MicroqError(
                        f"node '{n.name}' adds the constant attention mask '{name}' (-inf "
                        "entries) but its result is not only the input of one Softmax over the "
                        "last axis: microq compiles a mask only right before such a Softmax")
                raise MicroqError(
                    f"node '{n.name}' adds the constant '{name}' which holds masked (-inf) "
                    f"entries and a bias (e.g. {float(finite.reshape(-1)[0]):.3g}) "
                    f"before a Softmax: a bias together with a mask (e.g. ALiBi + causal) is "
                    f"not supported in int8; only masks of 0 and -inf entries compile")


def check_finite_weights(graph: ir.Graph) -> None:
    check_additive_masks(graph)
    for t in graph.tensors.values():
        if t.const is not None and not np.all(np.isfinite(t.const)):
            c = t.const
            users = [n for n in graph.nodes if t.name in n.inputs]
            where = f" (used by {', '.join(repr(n.name) for n in users[:3])})" if users else ""
            if not np.isnan(c).any() and not np.isposinf(c).any():  # -inf only: a mask
                raise MicroqError(
                    f"constant '{t.name}'{where} holds -inf entries, an attention mask that "
                    "does not reach a Softmax directly: microq compiles a 0 / -inf mask only "
                    "as Add(scores, mask) or Where(mask, scores, -inf) right before a Softmax "
                    "over the last axis")
            raise MicroqError(f"constant '{t.name}'{where} contains NaN or +Inf; fix the "
                              "model's weights")


__all__ = ["quantize", "params_from_range", "quantize_weights_per_channel", "check_finite_weights",
           "check_additive_masks"]
