"""The op table: what every stage of the pipeline must know about each op, in one place.

Two levels, one entry (one line) each:

- OPS: float IR ops (ir.Node.op) -> OpDef: the attrs dataclass the frontends attach, the
  quantized kernels the quantizer may lower the op to, and the MAC count `microq inspect`
  reports for it.
- KERNELS: quantized kernels (qir.QNode.kernel) -> KernelDef: the params dataclass, the C
  runtime family (c_runtime/src/<family>.c), the C entry point(s), the C params struct whose
  scalar fields codegen initializes from the dataclass, the MAC count `compile` reports, the
  inputs the output may overlap in place, and whether bias correction applies.

Each stage keeps its own explicit dict keyed by these names (onnx_import.convert.CONVERTERS maps
ONNX op types onto IR ops; ref.float_exec.OPS, quant.quantize.HANDLERS by IR op;
ref.int_exec.KERNELS, codegen.emitters.EMITTERS by kernel); tests/test_op_fixtures.py
test_registries_complete fails when they disagree with this table or a C symbol is missing.
Adding an op: one OpDef / KernelDef line here, then one entry per stage.

Imports only ir and qir (the bottom layer).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import ir, qir

Shape = Sequence[int]


def prod(shape: Shape) -> int:
    return math.prod(int(d) for d in shape)


# -- MAC counts (shapes are physical; the same formula at IR and kernel level) -------------------
# IR level: f(input shapes incl. constant weights, output shapes, attrs) -> MACs
# kernel level: f(input shapes of the activations, output shapes, params) -> MACs

def no_macs(ins, outs, _attrs) -> int:
    return 0


def elements_out(ins, outs, _attrs) -> int:
    """One multiply-add per output element (LayerNorm, GroupNorm)."""
    return prod(outs[0])


def _ir_conv(ins, outs, _a) -> int:  # Conv2D / Conv3D: w [Cout, K..., Cin/groups]
    return prod(outs[0]) * prod(ins[1][1:])


def _ir_transpose_conv(ins, outs, _a) -> int:  # every input pixel x every tap (the scatter)
    return prod(ins[0][:3]) * prod(ins[1])


def _ir_fc(ins, outs, _a) -> int:
    return prod(outs[0]) * int(ins[1][1])


def _ir_matmul(ins, outs, _a) -> int:  # B*M*N outputs, K products each
    return prod(outs[0]) * int(ins[0][-1])


def _ir_resize(ins, outs, a) -> int:  # one multiply per tap, four taps
    return 4 * prod(outs[0]) if a.mode == "linear" else 0


def _ir_recurrent(ins, outs, _a) -> int:  # every step: every gate row over x and h
    w, r = ins[1], ins[2]
    return int(outs[0][-2]) * int(w[0]) * (int(w[1]) + int(r[1]))


def _k_conv(ins, outs, p) -> int:  # filter OHWI: KH*KW*(Cin/groups) taps per output
    f = p.filter.shape
    return prod(outs[0]) * int(f[1]) * int(f[2]) * int(f[3])


def _k_depthwise(ins, outs, p) -> int:  # filter 1HWO: KH*KW taps per output
    f = p.filter.shape
    return prod(outs[0]) * int(f[1]) * int(f[2])


def _k_fc(ins, outs, p) -> int:  # rows = every leading dim
    return prod(ins[0][:-1]) * int(p.filter.shape[1]) * int(p.filter.shape[0])


def _k_matmul(ins, outs, p) -> int:
    return prod(outs[0]) * int(ins[0][-1])


def _k_transpose_conv(ins, outs, p) -> int:  # every input pixel x every tap, as inspect
    return prod(ins[0][:3]) * prod(p.filter.shape)


def _k_conv3d(ins, outs, p) -> int:
    return prod(outs[0]) * prod(p.filter.shape[1:])


def _k_bilinear(ins, outs, p) -> int:  # as inspect counts
    return 4 * prod(outs[0])


def _k_norm(ins, outs, p) -> int:
    return prod(ins[0])


def _k_recurrent(ins, outs, p) -> int:
    steps = int(ins[0][-2])
    return steps * int(p.input_weights.shape[0]) * (p.input_size + p.hidden_size)


# -- the table --------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpDef:
    name: str  # ir.Node.op
    attrs: type  # the ir attrs dataclass of Node.attrs (type(None): the op has none)
    kernels: tuple[str, ...]  # the KERNELS the quantizer may lower it to
    macs: Callable = no_macs  # (input shapes, output shapes, attrs) -> MACs (inspect)


@dataclass(frozen=True)
class KernelDef:
    name: str  # qir.QNode.kernel
    params: type  # the qir params dataclass of QNode.params
    family: str | None  # runtime family: c_runtime/{include,src}/<family>.{h,c}; None: no code
    symbols: tuple[str, ...] = ()  # the C entry points an emitted call uses
    struct: str | None = None  # the C params struct filled from the dataclass's scalar fields
    macs: Callable = no_macs  # (activation input shapes, output shapes, params) -> MACs
    in_place: tuple[int, ...] = ()  # inputs the output may overlap (D = 0) when unbroadcast
    bias_correction: bool = False  # a per-channel int32 bias that quant.bias_correction tunes
    inserted: bool = False  # built by the TFLite lowering or inserted between layers (16x8
    #                         boundaries), never the lowering of one IR op


def _op(name, attrs, kernels, macs=no_macs) -> tuple[str, OpDef]:
    return name, OpDef(name, attrs, tuple(kernels), macs)


def _k(name, params, family, symbols=None, struct=None, **kw) -> tuple[str, KernelDef]:
    symbols = (f"mq_{name}_s8",) if symbols is None and family else tuple(symbols or ())
    return name, KernelDef(name, params, family, symbols, struct, **kw)


OPS: dict[str, OpDef] = dict([
    _op("Conv2D", ir.ConvAttrs, ["conv2d", "depthwise_conv2d", "conv2d_s16",
                                 "depthwise_conv2d_s16"], _ir_conv),
    _op("FullyConnected", ir.FCAttrs, ["fully_connected", "fully_connected_s16"], _ir_fc),
    _op("MaxPool", ir.PoolAttrs, ["max_pool", "max_pool_s16"]),
    _op("AvgPool", ir.PoolAttrs, ["avg_pool", "avg_pool_s16"]),
    _op("Add", ir.BinaryAttrs, ["add", "add_s16"]),
    _op("Sub", ir.BinaryAttrs, ["sub", "sub_s16"]),
    _op("Mul", ir.BinaryAttrs, ["mul", "mul_s16"]),
    _op("Concat", ir.ConcatAttrs, ["concat", "requantize"]),
    _op("Reshape", ir.ReshapeAttrs, ["reshape"]),
    _op("Transpose", ir.TransposeAttrs, ["transpose"]),
    _op("Pad", ir.PadAttrs, ["pad"]),
    _op("Softmax", ir.SoftmaxAttrs, ["softmax", "softmax_s16"]),
    _op("Activation", ir.ActAttrs, ["lut", "logistic_s16", "tanh_s16", "lut_s16"]),
    _op("MatMul", ir.MatMulAttrs, ["batch_matmul"], _ir_matmul),
    _op("LayerNorm", ir.LayerNormAttrs, ["layernorm", "layernorm_s16"], elements_out),
    _op("Slice", ir.SliceAttrs, ["slice"]),
    _op("Resize", ir.ResizeAttrs, ["resize_nearest", "resize_bilinear"], _ir_resize),
    _op("ConvTranspose2D", ir.ConvAttrs, ["transpose_conv2d"], _ir_transpose_conv),
    _op("Conv3D", ir.Conv3DAttrs, ["conv3d"], _ir_conv),
    _op("GroupNorm", ir.GroupNormAttrs, ["groupnorm"], elements_out),
    _op("Max", ir.BinaryAttrs, ["maximum"]),
    _op("Min", ir.BinaryAttrs, ["minimum"]),
    _op("PRelu", ir.BinaryAttrs, ["prelu"]),
    _op("ReduceMax", ir.ReduceAttrs, ["reduce_max"]),
    _op("ReduceMin", ir.ReduceAttrs, ["reduce_min"]),
    _op("ArgMax", ir.ArgMaxAttrs, ["argmax"]),
    _op("LSTM", ir.RecurrentAttrs, ["lstm"], _ir_recurrent),
    _op("GRU", ir.RecurrentAttrs, ["gru"], _ir_recurrent),
    _op("Abs", type(None), ["abs"]),  # no attributes
    _op("MaskedSoftmax", ir.SoftmaxAttrs, ["softmax_masked"]),
])

KERNELS: dict[str, KernelDef] = dict([
    _k("conv2d", qir.ConvParams, "mq_conv", struct="mq_conv_params", macs=_k_conv,
       bias_correction=True),
    _k("depthwise_conv2d", qir.ConvParams, "mq_conv", struct="mq_conv_params",
       macs=_k_depthwise, bias_correction=True),
    _k("fully_connected", qir.FCParams, "mq_fc", struct="mq_fc_params", macs=_k_fc,
       bias_correction=True),
    _k("max_pool", qir.PoolParams, "mq_pool", struct="mq_pool_params"),
    _k("avg_pool", qir.PoolParams, "mq_pool", struct="mq_pool_params"),
    _k("add", qir.AddParams, "mq_elementwise", struct="mq_add_params", in_place=(0, 1)),
    _k("sub", qir.AddParams, "mq_elementwise", struct="mq_add_params", in_place=(0, 1)),
    _k("mul", qir.MulParams, "mq_elementwise", struct="mq_mul_params", in_place=(0, 1)),
    _k("lut", qir.LutParams, "mq_elementwise", in_place=(0,)),
    _k("requantize", qir.RequantizeParams, "mq_elementwise", struct="mq_requantize_params",
       in_place=(0,)),
    _k("softmax", qir.SoftmaxParams, "mq_softmax", struct="mq_softmax_params"),
    _k("concat", qir.ConcatParams, "mq_tensor"),
    _k("pad", qir.PadParams, "mq_tensor"),
    _k("transpose", qir.TransposeParams, "mq_tensor"),
    _k("reshape", qir.ReshapeParams, None),  # no code: the output aliases the input
    _k("batch_matmul", qir.BatchMatMulParams, "mq_matmul", struct="mq_batch_matmul_params",
       macs=_k_matmul),
    _k("layernorm", qir.LayerNormParams, "mq_layernorm", struct="mq_layernorm_params",
       macs=_k_norm),
    _k("slice", qir.SliceParams, "mq_slice"),
    _k("resize_nearest", qir.ResizeParams, "mq_resize"),
    _k("resize_bilinear", qir.ResizeParams, "mq_resize", macs=_k_bilinear),
    _k("transpose_conv2d", qir.ConvParams, "mq_transpose_conv", struct="mq_conv_params",
       macs=_k_transpose_conv),
    _k("conv3d", qir.Conv3DParams, "mq_conv3d", struct="mq_conv3d_params", macs=_k_conv3d),
    _k("groupnorm", qir.GroupNormParams, "mq_groupnorm", struct="mq_groupnorm_params",
       macs=_k_norm),
    _k("maximum", qir.AddParams, "mq_elementwise", struct="mq_add_params", in_place=(0, 1)),
    _k("minimum", qir.AddParams, "mq_elementwise", struct="mq_add_params", in_place=(0, 1)),
    _k("prelu", qir.PReluParams, "mq_elementwise", struct="mq_prelu_params", in_place=(0,)),
    _k("reduce_max", qir.ReduceParams, "mq_reduce"),
    _k("reduce_min", qir.ReduceParams, "mq_reduce"),
    _k("argmax", qir.ArgMaxParams, "mq_reduce"),
    _k("lstm", qir.RecurrentParams, "mq_recurrent", struct="mq_recurrent_params",
       macs=_k_recurrent),
    _k("gru", qir.RecurrentParams, "mq_recurrent", struct="mq_recurrent_params",
       macs=_k_recurrent),
    _k("abs", qir.RequantizeParams, "mq_unary", struct="mq_requantize_params"),
    _k("softmax_masked", qir.MaskedSoftmaxParams, "mq_softmax", ["mq_softmax_masked_s8"]),
    _k("lstm_tfl", qir.TflLstmParams, "mq_recurrent", ["mq_lstm_tfl_s8"], "mq_lstm_tfl_params",
       macs=_k_recurrent, inserted=True),
    # 16x8 (int16 activations, int8 weights; c_runtime/src/mq_s16.c, codegen/layers_s16.py)
    _k("conv2d_s16", qir.ConvParams, "mq_s16", ["mq_conv2d_s16"], macs=_k_conv),
    _k("depthwise_conv2d_s16", qir.ConvParams, "mq_s16", ["mq_depthwise_conv2d_s16"],
       macs=_k_depthwise),
    _k("fully_connected_s16", qir.FCParams, "mq_s16", ["mq_fully_connected_s16"], macs=_k_fc),
    _k("add_s16", qir.AddParams, "mq_s16", ["mq_add_s16"]),
    _k("sub_s16", qir.AddParams, "mq_s16", ["mq_sub_s16"]),
    _k("mul_s16", qir.MulParams, "mq_s16", ["mq_mul_s16"]),
    _k("softmax_s16", qir.Softmax16Params, "mq_s16", ["mq_softmax_s16"]),
    _k("logistic_s16", qir.Sigmoid16Params, "mq_s16", ["mq_logistic_s16"]),
    _k("tanh_s16", qir.Sigmoid16Params, "mq_s16", ["mq_tanh_s16"]),
    _k("max_pool_s16", qir.PoolParams, "mq_s16", ["mq_max_pool_s16"]),
    _k("avg_pool_s16", qir.PoolParams, "mq_s16", ["mq_avg_pool_s16"]),
    _k("lut_s16", qir.LutParams, "mq_s16", ["mq_lut_s16"]),
    _k("layernorm_s16", qir.LayerNormParams, "mq_s16",
       ["mq_layernorm_s16", "mq_layernorm_s16_s8"], macs=_k_norm),
    _k("requantize_s16", qir.RequantizeParams, "mq_s16",
       ["mq_requantize_s8_s16", "mq_requantize_s16_s8", "mq_requantize_s16_s16"], inserted=True),
])

# runtime family -> the C sources it needs (its header is include/<family>.h; the headers it
# includes come with it)
FAMILIES: dict[str, tuple[str, ...]] = {
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
    "mq_recurrent": ("mq_recurrent.c", "mq_sigmoid_table.c"),
    "mq_unary": ("mq_unary.c",),
    "mq_s16": ("mq_s16.c", "mq_isqrt.c", "mq_sigmoid_table.c"),
}


# -- helpers the stages use ---------------------------------------------------------------------

def struct_fields(params_type: type) -> tuple[str, ...]:
    """The scalar (int) fields of a qir params dataclass, in order: the members of its C params
    struct that codegen initializes one by one (fields with metadata {"c": False} are passed to
    C some other way, e.g. PoolParams' kernel size in filter_dims)."""
    return tuple(f.name for f in dataclasses.fields(params_type)
                 if f.type in ("int", int) and f.metadata.get("c", True))


def op_macs(op: str, ins: list[Shape], outs: list[Shape], attrs) -> int:
    """MACs of an IR node (inspect): 0 for an op without multiply-accumulates."""
    return int(OPS[op].macs(ins, outs, attrs))


def kernel_macs(kernel: str, ins: list[Shape], outs: list[Shape], params) -> int:
    """MACs of a quantized node (compile's summary, bench_kernels)."""
    return int(KERNELS[kernel].macs(ins, outs, params))


def check_node(where: str, op: str, attrs) -> None:
    """A frontend built an IR node: its op must be in OPS with the right attrs type."""
    d = OPS.get(op)
    if d is None:
        raise AssertionError(f"{where}: IR op '{op}' is not in microq.ops.OPS")
    if not isinstance(attrs, d.attrs):
        raise AssertionError(f"{where}: IR op '{op}' needs {d.attrs.__name__} attrs, got "
                             f"{type(attrs).__name__}")


def check_kernel(where: str, kernel: str, params) -> None:
    """A quantizer emitted a kernel node: it must be in KERNELS with the right params type."""
    d = KERNELS.get(kernel)
    if d is None:
        raise AssertionError(f"{where}: kernel '{kernel}' is not in microq.ops.KERNELS")
    if not isinstance(params, d.params):
        raise AssertionError(f"{where}: kernel '{kernel}' needs {d.params.__name__}, got "
                             f"{type(params).__name__}")
