"""TFLite int8 operators -> quantized IR (qir) nodes, with the parameters TFLite Micro's Prepare
functions compute: scales as stored (float32) promoted to double, QuantizeMultiplier, fused
activations clamped by CalculateActivationRangeQuantized, padding by ComputePaddingHeightWidth.

HANDLERS is the one registry: TFLite operator code -> lowering method.
"""

from __future__ import annotations

import numpy as np

from .. import qir
from ..errors import MicroqError
from ..quant import guards, scheme
from ..quant import s16 as scheme16
from ..ref.arith import quantize_multiplier, round_half_away
from .reader import TfModel, TfOp, TfTensor

# schema ActivationFunctionType -> the real interval it clamps to (None: no clamp).
_ACTIVATIONS = {0: None, 1: (0.0, None), 2: (-1.0, 1.0), 3: (0.0, 6.0)}
_ACT_NAMES = {4: "TANH", 5: "SIGN_BIT"}
_SAME, _VALID = 0, 1  # schema Padding


def compute_padding(stride: int, dilation: int, in_size: int, k: int, out_size: int):
    """TFLite ComputePaddingWithOffset: (before, after); the odd pixel goes after."""
    eff_k = (k - 1) * dilation + 1
    total = max((out_size - 1) * stride + eff_k - in_size, 0)
    return total // 2, total - total // 2


def compute_out_size(padding: int, in_size: int, k: int, stride: int, dilation: int) -> int:
    """TFLite ComputeOutSize."""
    eff_k = (k - 1) * dilation + 1
    if padding == _SAME:
        return (in_size + stride - 1) // stride
    return (in_size + stride - eff_k) // stride


def _quantize_f32(f: float, scale: np.float32, zero_point: int) -> int:
    # TFLite's Quantize divides in float, then TfLiteRound (half away from zero).
    return int(zero_point) + round_half_away(float(np.float32(f) / scale))


