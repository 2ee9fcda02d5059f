"""Per-kernel C emission for codegen: one params struct and one checked call per quantized node.

EMITTERS is the one registry: kernel name -> function(ctx, node) -> LayerCode. Each emitter
names the runtime family it needs (c_runtime/src/<family>.c) and counts its MACs and weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import MicroqError
from ..qir import QGraph, QNode
from .cformat import (
    broadcast_fields,
    c_int,
    comment_text,
    dims_def,
    nhwc,
    small_array_def,
    struct_def,
    wrap_call,
)

CONV_FIELDS = (
    "stride_h",
    "stride_w",
    "pad_top",
    "pad_left",
    "dilation_h",
    "dilation_w",
    "input_offset",
    "output_offset",
    "act_min",
    "act_max",
    "ch_mult",
)
FC_FIELDS = ("input_offset", "filter_offset", "output_offset", "act_min", "act_max")
POOL_FIELDS = (
    "stride_h",
    "stride_w",
    "pad_top",
    "pad_left",
    "pad_bottom",
    "pad_right",
    "count_include_pad",
    "input_offset",
    "output_offset",
    "act_min",
    "act_max",
)
ADD_FIELDS = (
    "input1_offset",
    "input1_multiplier",
    "input1_shift",
    "input2_offset",
    "input2_multiplier",
    "input2_shift",
    "left_shift",
    "output_offset",
    "output_multiplier",
    "output_shift",
    "act_min",
    "act_max",
)
MUL_FIELDS = (
    "input1_offset",
    "input2_offset",
    "output_offset",
    "output_multiplier",
    "output_shift",
    "act_min",
    "act_max",
)
REQUANT_FIELDS = ("input_offset", "output_offset", "multiplier", "shift", "act_min", "act_max")
SOFTMAX_FIELDS = ("input_multiplier", "input_left_shift", "diff_min")


@dataclass
class Ctx:
    """What an emitter needs: the graph, weight-array naming, and tensor pointer expressions."""

    graph: QGraph
    prefix: str  # the model name, prefix of every external symbol
    ptr: Callable[[str], str]  # tensor name -> C pointer expression
    index: int = 0  # the node's layer number

    def shape(self, tensor: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self.graph.tensors[tensor].shape)

    def sym(self, what: str) -> str:
        return f"L{self.index}_{what}"

    def weight(self, what: str) -> str:
        return f"{self.prefix}_L{self.index}_{what}"


@dataclass
class LayerCode:
    summary: str  # e.g. "conv2d 3x3 s2"
    family: str | None  # runtime source stem, e.g. "mq_conv"; None for no code
    statics: list[str] = field(default_factory=list)  # definitions in NAME.c
    weights: list[tuple[str, np.ndarray]] = field(default_factory=list)  # NAME_weights.c
    call: list[str] = field(default_factory=list)  # statements of invoke
    macs: int = 0

    @property
    def weight_bytes(self) -> int:
        return sum(int(a.nbytes) for _, a in self.weights)


def _fields(params: object, names: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(n, c_int(getattr(params, n))) for n in names]


def _checked(call: str, indent: int = 4) -> list[str]:
    """`status = call;` wrapped for its indent in invoke, then the early return."""
    stmt = wrap_call("status = ", call, indent)
    return stmt + ["if (status != MQ_OK) {", "    return (int)status;", "}"]


def _i32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.int64).astype(np.int32))


def _i8(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.int64).astype(np.int8))


def _quant_def(ctx: Ctx) -> str:
    return (
        f"static const mq_per_channel_quant {ctx.sym('quant')} = "
        f"{{{ctx.weight('multiplier')}, {ctx.weight('shift')}}};\n"
    )


def _stride_text(sh: int, sw: int) -> str:
    return f"s{sh}" if sh == sw else f"s{sh}x{sw}"


def _conv_family_call(ctx: Ctx, node: QNode, code: LayerCode, fn: str, struct: str,
                      fields: tuple[str, ...], dims) -> None:
    """What every conv-family kernel shares (conv, depthwise, transpose conv, conv3d): the
    filter, bias, multiplier and shift arrays, the params/quant/dims statics and the call in
    mq_conv.h's argument order. `dims(cname, shape)` writes one dims struct."""
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    filt = _i8(p.filter)
    code.weights += [(ctx.weight("filter"), filt)]
    if p.bias is not None:
        code.weights += [(ctx.weight("bias"), _i32(p.bias))]
    code.weights += [(ctx.weight("multiplier"), _i32(p.multiplier))]
    code.weights += [(ctx.weight("shift"), _i32(p.shift))]
    code.statics += [
        struct_def(struct, ctx.sym("params"), _fields(p, fields)),
        _quant_def(ctx),
        dims(ctx.sym("input_dims"), ctx.shape(x)),
        dims(ctx.sym("filter_dims"), filt.shape),
        dims(ctx.sym("output_dims"), ctx.shape(y)),
    ]
    bias = ctx.weight("bias") if p.bias is not None else "NULL"
    code.call = _checked(
        f"{fn}(&{ctx.sym('params')}, &{ctx.sym('quant')}, &{ctx.sym('input_dims')}, "
        f"{ctx.ptr(x)}, &{ctx.sym('filter_dims')}, {ctx.weight('filter')}, {bias}, "
        f"&{ctx.sym('output_dims')}, {ctx.ptr(y)})"
    )


