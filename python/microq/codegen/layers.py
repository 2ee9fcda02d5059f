"""Per-kernel C emission for codegen: one params struct and one checked call per quantized node.

EMITTERS_S8 (all of them: codegen.emitters.EMITTERS): kernel name -> function(ctx, node) -> LayerCode, keyed like microq.ops.KERNELS, which
gives each kernel's runtime family (c_runtime/src/<family>.c), MAC count and struct fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import qir
from ..errors import MicroqError
from ..ops import FAMILIES, KERNELS, kernel_macs, struct_fields
from ..qir import QGraph, QNode
from .overlap import pick_variant
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

# The C params structs' scalar members, in order: the params dataclasses' int fields
CONV_FIELDS = struct_fields(qir.ConvParams)
FC_FIELDS = struct_fields(qir.FCParams)
POOL_FIELDS = struct_fields(qir.PoolParams)
ADD_FIELDS = struct_fields(qir.AddParams)
MUL_FIELDS = struct_fields(qir.MulParams)
REQUANT_FIELDS = struct_fields(qir.RequantizeParams)
SOFTMAX_FIELDS = struct_fields(qir.SoftmaxParams)
BATCH_MATMUL_FIELDS = struct_fields(qir.BatchMatMulParams)
LAYERNORM_FIELDS = struct_fields(qir.LayerNormParams)
CONV3D_FIELDS = struct_fields(qir.Conv3DParams)
GROUPNORM_FIELDS = struct_fields(qir.GroupNormParams)
PRELU_FIELDS = struct_fields(qir.PReluParams)
RECURRENT_FIELDS = struct_fields(qir.RecurrentParams)


@dataclass
class Ctx:
    """What an emitter needs: the graph, weight-array naming, and tensor pointer expressions."""

    graph: QGraph
    prefix: str  # the model name, prefix of every external symbol
    ptr: Callable[[str], str]  # tensor name -> C pointer expression
    index: int = 0  # the node's layer number
    # (input tensor, output tensor) -> rel: output placed over that input (plan.Plan.overlaps)
    overlaps: dict[tuple[str, str], int] = field(default_factory=dict)

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
    # weight array name -> its layout note for the comment above it in NAME_weights.c
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def weight_bytes(self) -> int:
        return sum(int(a.nbytes) for _, a in self.weights)


def _layer(ctx: Ctx, node: QNode, summary: str) -> LayerCode:
    """The node's LayerCode with its runtime family and MAC count from the op table."""
    k = KERNELS[node.kernel]
    macs = kernel_macs(node.kernel, [ctx.shape(t) for t in node.inputs],
                       [ctx.shape(t) for t in node.outputs], node.params)
    return LayerCode(summary, k.family, macs=macs)


# the filter layout of each conv-family kernel (c_runtime/include/mq_conv.h and siblings)
FILTER_LAYOUTS = {
    "conv2d": "OHWI",
    "depthwise_conv2d": "1HWO, O = C_in * ch_mult",
    "transpose_conv2d": "OHWI, not flipped",
    "conv3d": "ODHWI",
    "conv2d_s16": "OHWI",
    "depthwise_conv2d_s16": "1HWO, O = C_in * ch_mult",
    "fully_connected_s16": "[out][in]",
}


def note_filter_quant(ctx: Ctx, code: LayerCode, layout: str, channels: int) -> None:
    """Layout notes of a filter and its bias / multiplier / shift arrays."""
    scope = "per output channel" if channels > 1 else "per tensor"
    code.notes[ctx.weight("filter")] = ", ".join(
        x for x in (layout, f"{'per-channel' if channels > 1 else 'per-tensor'} scales") if x)
    code.notes[ctx.weight("bias")] = f"{scope}, in accumulator units (input x filter scale)"
    code.notes[ctx.weight("multiplier")] = f"{scope}, Q31 M: rescale by M * 2^(shift - 31)"
    code.notes[ctx.weight("shift")] = f"{scope}, requantization exponents (see multiplier)"


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
    return struct_def("mq_per_channel_quant", ctx.sym("quant"),
                      [("multiplier", ctx.weight("multiplier")), ("shift", ctx.weight("shift"))])


def _stride_text(sh: int, sw: int) -> str:
    return f"s{sh}" if sh == sw else f"s{sh}x{sw}"


