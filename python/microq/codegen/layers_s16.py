"""C emission of the 16x8 kernels (c_runtime/src/mq_s16.c): one params struct and one checked
call per node, as layers.py does for the int8 kernels. int16 tensors live in the same byte
arena (4-byte aligned offsets) and are passed as int16_t pointers cast from their byte address.
"""

from __future__ import annotations

import numpy as np

from ..errors import MicroqError
from ..qir import QNode
from .cformat import broadcast_fields, c_int, dims_def, nhwc, struct_def
from .layers import (ADD_FIELDS, CONV_FIELDS, FC_FIELDS, MUL_FIELDS, POOL_FIELDS,
                     REQUANT_FIELDS, Ctx,
                     LayerCode, _checked, _dims4_def, _fields, _i8, _i32, _quant_def, _size,
                     _stride_text, FILTER_LAYOUTS, note_filter_quant)

FAMILY = "mq_s16"


def _is16(ctx: Ctx, t: str) -> bool:
    return ctx.graph.tensors[t].dtype == "int16"


def src(ctx: Ctx, t: str) -> str:
    """The read pointer of tensor t, typed by its dtype."""
    if _is16(ctx, t):
        return f"(const int16_t *)(const void *){ctx.ptr(t)}"
    return ctx.ptr(t)


def dst(ctx: Ctx, t: str) -> str:
    if _is16(ctx, t):
        return f"(int16_t *)(void *){ctx.ptr(t)}"
    return ctx.ptr(t)


def _need16(ctx: Ctx, node: QNode) -> None:
    for t in [*node.inputs, *node.outputs]:
        if not _is16(ctx, t):
            raise MicroqError(f"node '{node.name}' ({node.kernel}): tensor '{t}' is "
                              f"{ctx.graph.tensors[t].dtype}, the 16x8 kernel needs int16")


def _i64(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.int64))


def _weights(ctx: Ctx, code: LayerCode, p, node_kernel: str = "") -> str:
    code.weights += [(ctx.weight("filter"), _i8(p.filter))]
    if p.bias is not None:
        code.weights += [(ctx.weight("bias"), _i64(p.bias))]
    code.weights += [(ctx.weight("multiplier"), _i32(p.multiplier))]
    code.weights += [(ctx.weight("shift"), _i32(p.shift))]
    note_filter_quant(ctx, code, FILTER_LAYOUTS.get(node_kernel, ""), len(p.multiplier))
    return ctx.weight("bias") if p.bias is not None else "NULL"


def _conv(ctx: Ctx, node: QNode) -> LayerCode:
    _need16(ctx, node)
    p = node.params
    depthwise = node.kernel == "depthwise_conv2d_s16"
    x, y = node.inputs[0], node.outputs[0]
    filt = _i8(p.filter)
    kh, kw = int(filt.shape[1]), int(filt.shape[2])
    code = LayerCode(f"{node.kernel} {kh}x{kw} {_stride_text(p.stride_h, p.stride_w)}", FAMILY)
    bias = _weights(ctx, code, p, node.kernel)
    code.statics += [
        struct_def("mq_conv_params", ctx.sym("params"), _fields(p, CONV_FIELDS)),
        _quant_def(ctx),
        _dims4_def(ctx.sym("input_dims"), ctx.shape(x)),
        _dims4_def(ctx.sym("filter_dims"), filt.shape),
        _dims4_def(ctx.sym("output_dims"), ctx.shape(y)),
    ]
    fn = "mq_depthwise_conv2d_s16" if depthwise else "mq_conv2d_s16"
    code.call = _checked(
        f"{fn}(&{ctx.sym('params')}, &{ctx.sym('quant')}, &{ctx.sym('input_dims')}, "
        f"{src(ctx, x)}, &{ctx.sym('filter_dims')}, {ctx.weight('filter')}, {bias}, "
        f"&{ctx.sym('output_dims')}, {dst(ctx, y)})"
    )
    n, oh, ow, cout = nhwc(ctx.shape(y))
    code.macs = n * oh * ow * cout * kh * kw * (1 if depthwise else int(filt.shape[3]))
    return code