class Lowering:
    def __init__(self, model: TfModel, rounding: str):
        self.m = model
        self.rounding = rounding
        self.names = _unique_names(model.tensors)
        self.tensors: dict[str, qir.QTensor] = {}
        self.nodes: list[qir.QNode] = []
        self.lstm_states: set[int] = set()  # state tensors already taken by an LSTM

    # -- tensor checks -------------------------------------------------------------------
    def t(self, idx: int) -> TfTensor:
        # never Python's negative indexing: -1 (an omitted input) is not the last tensor
        if not 0 <= idx < len(self.m.tensors):
            raise MicroqError(f"{self.m.path}: tensor index {idx} is out of range "
                              f"(0..{len(self.m.tensors) - 1}): the file is corrupt")
        return self.m.tensors[idx]

    def _fail(self, op: TfOp, role: str, t: TfTensor, why: str):
        raise MicroqError(f"{self.m.path}: {op.name} ({op.opcode}): {role} tensor '{t.name}' "
                          f"{why}")

    def act(self, op: TfOp, idx: int, role: str) -> str:
        """An int8 per-tensor activation (or int8 constant operand), or an int16 one of a 16x8
        model (zero point 0); returns its name."""
        t = self.t(idx)
        if t.dtype not in ("INT8", "INT16"):
            self._fail(op, role, t, f"is {t.dtype}, expected INT8 or INT16 (microq imports "
                       "int8-quantized models and 16x8 ones: int16 activations, int8 weights)")
        if len(t.scales) != 1 or len(t.zero_points) != 1:
            self._fail(op, role, t, f"has {len(t.scales)} scales; activations must be "
                       "quantized per tensor")
        if not (t.scales[0] > 0 and np.isfinite(t.scales[0])):
            self._fail(op, role, t, f"has scale {float(t.scales[0])!r}; expected a positive "
                       "finite scale")
        if t.dtype == "INT16" and int(t.zero_points[0]) != 0:
            self._fail(op, role, t, f"has zero point {int(t.zero_points[0])}; 16x8 int16 "
                       "activations are symmetric (zero point 0)")
        if not -128 <= int(t.zero_points[0]) <= 127:
            self._fail(op, role, t, f"has zero point {int(t.zero_points[0])}; an int8 zero "
                       "point is in [-128, 127]")
        name = self.names[t.index]
        if name not in self.tensors:
            q = qir.QParams(float(t.scales[0]), int(t.zero_points[0]))
            dtype = "int16" if t.dtype == "INT16" else "int8"
            self.tensors[name] = qir.QTensor(name, t.shape, q, t.data, dtype)
        return name

    def is16(self, name: str) -> bool:
        return self.tensors[name].dtype == "int16"

    def same_dtype(self, op: TfOp, names) -> bool:
        """True for a 16x8 operator: every activation int16; mixed types are an error."""
        kinds = {self.tensors[n].dtype for n in names}
        if len(kinds) > 1:
            raise MicroqError(f"{self.m.path}: {op.name} ({op.opcode}): mixes int8 and int16 "
                              "activations; only QUANTIZE converts between them")
        return kinds == {"int16"}

    def qp(self, name: str) -> qir.QParams:
        return self.tensors[name].q

    def weights(self, op: TfOp, idx: int, channels: int, axis: int) -> tuple[np.ndarray, list]:
        """int8 constant weights, symmetric, one scale per channel along `axis` (or one)."""
        t = self.t(idx)
        if t.dtype != "INT8" or t.data is None:
            self._fail(op, "weight", t, f"is {'constant ' if t.data is not None else ''}"
                       f"{t.dtype}, expected constant INT8")
        n = len(t.scales)
        if n not in (1, channels) or (n > 1 and t.quantized_dimension != axis):
            self._fail(op, "weight", t, f"has {n} scales on axis {t.quantized_dimension}; "
                       f"expected 1 or {channels} on axis {axis}")
        if np.any(t.zero_points != 0):
            self._fail(op, "weight", t, "has a nonzero zero point; weights must be symmetric")
        bad = [float(s) for s in t.scales if not (np.isfinite(s) and s > 0)]
        if bad or n == 0:
            self._fail(op, "weight", t, f"has scale {bad[0] if bad else 'none'}; weight scales "
                       "must be positive and finite")
        scales = [float(s) for s in t.scales] if n > 1 else [float(t.scales[0])] * channels
        return t.data, scales

    def bias(self, op: TfOp, channels: int, wide: bool = False) -> np.ndarray | None:
        """int32 bias; `wide` (16x8): int64, as TFLite's 16x8 scheme stores it."""
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            return None
        t = self.t(op.inputs[2])
        if wide:
            if t.dtype != "INT64" or t.data is None or t.data.size != channels:
                self._fail(op, "bias", t, f"is {t.dtype} {list(t.shape)}, expected constant "
                           f"INT64 [{channels}] (a 16x8 layer accumulates in int64)")
            return t.data.astype(np.int64).reshape(channels)
        if t.dtype != "INT32" or t.data is None or t.data.size != channels:
            self._fail(op, "bias", t, f"is {t.dtype} {list(t.shape)}, expected constant INT32 "
                       f"[{channels}]")
        return t.data.astype(np.int32).reshape(channels)

    def act_range(self, op: TfOp, out: str) -> tuple[int, int]:
        """CalculateActivationRangeQuantized of the op's fused activation."""
        code = getattr(op.options, "FusedActivationFunction", lambda: 0)()
        if code not in _ACTIVATIONS:
            raise MicroqError(f"{self.m.path}: {op.name} ({op.opcode}): fused activation "
                              f"{_ACT_NAMES.get(code, code)} is not supported")
        clip = _ACTIVATIONS[code]
        qmin, qmax = (-32768, 32767) if self.is16(out) else (-128, 127)
        if clip is None:
            return qmin, qmax
        q = self.qp(out)
        s = np.float32(q.scale)
        lo = max(qmin, _quantize_f32(clip[0], s, q.zero_point))
        hi = qmax if clip[1] is None else min(qmax, _quantize_f32(clip[1], s, q.zero_point))
        return lo, hi

    def multipliers(self, s_in: float, s_w: list, s_out: float, op: TfOp | None = None):
        bad = [sw for sw in s_w if not (np.isfinite(sw) and sw >= 0)]
        if bad:
            where = f"{op.name} ({op.opcode}): " if op is not None else ""
            raise MicroqError(f"{self.m.path}: {where}weight scale {bad[0]!r} is not a "
                              "non-negative finite number")
        return scheme.channel_multipliers(s_in, s_w, s_out, self.rounding)

    def params(self, op: TfOp, fn, *args, **kw):
        """A scheme.*_params call whose MicroqError names the file and the operator."""
        try:
            return fn(*args, **kw)
        except MicroqError as e:
            raise MicroqError(f"{self.m.path}: {op.name} ({op.opcode}): {e}") from None

    def emit(self, op: TfOp, kernel: str, inputs, outputs, params) -> None:
        source = [self.names[self.t(i).index] for i in op.outputs]
        node = qir.QNode(op.name, kernel, list(inputs), list(outputs), params, source)
        # int32 accumulator and shift range proved before anything reaches the kernels
        guards.check_node(node, self.tensors, f"{self.m.path}: ", self.rounding)
        self.nodes.append(node)

    def options(self, op: TfOp):
        if op.options is None:
            raise MicroqError(f"{self.m.path}: {op.name} ({op.opcode}): its options (stride, "
                              "padding, ...) are missing from the file")
        return op.options

    # -- ops -----------------------------------------------------------------------------
    def conv(self, op: TfOp) -> None:
        depthwise = op.opcode == "DEPTHWISE_CONV_2D"
        x, out = self.act(op, op.inputs[0], "input"), self.act(op, op.outputs[0], "output")
        o = self.options(op)
        _, h, w, cin = self.tensors[x].shape
        _, oh, ow, cout = self.tensors[out].shape
        filt_shape = self.t(op.inputs[1]).shape
        kh, kw = filt_shape[1], filt_shape[2]
        filt, s_w = self.weights(op, op.inputs[1], cout, 3 if depthwise else 0)
        sh, sw, dh, dw = o.StrideH(), o.StrideW(), o.DilationHFactor(), o.DilationWFactor()
        for size, want, k, s, d in ((oh, h, kh, sh, dh), (ow, w, kw, sw, dw)):
            if size != compute_out_size(o.Padding(), want, k, s, d):
                raise MicroqError(f"{self.m.path}: {op.name}: output size {size} does not "
                                  "follow from the input size, stride and padding")
        pad_top = compute_padding(sh, dh, h, kh, oh)[0] if o.Padding() == _SAME else 0
        pad_left = compute_padding(sw, dw, w, kw, ow)[0] if o.Padding() == _SAME else 0
        qi, qo = self.qp(x), self.qp(out)
        wide = self.same_dtype(op, [x, out])
        mult, shift = self.multipliers(qi.scale, s_w, qo.scale, op)
        lo, hi = self.act_range(op, out)
        p = scheme.conv_params((sh, sw), (dh, dw), (pad_top, pad_left), qi.zero_point,
                               qo.zero_point, (lo, hi), mult, shift, filt, self.bias(op, cout, wide),
                               cout // cin if depthwise else 1)
        kernel = "depthwise_conv2d" if depthwise else "conv2d"
        self.emit(op, kernel + ("_s16" if wide else ""), [x], [out], p)

    def fully_connected(self, op: TfOp) -> None:
        x, out = self.act(op, op.inputs[0], "input"), self.act(op, op.outputs[0], "output")
        if op.options is not None and op.options.WeightsFormat() != 0:
            raise MicroqError(f"{self.m.path}: {op.name}: shuffled FC weights are not supported")
        wt = self.t(op.inputs[1])
        if len(wt.shape) != 2:
            self._fail(op, "weight", wt, f"has shape {list(wt.shape)}, expected [out, in]")
        n_out, n_in = wt.shape
        filt, s_w = self.weights(op, op.inputs[1], n_out, 0)
        rows = int(np.prod(self.tensors[x].shape)) // n_in
        if self.tensors[x].shape[-1] != n_in:  # TFLite flattens the input to [rows, in]
            flat = f"{x}__rows"
            self.tensors[flat] = qir.QTensor(flat, (rows, n_in), self.qp(x),
                                             dtype=self.tensors[x].dtype)
            self.emit(op, "reshape", [x], [flat], qir.ReshapeParams((rows, n_in)))
            x = flat
        qi, qo = self.qp(x), self.qp(out)
        wide = self.same_dtype(op, [x, out])
        mult, shift = self.multipliers(qi.scale, s_w, qo.scale, op)
        lo, hi = self.act_range(op, out)
        p = scheme.fc_params(qi.zero_point, qo.zero_point, (lo, hi), mult, shift, filt,
                             self.bias(op, n_out, wide))
        self.emit(op, "fully_connected_s16" if wide else "fully_connected", [x], [out], p)

    def pool(self, op: TfOp) -> None:
        x, out = self.act(op, op.inputs[0], "input"), self.act(op, op.outputs[0], "output")
        o = self.options(op)
        _, h, w, _ = self.tensors[x].shape
        _, oh, ow, _ = self.tensors[out].shape
        kh, kw, sh, sw = o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW()
        same = o.Padding() == _SAME
        pt, pb = compute_padding(sh, 1, h, kh, oh) if same else (0, 0)
        pl, pr = compute_padding(sw, 1, w, kw, ow) if same else (0, 0)
        if self.qp(x) != self.qp(out):
            raise MicroqError(f"{self.m.path}: {op.name} ({op.opcode}): input and output "
                              "quantization differ; TFLite pooling requires them equal")
        lo, hi = self.act_range(op, out)
        # TFLite pools the raw int8 values and divides by the in-image tap count.
        p = qir.PoolParams(kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, pad_top=pt,
                           pad_left=pl, pad_bottom=pb, pad_right=pr, count_include_pad=0,
                           input_offset=0, output_offset=0, act_min=lo, act_max=hi)
        kernel = "avg_pool" if op.opcode == "AVERAGE_POOL_2D" else "max_pool"
        if self.same_dtype(op, [x, out]):
            kernel += "_s16"
        self.emit(op, kernel, [x], [out], p)

    def binary(self, op: TfOp) -> None:
        x1, x2 = (self.act(op, i, f"input{k + 1}") for k, i in enumerate(op.inputs[:2]))
        out = self.act(op, op.outputs[0], "output")
        q1, q2, qo = self.qp(x1), self.qp(x2), self.qp(out)
        lo, hi = self.act_range(op, out)
        args = (q1.scale, q1.zero_point, q2.scale, q2.zero_point, qo.scale, qo.zero_point, lo, hi)
        if self.same_dtype(op, [x1, x2, out]):
            fn = scheme16.mul_params_s16 if op.opcode == "MUL" else scheme16.add_params_s16
            p = self.params(op, fn, *args)
            self.emit(op, op.opcode.lower() + "_s16", [x1, x2], [out], p)
            return
        if op.opcode == "MUL":
            p = self.params(op, scheme.mul_params, *args, rounding=self.rounding)
        else:  # TFLite SUB uses ADD's parameters
            p = self.params(op, scheme.add_params, *args, rounding=self.rounding)
        self.emit(op, op.opcode.lower(), [x1, x2], [out], p)

    def softmax(self, op: TfOp) -> None:
        x, out = self.act(op, op.inputs[0], "input"), self.act(op, op.outputs[0], "output")
        if self.same_dtype(op, [x, out]):
            beta = float(op.options.Beta()) if op.options is not None else 1.0
            p = self.params(op, scheme16.softmax_params_s16, self.qp(x).scale, beta,
                            self.qp(out).scale)
            self.emit(op, "softmax_s16", [x], [out], p)
            return
        if self.qp(out) != qir.QParams(1.0 / 256.0, -128):
            self._fail(op, "output", self.t(op.outputs[0]), f"is quantized {self.qp(out)}; "
                       "int8 softmax needs scale 1/256 and zero point -128")
        beta = float(op.options.Beta()) if op.options is not None else 1.0
        p = self.params(op, scheme.softmax_params, self.qp(x).scale, beta, self.rounding)
        self.emit(op, "softmax", [x], [out], p)

    def reshape(self, op: TfOp) -> None:
        x, out = self.act(op, op.inputs[0], "input"), self.act(op, op.outputs[0], "output")
        shape = tuple(self.tensors[out].shape)
        if int(np.prod(shape)) != int(np.prod(self.tensors[x].shape)):
            raise MicroqError(f"{self.m.path}: {op.name}: reshape changes the element count")
        self.emit(op, "reshape", [x], [out], qir.ReshapeParams(shape))

    def quantize(self, op: TfOp) -> None:
        """int8 -> int8 QUANTIZE (TFLite Requantize); the float ones at the edges are dropped
        before lowering."""
        x, out = self.act(op, op.inputs[0], "input"), self.act(op, op.outputs[0], "output")
        qi, qo = self.qp(x), self.qp(out)
        if self.is16(x) or self.is16(out):
            p = self.params(op, scheme16.requantize_params_s16, qi.scale, qi.zero_point,
                            self.is16(x), qo.scale, qo.zero_point, self.is16(out))
            self.emit(op, "requantize_s16", [x], [out], p)
            return
        p = self.params(op, scheme.requantize_params, qi.scale, qi.zero_point, qo.scale,
                        qo.zero_point, rounding=self.rounding)
        self.emit(op, "requantize", [x], [out], p)

    def sigmoid16(self, op: TfOp) -> None:
        """int16 LOGISTIC / TANH (int8 ones are not imported)."""
        x, out = self.act(op, op.inputs[0], "input"), self.act(op, op.outputs[0], "output")
        if not self.same_dtype(op, [x, out]):
            raise MicroqError(f"{self.m.path}: {op.name} ({op.opcode}): only the int16 (16x8) "
                              "form is supported")
        p = self.params(op, scheme16.sigmoid_params_s16, self.qp(x).scale, self.qp(out).scale,
                        op.opcode == "TANH")
        self.emit(op, op.opcode.lower() + "_s16", [x], [out], p)


    # -- STRIDED_SLICE ------------------------------------------------------------------
    def strided_slice(self, op: TfOp) -> None:
        """Constant begin / end / strides, TFLite's begin / end / shrink-axis masks (its
        StartForAxis / StopForAxis); ellipsis, new-axis and offset are refused."""
        x, out = self.act(op, op.inputs[0], "input"), self.act(op, op.outputs[0], "output")
        o = self.options(op)
        if o.EllipsisMask() or o.NewAxisMask() or o.Offset():
            raise MicroqError(f"{self.m.path}: {op.name} (STRIDED_SLICE): ellipsis_mask, "
                              "new_axis_mask and offset are not supported (only begin, end and "
                              "shrink_axis masks)")
        shape = tuple(self.tensors[x].shape)
        rank = len(shape)
        vecs = []
        for k, role in ((1, "begin"), (2, "end"), (3, "strides")):
            t = self.t(op.inputs[k])
            if t.data is None or t.dtype not in ("INT32", "INT64") or t.data.size != rank:
                self._fail(op, role, t, f"is {'computed' if t.data is None else t.dtype} "
                           f"{list(t.shape)}; expected a constant int32 vector of {rank} values")
            vecs.append([int(v) for v in t.data.reshape(-1)])
        begin, end, step, kept = [], [], [], []
        for a, (b, e, st, dim) in enumerate(zip(*vecs, shape)):
            shrink = (o.ShrinkAxisMask() >> a) & 1
            if st == 0 or abs(st) > 2**30:
                raise MicroqError(f"{self.m.path}: {op.name} (STRIDED_SLICE): stride {st} on "
                                  f"axis {a} is invalid")
            if shrink:
                b = b + dim if b < 0 else b
                if not 0 <= b < dim:
                    raise MicroqError(f"{self.m.path}: {op.name} (STRIDED_SLICE): index {b} "
                                      f"on shrunk axis {a} is outside [0, {dim})")
                begin.append(b), end.append(b + 1), step.append(1)
                continue
            lo, hi = (0, dim) if st > 0 else (-1, dim - 1)
            if (o.BeginMask() >> a) & 1:
                b = 0 if st > 0 else dim - 1
            else:
                b = min(max(b + dim if b < 0 else b, lo), hi)
            if (o.EndMask() >> a) & 1:
                e = dim if st > 0 else -1
            else:
                e = min(max(e + dim if e < 0 else e, lo), hi)
            begin.append(b), end.append(e), step.append(st)
            kept.append(max(0, -(-(e - b) // st)))
        if tuple(kept) != tuple(self.tensors[out].shape) or 0 in kept:
            raise MicroqError(f"{self.m.path}: {op.name} (STRIDED_SLICE): output "
                              f"{list(self.tensors[out].shape)} is not the slice's {kept}: the "
                              "file is corrupt (or the slice is empty)")
        if self.qp(x) != self.qp(out):
            raise MicroqError(f"{self.m.path}: {op.name} (STRIDED_SLICE): input and output "
                              "quantization differ; TFLite requires them equal")
        self.emit(op, "slice", [x], [out], qir.SliceParams(tuple(begin), tuple(end),
                                                            tuple(step)))

    # -- REVERSE_V2, CONCATENATION (Keras Bidirectional around two LSTMs) ------------------
    def reverse(self, op: TfOp) -> None:
        """x reversed along constant axes: a slice with step -1 there."""
        x, out = self.act(op, op.inputs[0], "input"), self.act(op, op.outputs[0], "output")
        shape = tuple(self.tensors[x].shape)
        t = self.t(op.inputs[1])
        if t.data is None or t.dtype not in ("INT32", "INT64") or t.data.ndim > 1:
            self._fail(op, "axis", t, f"is {'computed' if t.data is None else t.dtype} "
                       f"{list(t.shape)}; expected a constant int32 vector")
        axes = {int(a) + len(shape) if int(a) < 0 else int(a) for a in t.data.reshape(-1)}
        if not axes <= set(range(len(shape))):
            self._fail(op, "axis", t, f"holds {sorted(axes)}, outside the rank {len(shape)}")
        if tuple(self.tensors[out].shape) != shape or self.qp(x) != self.qp(out):
            raise MicroqError(f"{self.m.path}: {op.name} (REVERSE_V2): the output must have the "
                              "input's shape and quantization")
        begin = tuple(d - 1 if a in axes else 0 for a, d in enumerate(shape))
        end = tuple(-1 if a in axes else d for a, d in enumerate(shape))
        step = tuple(-1 if a in axes else 1 for a in range(len(shape)))
        self.emit(op, "slice", [x], [out], qir.SliceParams(begin, end, step))

    def concatenation(self, op: TfOp) -> None:
        """Inputs of one quantization (the output's; TFLite's converter gives them one), so the
        bytes are copied, as TFLite Micro does."""
        xs = [self.act(op, i, f"input{k}") for k, i in enumerate(op.inputs)]
        out = self.act(op, op.outputs[0], "output")
        o = self.options(op)
        if o.FusedActivationFunction() != 0:
            raise MicroqError(f"{self.m.path}: {op.name} (CONCATENATION): a fused activation is "
                              "not supported")
        oshape = tuple(self.tensors[out].shape)
        rank = len(oshape)
        axis = int(o.Axis()) + rank if int(o.Axis()) < 0 else int(o.Axis())
        if not 0 <= axis < rank:
            raise MicroqError(f"{self.m.path}: {op.name} (CONCATENATION): axis {o.Axis()} is "
                              f"outside the rank {rank}")
        shapes = [tuple(self.tensors[x].shape) for x in xs]
        ok = all(len(s) == rank and s[:axis] + s[axis + 1:] == oshape[:axis] + oshape[axis + 1:]
                 for s in shapes) and sum(s[axis] for s in shapes) == oshape[axis]
        if not ok:
            raise MicroqError(f"{self.m.path}: {op.name} (CONCATENATION): inputs "
                              f"{[list(s) for s in shapes]} do not concatenate to "
                              f"{list(oshape)} on axis {axis}: the file is corrupt")
        for x in xs:
            if self.qp(x) != self.qp(out):
                raise MicroqError(f"{self.m.path}: {op.name} (CONCATENATION): input '{x}' is "
                                  f"quantized {self.qp(x)}, the output {self.qp(out)}; only "
                                  "inputs of the output's quantization are supported")
        self.emit(op, "concat", xs, [out], qir.ConcatParams(axis))

    # -- UNIDIRECTIONAL_SEQUENCE_LSTM -----------------------------------------------------
    def lstm(self, op: TfOp) -> None:
        """int8x8_16 LSTM as TFLite Micro's integer LstmStep (see qir.TflLstmParams)."""
        from ..quant.rules_recurrent import check_gate_accumulator

        where = f"{self.m.path}: {op.name} (UNIDIRECTIONAL_SEQUENCE_LSTM)"

        def fail(why: str):
            raise MicroqError(f"{where}: {why}")

        ins = op.inputs
        absent = {9: "peephole", 10: "peephole", 11: "peephole", 16: "projection",
                  17: "projection", 20: "layer-norm", 21: "layer-norm", 22: "layer-norm",
                  23: "layer-norm"}
        for k, what in absent.items():
            if ins[k] >= 0:
                fail(f"a {what} LSTM (input {k} is set); microq supports the plain LSTM "
                     "(Keras LSTM: no peephole, projection or layer normalization)")
        for k in list(range(9)) + [12, 13, 14, 15, 18, 19]:
            if ins[k] < 0:
                fail(f"input {k} is omitted" + (" (a CIFG LSTM, coupled input and forget "
                     "gates): not supported" if k in (1, 5, 12) else ": the file is corrupt"))
        o = self.options(op)
        if o.FusedActivationFunction() != 4:
            fail(f"cell activation {o.FusedActivationFunction()}; only TANH (4) is supported")
        if getattr(o, "DiagonalRecurrentTensors", lambda: False)():
            fail("diagonal recurrent weights are not supported")
        x, out = self.act(op, ins[0], "input"), self.act(op, op.outputs[0], "output")
        xs, ys = tuple(self.tensors[x].shape), tuple(self.tensors[out].shape)
        hid, cel = self.t(ins[18]), self.t(ins[19])
        if len(xs) != 3 or len(ys) != 3:
            fail(f"input {list(xs)} / output {list(ys)} must have rank 3")
        steps, batch = (xs[0], xs[1]) if o.TimeMajor() else (xs[1], xs[0])
        n_in, n_h = xs[2], (hid.shape[-1] if hid.shape else 0)
        if batch != 1:
            fail(f"a batch of {batch}: microq compiles one sequence at a time (convert with "
                 "batch size 1)")
        if ys != xs[:2] + (n_h,):
            fail(f"output {list(ys)} is not the {list(xs[:2] + (n_h,))} the LSTM computes: the "
                 "file is corrupt")
        for t, role, dt in ((hid, "hidden state", "INT8"), (cel, "cell state", "INT16")):
            if not t.is_variable or t.dtype != dt or t.shape not in ((1, n_h), (n_h,)) \
                    or len(t.scales) != 1 or len(t.zero_points) != 1:
                self._fail(op, role, t, f"is {'a variable' if t.is_variable else 'not a variable'}"
                           f" {t.dtype} {list(t.shape)} with {len(t.scales)} scales; expected a "
                           f"variable {dt} [1, {n_h}] quantized per tensor")
            if t.data is not None and np.any(t.data != (t.zero_points[0] if dt == "INT8" else 0)):
                self._fail(op, role, t, "has a non-zero initial value; microq starts every "
                           "sequence from the zero state")
            if t.index in self.lstm_states:
                self._fail(op, role, t, "is shared with another LSTM")
            self.lstm_states.add(t.index)
        s_h, zp_h = float(hid.scales[0]), int(hid.zero_points[0])
        if not (s_h > 0 and np.isfinite(s_h)) or not -128 <= zp_h <= 127:
            self._fail(op, "hidden state", hid, f"has scale {s_h!r}, zero point {zp_h}")
        s_c = float(cel.scales[0])
        if cel.zero_points[0] != 0 or not (s_c > 0 and np.isfinite(s_c)):
            self._fail(op, "cell state", cel, f"has scale {s_c!r}, zero point "
                       f"{int(cel.zero_points[0])}; expected a power of two and 0")
        log2 = float(np.log2(np.float32(s_c)))
        cell_shift = -int(round(log2))
        if abs(log2 + cell_shift) >= 1e-3 or not 0 <= cell_shift <= 29:
            self._fail(op, "cell state", cel, f"has scale {s_c!r}; the integer LSTM needs a "
                       "power of two 2^-k, k in 0..29")
        qx = self.qp(x)
        # TFLite order: input, forget, cell, output gates; ours (ONNX): i, o, f, c
        order = (0, 3, 1, 2)
        w, r, b, xm, xsh, hm, hsh = [], [], [], [], [], [], []
        gate_scale = 2.0**-12  # Q3.12 gate pre-activations
        for g in order:
            for k, rows, cols, acc in ((1 + g, n_h, n_in, w), (5 + g, n_h, n_h, r)):
                t = self.t(ins[k])
                if t.shape != (rows, cols) or len(t.scales) != 1:
                    self._fail(op, "weight", t, f"is {list(t.shape)} with {len(t.scales)} "
                               f"scales; expected [{rows}, {cols}] quantized per tensor")
                data, sc = self.weights(op, ins[k], rows, 0)
                acc.append(data.astype(np.int8))
                m, sh = self.multipliers(qx.scale if k <= 4 else s_h, sc[:1], gate_scale, op)
                (xm if k <= 4 else hm).append(m)
                (xsh if k <= 4 else hsh).append(sh)
            bt = self.t(ins[12 + g])
            if bt.dtype != "INT32" or bt.data is None or bt.shape != (n_h,):
                self._fail(op, "gate bias", bt, f"is {bt.dtype} {list(bt.shape)}; expected "
                           f"constant INT32 [{n_h}]")
            b.append(bt.data.astype(np.int32))
        wq, rq, bias = np.concatenate(w), np.concatenate(r), np.concatenate(b)
        xm, xsh, hm, hsh = (np.concatenate(v).astype(np.int32) for v in (xm, xsh, hm, hsh))
        zero_bias = np.zeros(4 * n_h, np.int32)
        try:
            check_gate_accumulator("the input-side gate matmul", wq, bias, -qx.zero_point,
                                   np.repeat(xsh, n_h))
            check_gate_accumulator("the recurrent gate matmul", rq, zero_bias, -zp_h,
                                   np.repeat(hsh, n_h))
        except MicroqError as e:
            fail(str(e))
        muls = {}
        for what, real in (("forget", 2.0**-15), ("update", 2.0**-30 / s_c),
                           ("output", 2.0**-30 / s_h)):
            m, sh = quantize_multiplier(real, self.rounding)
            if not -31 <= sh <= 0:
                fail(f"the {what} product's rescale {real:.3g} needs shift {sh}, outside "
                     "[-31, 0] (the state scales are out of range for the integer LSTM)")
            muls[what] = (m, sh)
        clip = float(o.CellClip())
        qclip = int(np.trunc(min(max(clip / s_c, -32768.0), 32767.0))) if clip > 0 else 0
        p = qir.TflLstmParams(
            cell="lstm_tfl", input_size=int(n_in), hidden_size=int(n_h),
            input_offset=-qx.zero_point, hidden_offset=-zp_h, output_offset=zp_h,
            cell_shift=cell_shift, cell_clip=max(qclip, 0),
            forget_multiplier=muls["forget"][0], forget_shift=muls["forget"][1],
            update_multiplier=muls["update"][0], update_shift=muls["update"][1],
            output_multiplier=muls["output"][0], output_shift=muls["output"][1],
            input_weights=wq, recurrent_weights=rq, input_bias=bias, input_multiplier=xm,
            input_shift=xsh, recurrent_multiplier=hm, recurrent_shift=hsh)
        # time_major [T, 1, I] is [1, T, I] in memory (batch 1): a free reshape around it
        seq_x, seq_y = x, out
        if xs != (1, steps, n_in):
            seq_x = f"{x}__seq"
            self.tensors[seq_x] = qir.QTensor(seq_x, (1, steps, n_in), qx)
            self.emit(op, "reshape", [x], [seq_x], qir.ReshapeParams((1, steps, n_in)))
        if ys != (1, steps, n_h):
            seq_y = f"{out}__seq"
            self.tensors[seq_y] = qir.QTensor(seq_y, (1, steps, n_h), self.qp(out))
        scratch = f"{out}__state"
        self.tensors[scratch] = qir.QTensor(scratch, (2 * n_h,), qir.QParams(1.0, 0))
        self.emit(op, "lstm_tfl", [seq_x], [seq_y, scratch], p)
        if seq_y != out:
            self.emit(op, "reshape", [seq_y], [out], qir.ReshapeParams(ys))


HANDLERS = {
    "CONV_2D": Lowering.conv,
    "DEPTHWISE_CONV_2D": Lowering.conv,
    "FULLY_CONNECTED": Lowering.fully_connected,
    "AVERAGE_POOL_2D": Lowering.pool,
    "MAX_POOL_2D": Lowering.pool,
    "ADD": Lowering.binary,
    "SUB": Lowering.binary,
    "MUL": Lowering.binary,
    "SOFTMAX": Lowering.softmax,
    "RESHAPE": Lowering.reshape,
    "QUANTIZE": Lowering.quantize,
    "STRIDED_SLICE": Lowering.strided_slice,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": Lowering.lstm,
    "LOGISTIC": Lowering.sigmoid16,
    "TANH": Lowering.sigmoid16,
    "REVERSE_V2": Lowering.reverse,
    "CONCATENATION": Lowering.concatenation,
}


def _unique_names(tensors: list[TfTensor]) -> dict[int, str]:
    seen: set[str] = set()
    names = {}
    for t in tensors:
        name = t.name or f"tensor{t.index}"
        if name in seen:
            name = f"{name}#{t.index}"
        seen.add(name)
        names[t.index] = name
    return names