def _conv_family_call(ctx: Ctx, node: QNode, code: LayerCode, fn: str, struct: str,
                      fields: tuple[str, ...], dims, first_arg: str = "") -> None:
    """What every conv-family kernel shares (conv, depthwise, transpose conv, conv3d): the
    filter, bias, multiplier and shift arrays, the params/quant/dims statics and the call in
    mq_conv.h's argument order (after `first_arg`, e.g. an mq_order pointer). `dims(cname,
    shape)` writes one dims struct."""
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    filt = _i8(p.filter)
    code.weights += [(ctx.weight("filter"), filt)]
    if p.bias is not None:
        code.weights += [(ctx.weight("bias"), _i32(p.bias))]
    code.weights += [(ctx.weight("multiplier"), _i32(p.multiplier))]
    code.weights += [(ctx.weight("shift"), _i32(p.shift))]
    note_filter_quant(ctx, code, FILTER_LAYOUTS.get(node.kernel, ""), len(p.multiplier))
    code.statics += [
        struct_def(struct, ctx.sym("params"), _fields(p, fields)),
        _quant_def(ctx),
        dims(ctx.sym("input_dims"), ctx.shape(x)),
        dims(ctx.sym("filter_dims"), filt.shape),
        dims(ctx.sym("output_dims"), ctx.shape(y)),
    ]
    bias = ctx.weight("bias") if p.bias is not None else "NULL"
    code.call = _checked(
        f"{fn}({first_arg}&{ctx.sym('params')}, &{ctx.sym('quant')}, &{ctx.sym('input_dims')}, "
        f"{ctx.ptr(x)}, &{ctx.sym('filter_dims')}, {ctx.weight('filter')}, {bias}, "
        f"&{ctx.sym('output_dims')}, {ctx.ptr(y)})"
    )


def _dims4_def(cname: str, shape) -> str:
    return dims_def(cname, nhwc(shape))