def _fully_connected(ctx: Ctx, node: QNode) -> LayerCode:
    _need16(ctx, node)
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    filt = _i8(p.filter)
    n_out, k = int(filt.shape[0]), int(filt.shape[1])
    rows = int(np.prod(ctx.shape(x)[:-1], dtype=np.int64))
    code = LayerCode(f"fully_connected_s16 {k}->{n_out}", FAMILY)
    bias = _weights(ctx, code, p, node.kernel)
    code.statics += [
        struct_def("mq_fc_params", ctx.sym("params"), _fields(p, FC_FIELDS)),
        _quant_def(ctx),
        dims_def(ctx.sym("input_dims"), (rows, 1, 1, k)),
        dims_def(ctx.sym("filter_dims"), (n_out, 1, 1, k)),
        dims_def(ctx.sym("output_dims"), (rows, 1, 1, n_out)),
    ]
    code.call = _checked(
        f"mq_fully_connected_s16(&{ctx.sym('params')}, &{ctx.sym('quant')}, "
        f"&{ctx.sym('input_dims')}, {src(ctx, x)}, &{ctx.sym('filter_dims')}, "
        f"{ctx.weight('filter')}, {bias}, &{ctx.sym('output_dims')}, {dst(ctx, y)})"
    )
    code.macs = rows * k * n_out
    return code


def _binary(ctx: Ctx, node: QNode) -> LayerCode:
    _need16(ctx, node)
    p = node.params
    a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
    sa, sb = ctx.shape(a), ctx.shape(b)
    op = node.kernel[: -len("_s16")]
    code = LayerCode(node.kernel if sa == sb else f"{node.kernel} (broadcast)", FAMILY)
    ctype, names = ("mq_mul_params", MUL_FIELDS) if op == "mul" else ("mq_add_params", ADD_FIELDS)
    bc = broadcast_fields(sa, sb)
    bc_init = [(k, "{" + ", ".join(c_int(v) for v in vals) + "}") for k, vals in bc.items()]
    bc_init[0] = ("rank", c_int(bc["rank"][0]))
    code.statics += [
        struct_def(ctype, ctx.sym("params"), _fields(p, names)),
        struct_def("mq_broadcast", ctx.sym("bcast"), bc_init),
    ]
    code.call = _checked(
        f"mq_{op}_s16(&{ctx.sym('params')}, &{ctx.sym('bcast')}, {src(ctx, a)}, "
        f"{src(ctx, b)}, {dst(ctx, y)})"
    )
    return code


def _softmax(ctx: Ctx, node: QNode) -> LayerCode:
    _need16(ctx, node)
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    rows, row_size = int(np.prod(shape[:-1], dtype=np.int64)), shape[-1]
    code = LayerCode(f"softmax_s16 {rows}x{row_size}", FAMILY)
    code.weights += [(ctx.weight("exp_lut"), np.asarray(p.exp_lut, np.int16)),
                     (ctx.weight("recip_lut"), np.asarray(p.one_over_one_plus_x_lut, np.int16))]
    code.statics += [struct_def("mq_softmax_s16_params", ctx.sym("params"), [
        ("input_multiplier", c_int(p.input_multiplier)),
        ("input_left_shift", c_int(p.input_left_shift)),
        ("exp_lut", ctx.weight("exp_lut")),
        ("one_over_one_plus_x_lut", ctx.weight("recip_lut")),
    ])]
    code.call = _checked(f"mq_softmax_s16(&{ctx.sym('params')}, {rows}, {row_size}, "
                         f"{src(ctx, x)}, {dst(ctx, y)})")
    return code


def _sigmoid(ctx: Ctx, node: QNode) -> LayerCode:
    _need16(ctx, node)
    x, y = node.inputs[0], node.outputs[0]
    code = LayerCode(node.kernel, FAMILY)
    code.statics += [struct_def("mq_sigmoid_s16_params", ctx.sym("params"), _fields(
        node.params, ("input_multiplier", "input_left_shift")))]
    code.call = _checked(f"mq_{node.kernel}(&{ctx.sym('params')}, {_size(ctx, x)}, "
                         f"{src(ctx, x)}, {dst(ctx, y)})")
    return code