def _dims4_def(cname: str, shape) -> str:
    return dims_def(cname, nhwc(shape))


def _conv(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    depthwise = node.kernel == "depthwise_conv2d"
    y = node.outputs[0]
    filt = _i8(p.filter)
    kh, kw = int(filt.shape[1]), int(filt.shape[2])
    text = f"{node.kernel} {kh}x{kw} {_stride_text(p.stride_h, p.stride_w)}"
    if p.dilation_h != 1 or p.dilation_w != 1:
        text += f" d{p.dilation_h}x{p.dilation_w}"
    code = LayerCode(text, "mq_conv")
    fn = "mq_depthwise_conv2d_s8" if depthwise else "mq_conv2d_s8"
    _conv_family_call(ctx, node, code, fn, "mq_conv_params", CONV_FIELDS, _dims4_def)
    n, oh, ow, cout = nhwc(ctx.shape(y))
    # OHWI: KH*KW*(Cin/groups) taps per output; 1HWO (depthwise): KH*KW taps per output
    taps = kh * kw * (1 if depthwise else int(filt.shape[3]))
    code.macs = n * oh * ow * cout * taps
    return code


def _fully_connected(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    filt = _i8(p.filter)
    n_out, k = int(filt.shape[0]), int(filt.shape[1])
    rows = int(np.prod(ctx.shape(x)[:-1], dtype=np.int64))
    code = LayerCode(f"fully_connected {k}->{n_out}", "mq_fc")
    code.weights += [(ctx.weight("filter"), filt)]
    if p.bias is not None:
        code.weights += [(ctx.weight("bias"), _i32(p.bias))]
    code.weights += [(ctx.weight("multiplier"), _i32(p.multiplier))]
    code.weights += [(ctx.weight("shift"), _i32(p.shift))]
    code.statics += [
        struct_def("mq_fc_params", ctx.sym("params"), _fields(p, FC_FIELDS)),
        _quant_def(ctx),
        dims_def(ctx.sym("input_dims"), (rows, 1, 1, k)),
        dims_def(ctx.sym("filter_dims"), (n_out, 1, 1, k)),
        dims_def(ctx.sym("output_dims"), (rows, 1, 1, n_out)),
    ]
    bias = ctx.weight("bias") if p.bias is not None else "NULL"
    code.call = _checked(
        f"mq_fully_connected_s8(&{ctx.sym('params')}, &{ctx.sym('quant')}, "
        f"&{ctx.sym('input_dims')}, {ctx.ptr(x)}, &{ctx.sym('filter_dims')}, "
        f"{ctx.weight('filter')}, {bias}, &{ctx.sym('output_dims')}, {ctx.ptr(y)})"
    )
    code.macs = rows * k * n_out
    return code


def _pool(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    text = f"{node.kernel} {p.kernel_h}x{p.kernel_w} {_stride_text(p.stride_h, p.stride_w)}"
    code = LayerCode(text, "mq_pool")
    code.statics += [
        struct_def("mq_pool_params", ctx.sym("params"), _fields(p, POOL_FIELDS)),
        dims_def(ctx.sym("input_dims"), nhwc(ctx.shape(x))),
        dims_def(ctx.sym("filter_dims"), (1, p.kernel_h, p.kernel_w, 1)),
        dims_def(ctx.sym("output_dims"), nhwc(ctx.shape(y))),
    ]
    fn = "mq_max_pool_s8" if node.kernel == "max_pool" else "mq_avg_pool_s8"
    code.call = _checked(
        f"{fn}(&{ctx.sym('params')}, &{ctx.sym('input_dims')}, {ctx.ptr(x)}, "
        f"&{ctx.sym('filter_dims')}, &{ctx.sym('output_dims')}, {ctx.ptr(y)})"
    )
    return code


def _binary(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
    sa, sb = ctx.shape(a), ctx.shape(b)
    text = node.kernel if sa == sb else f"{node.kernel} (broadcast)"
    code = LayerCode(text, "mq_elementwise")
    ctype, names = (
        ("mq_mul_params", MUL_FIELDS) if node.kernel == "mul" else ("mq_add_params", ADD_FIELDS)
    )
    bc = broadcast_fields(sa, sb)
    bc_init = [(k, "{" + ", ".join(c_int(v) for v in vals) + "}") for k, vals in bc.items()]
    bc_init[0] = ("rank", c_int(bc["rank"][0]))
    code.statics += [
        struct_def(ctype, ctx.sym("params"), _fields(p, names)),
        struct_def("mq_broadcast", ctx.sym("bcast"), bc_init),
    ]
    code.call = _checked(
        f"mq_{node.kernel}_s8(&{ctx.sym('params')}, &{ctx.sym('bcast')}, {ctx.ptr(a)}, "
        f"{ctx.ptr(b)}, {ctx.ptr(y)})"
    )
    return code


def _size(ctx: Ctx, tensor: str) -> int:
    return int(np.prod(ctx.shape(tensor), dtype=np.int64))


def _lut(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    table = _i8(p.table)
    code = LayerCode(f"lut {p.function}".rstrip(), "mq_elementwise")
    code.weights += [(ctx.weight("table"), table)]
    code.call = _checked(
        f"mq_lut_s8({ctx.weight('table')}, {_size(ctx, x)}, {ctx.ptr(x)}, {ctx.ptr(y)})"
    )
    return code


def _requantize(ctx: Ctx, node: QNode) -> LayerCode:
    x, y = node.inputs[0], node.outputs[0]
    code = LayerCode("requantize", "mq_elementwise")
    code.statics += [
        struct_def("mq_requantize_params", ctx.sym("params"), _fields(node.params, REQUANT_FIELDS))
    ]
    code.call = _checked(
        f"mq_requantize_s8(&{ctx.sym('params')}, {_size(ctx, x)}, {ctx.ptr(x)}, {ctx.ptr(y)})"
    )
    return code


def _softmax(ctx: Ctx, node: QNode) -> LayerCode:
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    rows, row_size = int(np.prod(shape[:-1], dtype=np.int64)), shape[-1]
    code = LayerCode(f"softmax {rows}x{row_size}", "mq_softmax")
    code.statics += [
        struct_def("mq_softmax_params", ctx.sym("params"), _fields(node.params, SOFTMAX_FIELDS))
    ]
    code.call = _checked(
        f"mq_softmax_s8(&{ctx.sym('params')}, {rows}, {row_size}, {ctx.ptr(x)}, {ctx.ptr(y)})"
    )
    return code


def _concat(ctx: Ctx, node: QNode) -> LayerCode:
    y = node.outputs[0]
    out = ctx.shape(y)
    axis = node.params.axis % len(out)
    outer = int(np.prod(out[:axis], dtype=np.int64))
    inner = int(np.prod(out[axis + 1 :], dtype=np.int64))
    n = len(node.inputs)
    code = LayerCode(f"concat axis {axis}", "mq_tensor")
    code.statics += [
        small_array_def(ctx.sym("axis_sizes"), [ctx.shape(t)[axis] for t in node.inputs])
    ]
    local = f"l{ctx.index}_inputs"
    code.call = ["{", f"    const int8_t *{local}[{n}];"]
    code.call += [f"    {local}[{i}] = {ctx.ptr(t)};" for i, t in enumerate(node.inputs)]
    call = f"mq_concat_s8({n}, {local}, {ctx.sym('axis_sizes')}, {outer}, {inner}, {ctx.ptr(y)})"
    code.call += ["    " + s for s in _checked(call, indent=8)] + ["}"]
    return code


def _pad(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    code = LayerCode("pad", "mq_tensor")
    code.statics += [
        dims_def(ctx.sym("input_dims"), nhwc(ctx.shape(x))),
        dims_def(ctx.sym("pre_pad"), tuple(p.pre)),
        dims_def(ctx.sym("post_pad"), tuple(p.post)),
    ]
    code.call = _checked(
        f"mq_pad_s8(&{ctx.sym('input_dims')}, &{ctx.sym('pre_pad')}, &{ctx.sym('post_pad')}, "
        f"(int8_t){c_int(p.pad_value)}, {ctx.ptr(x)}, {ctx.ptr(y)})"
    )
    return code


def _transpose(ctx: Ctx, node: QNode) -> LayerCode:
    x, y = node.inputs[0], node.outputs[0]
    perm = [int(a) for a in node.params.perm]
    code = LayerCode(f"transpose ({', '.join(map(str, perm))})", "mq_tensor")
    code.statics += [
        small_array_def(ctx.sym("in_shape"), list(ctx.shape(x))),
        small_array_def(ctx.sym("perm"), perm),
    ]
    code.call = _checked(
        f"mq_transpose_s8({len(perm)}, {ctx.sym('in_shape')}, {ctx.sym('perm')}, "
        f"{ctx.ptr(x)}, {ctx.ptr(y)})"
    )
    return code


def _reshape(ctx: Ctx, node: QNode) -> LayerCode:
    code = LayerCode(f"reshape -> {list(ctx.shape(node.outputs[0]))}", None)
    code.call = [f"/* no code: {comment_text(node.outputs[0])} aliases its input's memory */"]
    return code


BATCH_MATMUL_FIELDS = (
    "rhs_transposed",
    "lhs_offset",
    "rhs_offset",
    "output_offset",
    "output_multiplier",
    "output_shift",
    "act_min",
    "act_max",
)
LAYERNORM_FIELDS = ("eps", "output_offset", "act_min", "act_max")


def _dims4(ctx: Ctx, tensor: str) -> tuple[int, int, int, int]:
    shape = ctx.shape(tensor)
    if not 2 <= len(shape) <= 4:
        raise MicroqError(f"batch_matmul operand '{tensor}' {list(shape)} must have rank 2 to 4")
    return nhwc(shape)


def _batch_matmul(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
    out = _dims4(ctx, y)
    k = ctx.shape(a)[-1]
    text = f"batch_matmul {out[2]}x{k} @ {k}x{out[3]}" + (" (rhs^T)" if p.rhs_transposed else "")
    if out[0] * out[1] > 1:
        text += f" x{out[0] * out[1]}"
    code = LayerCode(text, "mq_matmul")
    code.statics += [
        struct_def(
            "mq_batch_matmul_params", ctx.sym("params"), _fields(p, BATCH_MATMUL_FIELDS)
        ),
        dims_def(ctx.sym("lhs_dims"), _dims4(ctx, a)),
        dims_def(ctx.sym("rhs_dims"), _dims4(ctx, b)),
        dims_def(ctx.sym("output_dims"), out),
    ]
    code.call = _checked(
        f"mq_batch_matmul_s8(&{ctx.sym('params')}, &{ctx.sym('lhs_dims')}, {ctx.ptr(a)}, "
        f"&{ctx.sym('rhs_dims')}, {ctx.ptr(b)}, &{ctx.sym('output_dims')}, {ctx.ptr(y)})"
    )
    code.macs = out[0] * out[1] * out[2] * out[3] * k
    return code


def _layernorm(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    rows, width = int(np.prod(shape[:-1], dtype=np.int64)), shape[-1]
    code = LayerCode(f"layernorm {rows}x{width}", "mq_layernorm")
    code.weights += [(ctx.weight("multiplier"), _i32(p.multiplier))]
    code.weights += [(ctx.weight("shift"), _i32(p.shift))]
    code.weights += [(ctx.weight("bias"), _i32(p.bias))]
    code.statics += [
        struct_def("mq_layernorm_params", ctx.sym("params"), _fields(p, LAYERNORM_FIELDS)),
        _quant_def(ctx),
    ]
    code.call = _checked(
        f"mq_layernorm_s8(&{ctx.sym('params')}, &{ctx.sym('quant')}, {ctx.weight('bias')}, "
        f"{rows}, {width}, {ctx.ptr(x)}, {ctx.ptr(y)})"
    )
    code.macs = rows * width
    return code


def _slice(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    bounds = zip(p.begin, p.end, p.step)
    axes = ", ".join(f"{b}:{e}" + (f":{s}" if s != 1 else "") for b, e, s in bounds)
    code = LayerCode(f"slice [{axes}]", "mq_slice")

    def arr(values) -> str:
        return "{" + ", ".join(c_int(v) for v in values) + "}"

    fields = [("rank", c_int(len(p.begin))), ("begin", arr(p.begin)), ("end", arr(p.end))]
    code.statics += [
        struct_def("mq_slice_params", ctx.sym("params"), fields + [("step", arr(p.step))]),
        small_array_def(ctx.sym("in_shape"), list(ctx.shape(x))),
    ]
    code.call = _checked(
        f"mq_slice_s8(&{ctx.sym('params')}, {ctx.sym('in_shape')}, {ctx.ptr(x)}, {ctx.ptr(y)})"
    )
    return code


def _resize(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    xs, ys = nhwc(ctx.shape(x)), nhwc(ctx.shape(y))
    bilinear = node.kernel == "resize_bilinear"
    code = LayerCode(f"{node.kernel} {xs[1]}x{xs[2]} -> {ys[1]}x{ys[2]}", "mq_resize")
    parts = ("lo", "hi", "frac") if bilinear else ("lo",)
    for axis in ("y", "x"):
        code.weights += [(ctx.weight(f"{axis}_{t}"), _i32(getattr(p, f"{axis}_{t}")))
                         for t in parts]
        fields = [(t, ctx.weight(f"{axis}_{t}") if t in parts else "NULL")
                  for t in ("lo", "hi", "frac")]
        code.statics += [struct_def("mq_resize_taps", ctx.sym(f"{axis}_taps"), fields)]
    code.statics += [dims_def(ctx.sym("input_dims"), xs), dims_def(ctx.sym("output_dims"), ys)]
    code.call = _checked(
        f"mq_{node.kernel}_s8(&{ctx.sym('input_dims')}, &{ctx.sym('y_taps')}, "
        f"&{ctx.sym('x_taps')}, &{ctx.sym('output_dims')}, {ctx.ptr(x)}, {ctx.ptr(y)})"
    )
    code.macs = 4 * int(np.prod(ys, dtype=np.int64)) if bilinear else 0  # as inspect counts
    return code


def _transpose_conv(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    x = node.inputs[0]
    filt = _i8(p.filter)
    cout, kh, kw, f_c = (int(d) for d in filt.shape)
    text = f"transpose_conv2d {kh}x{kw} {_stride_text(p.stride_h, p.stride_w)}"
    if p.dilation_h != 1 or p.dilation_w != 1:
        text += f" d{p.dilation_h}x{p.dilation_w}"
    code = LayerCode(text, "mq_transpose_conv")
    _conv_family_call(ctx, node, code, "mq_transpose_conv2d_s8", "mq_conv_params", CONV_FIELDS,
                      _dims4_def)
    n, h, w, _ = nhwc(ctx.shape(x))
    code.macs = n * h * w * cout * kh * kw * f_c  # every input pixel x every tap, as inspect
    return code


CONV3D_FIELDS = ("stride_d", "stride_h", "stride_w", "pad_front", "pad_top", "pad_left",
                 "dilation_d", "dilation_h", "dilation_w", "input_offset", "output_offset",
                 "act_min", "act_max")


def _dims5_def(cname: str, dims) -> str:
    if len(dims) != 5:
        raise MicroqError(f"conv3d tensor {list(dims)} must have rank 5 (NDHWC)")
    return f"static const mq_dims5 {cname} = {{{', '.join(c_int(d) for d in dims)}}};\n"


def _conv3d(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    y = node.outputs[0]
    filt = _i8(p.filter)
    k = "x".join(str(int(v)) for v in filt.shape[1:4])
    strides = (p.stride_d, p.stride_h, p.stride_w)
    text = f"conv3d {k} s{'x'.join(map(str, strides)) if len(set(strides)) > 1 else strides[0]}"
    code = LayerCode(text, "mq_conv3d")
    _conv_family_call(ctx, node, code, "mq_conv3d_s8", "mq_conv3d_params", CONV3D_FIELDS,
                      _dims5_def)
    code.macs = int(np.prod(ctx.shape(y), dtype=np.int64)) * int(np.prod(filt.shape[1:]))
    return code


GROUPNORM_FIELDS = ("groups", "var_bits", "eps", "output_offset", "act_min", "act_max")


def _groupnorm(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    batches, channels = shape[0], shape[-1]
    spatial = int(np.prod(shape[1:-1], dtype=np.int64))
    kind = "instancenorm" if p.groups == channels else f"groupnorm g{p.groups}"
    code = LayerCode(f"{kind} {spatial}x{channels}", "mq_groupnorm")
    code.weights += [(ctx.weight("multiplier"), _i32(p.multiplier))]
    code.weights += [(ctx.weight("shift"), _i32(p.shift))]
    code.weights += [(ctx.weight("bias"), _i32(p.bias))]
    code.statics += [
        struct_def("mq_groupnorm_params", ctx.sym("params"), _fields(p, GROUPNORM_FIELDS)),
        _quant_def(ctx),
    ]
    code.call = _checked(
        f"mq_groupnorm_s8(&{ctx.sym('params')}, &{ctx.sym('quant')}, {ctx.weight('bias')}, "
        f"{batches}, {spatial}, {channels}, {ctx.ptr(x)}, {ctx.ptr(y)})"
    )
    code.macs = batches * spatial * channels
    return code


PRELU_FIELDS = (
    "input_offset",
    "alpha_offset",
    "output_offset",
    "output_multiplier_1",
    "output_shift_1",
    "output_multiplier_2",
    "output_shift_2",
    "act_min",
    "act_max",
)


def _prelu(ctx: Ctx, node: QNode) -> LayerCode:
    x, alpha, y = node.inputs[0], node.inputs[1], node.outputs[0]
    sx, sa = ctx.shape(x), ctx.shape(alpha)
    code = LayerCode("prelu" if sa == sx else "prelu (broadcast)", "mq_elementwise")
    bc = broadcast_fields(sx, sa)
    bc_init = [(k, "{" + ", ".join(c_int(v) for v in vals) + "}") for k, vals in bc.items()]
    bc_init[0] = ("rank", c_int(bc["rank"][0]))
    code.statics += [
        struct_def("mq_prelu_params", ctx.sym("params"), _fields(node.params, PRELU_FIELDS)),
        struct_def("mq_broadcast", ctx.sym("bcast"), bc_init),
    ]
    code.call = _checked(
        f"mq_prelu_s8(&{ctx.sym('params')}, &{ctx.sym('bcast')}, {ctx.ptr(x)}, "
        f"{ctx.ptr(alpha)}, {ctx.ptr(y)})"
    )
    return code


def _reduce(ctx: Ctx, node: QNode) -> LayerCode:
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    axes = tuple(int(a) for a in node.params.axes)
    code = LayerCode(f"{node.kernel} axes {', '.join(map(str, axes))}", "mq_reduce")

    def arr(values) -> str:
        return "{" + ", ".join(c_int(v) for v in values) + "}"

    fields = [("rank", c_int(len(shape))), ("in_shape", arr(shape)),
              ("reduce", arr([int(d in axes) for d in range(len(shape))]))]
    code.statics += [struct_def("mq_reduce_params", ctx.sym("params"), fields)]
    code.call = _checked(
        f"mq_{node.kernel}_s8(&{ctx.sym('params')}, {ctx.ptr(x)}, {ctx.ptr(y)})"
    )
    return code


def _argmax(ctx: Ctx, node: QNode) -> LayerCode:
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    axis = int(node.params.axis)
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    code = LayerCode(f"argmax axis {axis}", "mq_reduce")
    fields = [("outer", c_int(outer)), ("axis_size", c_int(shape[axis])),
              ("inner", c_int(inner)),
              ("select_last_index", c_int(node.params.select_last_index))]
    code.statics += [struct_def("mq_argmax_params", ctx.sym("params"), fields)]
    code.call = _checked(f"mq_argmax_s8(&{ctx.sym('params')}, {ctx.ptr(x)}, {ctx.ptr(y)})")
    return code


RECURRENT_FIELDS = ("input_size", "hidden_size", "input_offset", "hidden_offset",
                    "output_offset", "cell_shift", "output_multiplier", "output_shift")
RECURRENT_ARRAYS = (("input_weights", _i8), ("recurrent_weights", _i8), ("input_bias", _i32),
                    ("recurrent_bias", _i32), ("input_multiplier", _i32), ("input_shift", _i32),
                    ("recurrent_multiplier", _i32), ("recurrent_shift", _i32))


def _recurrent(ctx: Ctx, node: QNode) -> LayerCode:
    """lstm / gru: outputs (y [1, T, H], int16 state scratch in the arena)."""
    p = node.params
    x, y, state = node.inputs[0], node.outputs[0], node.outputs[1]
    steps = ctx.shape(x)[-2]
    code = LayerCode(f"{node.kernel} {steps}x{p.input_size} -> {p.hidden_size}", "mq_recurrent")
    fields = _fields(p, RECURRENT_FIELDS)
    for what, conv in RECURRENT_ARRAYS:
        code.weights += [(ctx.weight(what), conv(getattr(p, what)))]
        fields.append((what, ctx.weight(what)))
    for what in ("sigmoid_table", "tanh_table"):
        code.weights += [(ctx.weight(what),
                          np.ascontiguousarray(np.asarray(getattr(p, what), np.int16)))]
        fields.append((what, ctx.weight(what)))
    code.statics += [struct_def("mq_recurrent_params", ctx.sym("params"), fields)]
    code.call = _checked(
        f"mq_{node.kernel}_s8(&{ctx.sym('params')}, {steps}, {ctx.ptr(x)}, {ctx.ptr(y)}, "
        f"(int16_t *)(void *){ctx.ptr(state)})"
    )
    gates = p.input_weights.shape[0]
    code.macs = steps * gates * (p.input_size + p.hidden_size)
    return code


EMITTERS: dict[str, Callable[[Ctx, QNode], LayerCode]] = {
    "conv2d": _conv,
    "depthwise_conv2d": _conv,
    "fully_connected": _fully_connected,
    "max_pool": _pool,
    "avg_pool": _pool,
    "add": _binary,
    "sub": _binary,
    "mul": _binary,
    "lut": _lut,
    "requantize": _requantize,
    "softmax": _softmax,
    "concat": _concat,
    "pad": _pad,
    "transpose": _transpose,
    "reshape": _reshape,
    "batch_matmul": _batch_matmul,
    "layernorm": _layernorm,
    "slice": _slice,
    "resize_nearest": _resize,
    "resize_bilinear": _resize,
    "transpose_conv2d": _transpose_conv,
    "conv3d": _conv3d,
    "groupnorm": _groupnorm,
    "maximum": _binary,
    "minimum": _binary,
    "prelu": _prelu,
    "reduce_max": _reduce,
    "reduce_min": _reduce,
    "argmax": _argmax,
    "lstm": _recurrent,
    "gru": _recurrent,
}

# runtime family -> the C sources it needs (headers come from #include lines)
FAMILY_SOURCES: dict[str, tuple[str, ...]] = {
    "mq_conv": ("mq_conv.c", "mq_gemm.c"),
    "mq_fc": ("mq_fc.c", "mq_gemm.c"),
    "mq_pool": ("mq_pool.c",),
    "mq_elementwise": ("mq_elementwise.c", "mq_requant.c"),
    "mq_softmax": ("mq_softmax.c",),
    "mq_tensor": ("mq_tensor.c",),
    "mq_matmul": ("mq_matmul.c",),
    "mq_layernorm": ("mq_layernorm.c", "mq_isqrt.c"),
    "mq_groupnorm": ("mq_groupnorm.c", "mq_isqrt.c"),
    "mq_reduce": ("mq_reduce.c",),
    "mq_slice": ("mq_slice.c",),
    "mq_resize": ("mq_resize.c",),
    "mq_transpose_conv": ("mq_transpose_conv.c",),
    "mq_conv3d": ("mq_conv3d.c",),
    "mq_recurrent": ("mq_recurrent.c",),
}