def _conv(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    depthwise = node.kernel == "depthwise_conv2d"
    filt = _i8(p.filter)
    kh, kw = int(filt.shape[1]), int(filt.shape[2])
    text = f"{node.kernel} {kh}x{kw} {_stride_text(p.stride_h, p.stride_w)}"
    if p.dilation_h != 1 or p.dilation_w != 1:
        text += f" d{p.dilation_h}x{p.dilation_w}"
    code = _layer(ctx, node, text)
    fn = "mq_depthwise_conv2d_s8" if depthwise else "mq_conv2d_s8"
    y = node.outputs[0]
    rel = ctx.overlaps.get((node.inputs[0], y))
    if rel is not None:  # the output is planned over the input: the call that allows it
        v = pick_variant(ctx.graph, node, rel)
        if v is None:
            raise MicroqError(f"internal error: no {node.kernel} call allows its output at "
                              f"{rel:+d} B over its input (node '{node.name}')")
        fn = v.fn
        if v.chunk:
            code.summary += f" {'reverse' if v.reverse else 'forward'} order ({v.chunk})"
            code.statics.append(struct_def("mq_order", ctx.sym("order"),
                                           [("reverse", c_int(int(v.reverse))),
                                            ("chunk", c_int(v.chunk))]))
    order = f"&{ctx.sym('order')}, " if fn.endswith("_ordered_s8") else ""
    _conv_family_call(ctx, node, code, fn, "mq_conv_params", CONV_FIELDS, _dims4_def, order)
    return code


def _fully_connected(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    filt = _i8(p.filter)
    n_out, k = int(filt.shape[0]), int(filt.shape[1])
    rows = int(np.prod(ctx.shape(x)[:-1], dtype=np.int64))
    code = _layer(ctx, node, f"fully_connected {k}->{n_out}")
    code.weights += [(ctx.weight("filter"), filt)]
    if p.bias is not None:
        code.weights += [(ctx.weight("bias"), _i32(p.bias))]
    code.weights += [(ctx.weight("multiplier"), _i32(p.multiplier))]
    code.weights += [(ctx.weight("shift"), _i32(p.shift))]
    note_filter_quant(ctx, code, "[out][in]", len(p.multiplier))
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
    return code


def _pool(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    text = f"{node.kernel} {p.kernel_h}x{p.kernel_w} {_stride_text(p.stride_h, p.stride_w)}"
    code = _layer(ctx, node, text)
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
    code = _layer(ctx, node, text)
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
    code = _layer(ctx, node, f"lut {p.function}".rstrip())
    code.weights += [(ctx.weight("table"), table)]
    code.call = _checked(
        f"mq_lut_s8({ctx.weight('table')}, {_size(ctx, x)}, {ctx.ptr(x)}, {ctx.ptr(y)})"
    )
    return code


def _requantize(ctx: Ctx, node: QNode) -> LayerCode:
    x, y = node.inputs[0], node.outputs[0]
    code = _layer(ctx, node, "requantize")
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
    code = _layer(ctx, node, f"softmax {rows}x{row_size}")
    code.statics += [
        struct_def("mq_softmax_params", ctx.sym("params"), _fields(node.params, SOFTMAX_FIELDS))
    ]
    code.call = _checked(
        f"mq_softmax_s8(&{ctx.sym('params')}, {rows}, {row_size}, {ctx.ptr(x)}, {ctx.ptr(y)})"
    )
    return code


def _softmax_masked(ctx: Ctx, node: QNode) -> LayerCode:
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    rows, row_size = int(np.prod(shape[:-1], dtype=np.int64)), shape[-1]
    mask = np.ascontiguousarray(np.asarray(node.params.mask, np.uint8))
    if mask.ndim != 2 or mask.shape[1] != row_size or rows % mask.shape[0]:
        raise MicroqError(f"node '{node.name}': mask {list(mask.shape)} does not repeat over "
                          f"{rows} rows of {row_size}; compile the model again")
    mask = (mask != 0).astype(np.uint8)
    code = LayerCode(f"softmax {rows}x{row_size} masked", "mq_softmax")
    code.statics += [
        struct_def("mq_softmax_params", ctx.sym("params"), _fields(node.params, SOFTMAX_FIELDS))
    ]
    code.weights += [(ctx.weight("mask"), mask)]
    code.call = _checked(
        f"mq_softmax_masked_s8(&{ctx.sym('params')}, {rows}, {row_size}, {mask.shape[0]}, "
        f"{ctx.weight('mask')}, {ctx.ptr(x)}, {ctx.ptr(y)})"
    )
    return code


def _concat(ctx: Ctx, node: QNode) -> LayerCode:
    y = node.outputs[0]
    out = ctx.shape(y)
    axis = node.params.axis % len(out)
    outer = int(np.prod(out[:axis], dtype=np.int64))
    inner = int(np.prod(out[axis + 1 :], dtype=np.int64))
    n = len(node.inputs)
    code = _layer(ctx, node, f"concat axis {axis}")
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
    code = _layer(ctx, node, "pad")
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
    code = _layer(ctx, node, f"transpose ({', '.join(map(str, perm))})")
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
    code = _layer(ctx, node, f"reshape -> {list(ctx.shape(node.outputs[0]))}")
    code.call = [f"/* no code: {comment_text(node.outputs[0])} aliases its input's memory */"]
    return code




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
    code = _layer(ctx, node, text)
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
    return code


def _layernorm(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    rows, width = int(np.prod(shape[:-1], dtype=np.int64)), shape[-1]
    code = _layer(ctx, node, f"layernorm {rows}x{width}")
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
    return code


def _slice(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    bounds = zip(p.begin, p.end, p.step)
    axes = ", ".join(f"{b}:{e}" + (f":{s}" if s != 1 else "") for b, e, s in bounds)
    code = _layer(ctx, node, f"slice [{axes}]")

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
    code = _layer(ctx, node, f"{node.kernel} {xs[1]}x{xs[2]} -> {ys[1]}x{ys[2]}")
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
    return code


def _transpose_conv(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    filt = _i8(p.filter)
    _, kh, kw, _ = (int(d) for d in filt.shape)
    text = f"transpose_conv2d {kh}x{kw} {_stride_text(p.stride_h, p.stride_w)}"
    if p.dilation_h != 1 or p.dilation_w != 1:
        text += f" d{p.dilation_h}x{p.dilation_w}"
    code = _layer(ctx, node, text)
    _conv_family_call(ctx, node, code, "mq_transpose_conv2d_s8", "mq_conv_params", CONV_FIELDS,
                      _dims4_def)
    return code




def _dims5_def(cname: str, dims) -> str:
    if len(dims) != 5:
        raise MicroqError(f"conv3d tensor {list(dims)} must have rank 5 (NDHWC)")
    return f"static const mq_dims5 {cname} = {{{', '.join(c_int(d) for d in dims)}}};\n"


def _conv3d(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    filt = _i8(p.filter)
    k = "x".join(str(int(v)) for v in filt.shape[1:4])
    strides = (p.stride_d, p.stride_h, p.stride_w)
    text = f"conv3d {k} s{'x'.join(map(str, strides)) if len(set(strides)) > 1 else strides[0]}"
    code = _layer(ctx, node, text)
    _conv_family_call(ctx, node, code, "mq_conv3d_s8", "mq_conv3d_params", CONV3D_FIELDS,
                      _dims5_def)
    return code




def _groupnorm(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    batches, channels = shape[0], shape[-1]
    spatial = int(np.prod(shape[1:-1], dtype=np.int64))
    kind = "instancenorm" if p.groups == channels else f"groupnorm g{p.groups}"
    code = _layer(ctx, node, f"{kind} {spatial}x{channels}")
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
    return code




def _prelu(ctx: Ctx, node: QNode) -> LayerCode:
    x, alpha, y = node.inputs[0], node.inputs[1], node.outputs[0]
    sx, sa = ctx.shape(x), ctx.shape(alpha)
    code = _layer(ctx, node, "prelu" if sa == sx else "prelu (broadcast)")
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
    code = _layer(ctx, node, f"{node.kernel} axes {', '.join(map(str, axes))}")

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
    code = _layer(ctx, node, f"argmax axis {axis}")
    fields = [("outer", c_int(outer)), ("axis_size", c_int(shape[axis])),
              ("inner", c_int(inner)),
              ("select_last_index", c_int(node.params.select_last_index))]
    code.statics += [struct_def("mq_argmax_params", ctx.sym("params"), fields)]
    code.call = _checked(f"mq_argmax_s8(&{ctx.sym('params')}, {ctx.ptr(x)}, {ctx.ptr(y)})")
    return code


RECURRENT_ARRAYS = (("input_weights", _i8), ("recurrent_weights", _i8), ("input_bias", _i32),
                    ("recurrent_bias", _i32), ("input_multiplier", _i32), ("input_shift", _i32),
                    ("recurrent_multiplier", _i32), ("recurrent_shift", _i32))


def _recurrent(ctx: Ctx, node: QNode) -> LayerCode:
    """lstm / gru: outputs (y [1, T, H], int16 state scratch in the arena)."""
    p = node.params
    x, y, state = node.inputs[0], node.outputs[0], node.outputs[1]
    steps = ctx.shape(x)[-2]
    code = _layer(ctx, node, f"{node.kernel} {steps}x{p.input_size} -> {p.hidden_size}")
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
    return code


def _abs(ctx: Ctx, node: QNode) -> LayerCode:
    x, y = node.inputs[0], node.outputs[0]
    code = _layer(ctx, node, "abs")
    code.statics += [
        struct_def("mq_requantize_params", ctx.sym("params"), _fields(node.params, REQUANT_FIELDS))
    ]
    code.call = _checked(
        f"mq_abs_s8(&{ctx.sym('params')}, {_size(ctx, x)}, {ctx.ptr(x)}, {ctx.ptr(y)})"
    )
    return code


LSTM_TFL_FIELDS = struct_fields(qir.TflLstmParams)


def _lstm_tfl(ctx: Ctx, node: QNode) -> LayerCode:
    """lstm_tfl (TFLite UNIDIRECTIONAL_SEQUENCE_LSTM): outputs (y [1, T, H], int16 cell)."""
    p = node.params
    x, y, state = node.inputs[0], node.outputs[0], node.outputs[1]
    steps = ctx.shape(x)[-2]
    code = LayerCode(f"lstm (TFLite) {steps}x{p.input_size} -> {p.hidden_size}", "mq_recurrent")
    fields = _fields(p, LSTM_TFL_FIELDS)
    for what, conv in RECURRENT_ARRAYS:
        if what == "recurrent_bias":  # TFLite's recurrent matmul has none
            continue
        code.weights += [(ctx.weight(what), conv(getattr(p, what)))]
        fields.append((what, ctx.weight(what)))
    code.statics += [struct_def("mq_lstm_tfl_params", ctx.sym("params"), fields)]
    code.call = _checked(
        f"mq_lstm_tfl_s8(&{ctx.sym('params')}, {steps}, {ctx.ptr(x)}, {ctx.ptr(y)}, "
        f"(int16_t *)(void *){ctx.ptr(state)})"
    )
    code.macs = steps * 4 * p.hidden_size * (p.input_size + p.hidden_size)
    return code


EMITTERS_S8: dict[str, Callable[[Ctx, QNode], LayerCode]] = {  # codegen.emitters: all
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
    "softmax_masked": _softmax_masked,
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
    "lstm_tfl": _lstm_tfl,
    "abs": _abs,
}
# runtime family -> the C sources it needs (headers come from #include lines)
FAMILY_SOURCES: dict[str, tuple[str, ...]] = FAMILIES