def _requantize(ctx: Ctx, node: QNode) -> LayerCode:
    x, y = node.inputs[0], node.outputs[0]
    kinds = "_".join("s16" if _is16(ctx, t) else "s8" for t in (x, y))
    if kinds == "s8_s8":
        raise MicroqError(f"node '{node.name}' (requantize_s16): neither side is int16")
    code = LayerCode(f"requantize {kinds.replace('_', ' -> ')}", FAMILY)
    code.statics += [struct_def("mq_requantize_params", ctx.sym("params"),
                                _fields(node.params, REQUANT_FIELDS))]
    code.call = _checked(f"mq_requantize_{kinds}(&{ctx.sym('params')}, {_size(ctx, x)}, "
                         f"{src(ctx, x)}, {dst(ctx, y)})")
    return code


def _layernorm(ctx: Ctx, node: QNode) -> LayerCode:
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    if not _is16(ctx, x):
        raise MicroqError(f"node '{node.name}' (layernorm_s16): its input '{x}' is not int16")
    shape = ctx.shape(x)
    rows, width = int(np.prod(shape[:-1], dtype=np.int64)), shape[-1]
    fn = "mq_layernorm_s16" if _is16(ctx, y) else "mq_layernorm_s16_s8"
    code = LayerCode(f"layernorm_s16 {rows}x{width}", FAMILY)
    code.weights += [(ctx.weight("multiplier"), _i32(p.multiplier)),
                     (ctx.weight("shift"), _i32(p.shift)), (ctx.weight("bias"), _i32(p.bias))]
    code.statics += [
        struct_def("mq_layernorm_params", ctx.sym("params"), _fields(
            p, ("eps", "output_offset", "act_min", "act_max"))),
        _quant_def(ctx),
    ]
    code.call = _checked(f"{fn}(&{ctx.sym('params')}, &{ctx.sym('quant')}, "
                         f"{ctx.weight('bias')}, {rows}, {width}, {src(ctx, x)}, {dst(ctx, y)})")
    return code


def _lut(ctx: Ctx, node: QNode) -> LayerCode:
    _need16(ctx, node)
    x, y = node.inputs[0], node.outputs[0]
    code = LayerCode(f"lut_s16 {node.params.function}".rstrip(), FAMILY)
    code.weights += [(ctx.weight("table"), np.asarray(node.params.table, np.int16))]
    code.call = _checked(f"mq_lut_s16({ctx.weight('table')}, {_size(ctx, x)}, {src(ctx, x)}, "
                         f"{dst(ctx, y)})")
    return code


def _pool(ctx: Ctx, node: QNode) -> LayerCode:
    _need16(ctx, node)
    p = node.params
    x, y = node.inputs[0], node.outputs[0]
    code = LayerCode(f"{node.kernel} {p.kernel_h}x{p.kernel_w} "
                     f"{_stride_text(p.stride_h, p.stride_w)}", FAMILY)
    code.statics += [
        struct_def("mq_pool_params", ctx.sym("params"), _fields(p, POOL_FIELDS)),
        dims_def(ctx.sym("input_dims"), nhwc(ctx.shape(x))),
        dims_def(ctx.sym("filter_dims"), (1, p.kernel_h, p.kernel_w, 1)),
        dims_def(ctx.sym("output_dims"), nhwc(ctx.shape(y))),
    ]
    code.call = _checked(
        f"mq_{node.kernel}(&{ctx.sym('params')}, &{ctx.sym('input_dims')}, {src(ctx, x)}, "
        f"&{ctx.sym('filter_dims')}, &{ctx.sym('output_dims')}, {dst(ctx, y)})")
    return code


EMITTERS_S16 = {
    "max_pool_s16": _pool,
    "avg_pool_s16": _pool,
    "lut_s16": _lut,
    "layernorm_s16": _layernorm,
    "conv2d_s16": _conv,
    "depthwise_conv2d_s16": _conv,
    "fully_connected_s16": _fully_connected,
    "add_s16": _binary,
    "sub_s16": _binary,
    "mul_s16": _binary,
    "softmax_s16": _softmax,
    "logistic_s16": _sigmoid,
    "tanh_s16": _sigmoid,
    "requantize_s16": _requantize,
}
