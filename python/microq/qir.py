"""Quantized IR: int8 tensors and kernel parameters, one dataclass per C parameter struct.

Field names match the C structs in c_runtime/include (mq_conv_params, ...). The integer
reference (ref.kernels) executes these nodes; codegen emits them as C. Imports nothing of ours.

Kernels (QNode.kernel -> params type -> C function):
  conv2d            ConvParams      mq_conv2d_s8            filter OHWI [Cout,KH,KW,Cin/g]
  depthwise_conv2d  ConvParams      mq_depthwise_conv2d_s8  filter 1HWO [1,KH,KW,Cout]
  fully_connected   FCParams        mq_fully_connected_s8   filter [out, in]
  max_pool          PoolParams      mq_max_pool_s8
  avg_pool          PoolParams      mq_avg_pool_s8
  add / sub         AddParams       mq_add_s8 / mq_sub_s8   (numpy broadcasting)
  mul               MulParams       mq_mul_s8
  lut               LutParams       mq_lut_s8
  requantize        RequantizeParams mq_requantize_s8
  softmax           SoftmaxParams   mq_softmax_s8           (over the last axis)
  softmax_masked    MaskedSoftmaxParams mq_softmax_masked_s8 (over the last axis, masked keys
                    get probability 0; a constant uint8 keep mask [mask_rows, row_size])
  concat            ConcatParams    mq_concat_s8
  pad               PadParams       mq_pad_s8
  transpose         TransposeParams mq_transpose_s8
  reshape           ReshapeParams   (none: the output aliases the input's memory)
  batch_matmul      BatchMatMulParams mq_batch_matmul_s8    inputs (lhs, rhs), both int8
  layernorm         LayerNormParams mq_layernorm_s8         (over the last axis)
  slice             SliceParams     mq_slice_s8             (Slice / Split / Gather of one index)
  resize_nearest    ResizeParams    mq_resize_nearest_s8    (output shares the input's quantization)
  resize_bilinear   ResizeParams    mq_resize_bilinear_s8   (output shares the input's quantization)
  transpose_conv2d  ConvParams      mq_transpose_conv2d_s8  filter OHWI [Cout,KH,KW,Cin/g]
  conv3d            Conv3DParams    mq_conv3d_s8            filter [Cout,KD,KH,KW,Cin/g], NDHWC
  groupnorm         GroupNormParams mq_groupnorm_s8         (group / instance norm over NHWC)
  maximum / minimum AddParams       mq_maximum_s8 / mq_minimum_s8 (ADD's rescaling, broadcasting)
  prelu             PReluParams     mq_prelu_s8             inputs (x, alpha int8 const)
  reduce_max / _min ReduceParams    mq_reduce_max_s8 / mq_reduce_min_s8 (keepdims physical shape)
  argmax            ArgMaxParams    mq_argmax_s8            (int8 index output, scale 1, zp 0)
  16x8 (int16 activations, int8 weights, int64 bias; c_runtime/src/mq_s16.c, ref/s16.py):
  conv2d_s16 / depthwise_conv2d_s16 ConvParams, fully_connected_s16 FCParams, add_s16 / sub_s16
  AddParams (left_shift 15), mul_s16 MulParams, softmax_s16 Softmax16Params, logistic_s16 /
  tanh_s16 Sigmoid16Params, lut_s16 LutParams (table int16 [513]), layernorm_s16
  LayerNormParams (int16 input), requantize_s16 RequantizeParams (int8 <-> int16: the output tensor's
  dtype says which)
  lstm / gru        RecurrentParams mq_lstm_s8 / mq_gru_s8  x [1, T, I] -> y [1, T, H]; outputs
                    (y, int16 state scratch [2 * H] bytes, planned in the arena)
  lstm_tfl          TflLstmParams   mq_lstm_tfl_s8          TFLite UNIDIRECTIONAL_SEQUENCE_LSTM as
                    TFLite Micro computes it; x [1, T, I] -> y [1, T, H], same two outputs
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class QParams:
    scale: float
    zero_point: int


def quantize_int8(x, scale: float, zero_point: int) -> np.ndarray:
    """Float activations -> int8 as the host runner, compare and bias correction feed them:
    clip(round(x / scale) + zero_point, -128, 127) in float32 with np.round (half to even, as
    ONNX QuantizeLinear). The one float -> int8 rounding of model inputs."""
    x = np.asarray(x, dtype=np.float32)
    q = np.round(x / np.float32(scale)) + np.float32(zero_point)
    return np.ascontiguousarray(np.clip(q, -128, 127).astype(np.int8))


@dataclass
class QTensor:
    name: str
    shape: tuple[int, ...]  # physical shape
    q: QParams
    const: np.ndarray | None = None  # int8 data for a constant operand (e.g. Add with a const)
    dtype: str = "int8"  # "int16": a 16x8 activation (symmetric, zero point 0)


@dataclass(frozen=True, eq=False)
class ConvParams:
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
    dilation_h: int
    dilation_w: int
    input_offset: int
    output_offset: int
    act_min: int
    act_max: int
    ch_mult: int  # depthwise only (1 for conv2d)
    multiplier: np.ndarray  # int32 [Cout]
    shift: np.ndarray  # int32 [Cout]
    filter: np.ndarray  # int8, OHWI (conv2d) or 1HWO (depthwise)
    bias: np.ndarray | None  # int32 [Cout]


@dataclass(frozen=True, eq=False)
class FCParams:
    input_offset: int
    filter_offset: int
    output_offset: int
    act_min: int
    act_max: int
    multiplier: np.ndarray  # int32 [out]
    shift: np.ndarray  # int32 [out]
    filter: np.ndarray  # int8 [out, in]
    bias: np.ndarray | None  # int32 [out]


@dataclass(frozen=True)
class PoolParams:
    kernel_h: int = field(metadata={"c": False})  # in the C call's filter_dims, not the struct
    kernel_w: int = field(metadata={"c": False})
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
    pad_bottom: int
    pad_right: int
    count_include_pad: int
    input_offset: int
    output_offset: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class AddParams:
    input1_offset: int
    input1_multiplier: int
    input1_shift: int
    input2_offset: int
    input2_multiplier: int
    input2_shift: int
    left_shift: int
    output_offset: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class MulParams:
    input1_offset: int
    input2_offset: int
    output_offset: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


@dataclass(frozen=True, eq=False)
class LutParams:
    table: np.ndarray  # int8 [256], table[x + 128]
    function: str = ""  # what the table computes, for comments


@dataclass(frozen=True)
class RequantizeParams:
    input_offset: int
    output_offset: int
    multiplier: int
    shift: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class SoftmaxParams:
    input_multiplier: int
    input_left_shift: int
    diff_min: int


@dataclass(frozen=True, eq=False)
class MaskedSoftmaxParams:
    input_multiplier: int
    input_left_shift: int
    diff_min: int
    mask: np.ndarray  # uint8 [mask_rows, row_size], 1 = keep; row r uses mask[r % mask_rows]

    @property
    def softmax(self) -> SoftmaxParams:
        return SoftmaxParams(self.input_multiplier, self.input_left_shift, self.diff_min)


@dataclass(frozen=True)
class ConcatParams:
    axis: int  # physical axis of the output


@dataclass(frozen=True)
class PadParams:
    pre: tuple[int, int, int, int]  # elements before, per axis of the 4-D view
    post: tuple[int, int, int, int]
    pad_value: int


@dataclass(frozen=True)
class TransposeParams:
    perm: tuple[int, ...]


@dataclass(frozen=True)
class ReshapeParams:
    shape: tuple[int, ...]


@dataclass(frozen=True)
class BatchMatMulParams:
    """out = clamp(output_offset + MBQM(sum_k (lhs[.., i, k] + lhs_offset) *
    (rhs'[.., k, j] + rhs_offset), output_multiplier, output_shift)), per-tensor, no bias.

    Inputs: lhs [.., M, K] and rhs [.., K, N] (or [.., N, K] when rhs_transposed, for Q.K^T),
    rank 2..4; leading batch/head axes broadcast numpy-style (size 1). Output [.., M, N].
    Build with quant.scheme.batch_matmul_params."""

    rhs_transposed: int  # 1: rhs is stored [.., N, K]
    lhs_offset: int  # -lhs zero point
    rhs_offset: int  # -rhs zero point
    output_offset: int  # +output zero point
    output_multiplier: int  # lhs_scale * rhs_scale / output_scale
    output_shift: int
    act_min: int
    act_max: int


@dataclass(frozen=True, eq=False)
class LayerNormParams:
    """LayerNorm over the last axis (width C); gamma, beta, eps and both scales folded offline.
    See c_runtime/include/mq_layernorm.h for the arithmetic. Build with
    quant.scheme.layernorm_params."""

    eps: int  # int64: round(eps / input_scale^2 * C^2 * 2^16)
    output_offset: int  # +output zero point
    act_min: int
    act_max: int
    multiplier: np.ndarray  # int32 [C], signed: gamma[c] / output_scale * 2^(8 - 20)
    shift: np.ndarray  # int32 [C], in [-31, 0]
    bias: np.ndarray  # int32 [C], round(beta[c] / output_scale * 2^8)


@dataclass(frozen=True, eq=False)
class GroupNormParams:
    """Group (instance: groups == C) normalization of [N, spatial, C] over each group's
    spatial * C / groups values; gamma, beta, eps and both scales folded offline. See
    c_runtime/include/mq_groupnorm.h for the arithmetic. Build with
    quant.rules_norm.groupnorm_params."""

    groups: int
    var_bits: int  # extra fractional bits of the variance, even, 0..16
    eps: int  # int64: round(eps / input_scale^2 * count^2 * 2^var_bits)
    output_offset: int  # +output zero point
    act_min: int
    act_max: int
    multiplier: np.ndarray  # int32 [C], signed: gamma[c] / output_scale * 2^(8 - 20)
    shift: np.ndarray  # int32 [C], in [-31, 0]
    bias: np.ndarray  # int32 [C], round(beta[c] / output_scale * 2^8)


@dataclass(frozen=True)
class PReluParams:
    """TFLite PRELU: x >= zp_in -> MBQM(x - zp_in, m1, s1); else MBQM((x - zp_in) *
    (alpha + alpha_offset), m2, s2); + output zero point. See mq_elementwise.h."""

    input_offset: int
    alpha_offset: int
    output_offset: int
    output_multiplier_1: int
    output_shift_1: int
    output_multiplier_2: int
    output_shift_2: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class ReduceParams:
    """ReduceMax / ReduceMin over the physical axes `axes`; output keeps them with size 1."""

    axes: tuple[int, ...]


@dataclass(frozen=True)
class ArgMaxParams:
    """ArgMax along physical axis `axis`; output keeps it with size 1 and holds int8 indices."""

    axis: int
    select_last_index: int


@dataclass(frozen=True)
class SliceParams:
    """out = in[begin[0]:end[0]:step[0], ...] over every axis (rank = len(begin)), with
    normalized bounds: output axis d takes max(0, ceil((end - begin) / step)) indices
    begin + i * step; with step < 0, end = -1 means "through index 0". Build with
    quant.scheme.slice_params (ONNX Slice) or gather_params (Gather of one index: the axis
    keeps size 1; the graph's output shape may drop it, the bytes are the same)."""

    begin: tuple[int, ...]
    end: tuple[int, ...]
    step: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class ResizeParams:
    """Per-output-row / -column source taps, computed offline (quant.rules_spatial):
    nearest reads in[y_lo[oy], x_lo[ox]]; bilinear blends in[y_lo|y_hi, x_lo|x_hi] with weights
    frac / 2^10 for the hi tap (see c_runtime/include/mq_resize.h for the rounding)."""

    y_lo: np.ndarray  # int32 [OH]
    y_hi: np.ndarray  # int32 [OH] (bilinear)
    y_frac: np.ndarray  # int32 [OH] in [0, 1024] (bilinear)
    x_lo: np.ndarray  # int32 [OW]
    x_hi: np.ndarray  # int32 [OW]
    x_frac: np.ndarray  # int32 [OW]


@dataclass(frozen=True, eq=False)
class Conv3DParams:
    stride_d: int
    stride_h: int
    stride_w: int
    pad_front: int
    pad_top: int
    pad_left: int
    dilation_d: int
    dilation_h: int
    dilation_w: int
    input_offset: int
    output_offset: int
    act_min: int
    act_max: int
    multiplier: np.ndarray  # int32 [Cout]
    shift: np.ndarray  # int32 [Cout]
    filter: np.ndarray  # int8 [Cout,KD,KH,KW,Cin/groups]
    bias: np.ndarray | None  # int32 [Cout]


@dataclass(frozen=True, eq=False)
class RecurrentParams:
    """One forward LSTM (gates i, o, f, c) or GRU (z, r, h; linear_before_reset = 1) layer.
    See python/microq/ref/recurrent.py and c_runtime/include/mq_recurrent.h for the arithmetic.
    Build with quant.rules_recurrent.recurrent_params."""

    cell: str  # "lstm" or "gru"
    input_size: int
    hidden_size: int
    input_offset: int  # -x zero point
    hidden_offset: int  # -h zero point (h[t-1] is the output's previous row)
    output_offset: int  # +h zero point
    cell_shift: int  # LSTM: cell state int16 = c * 2^cell_shift (0..15); 0 for GRU
    output_multiplier: int  # LSTM: 2^-30 / output_scale; GRU: 2^-15 / output_scale
    output_shift: int
    input_weights: np.ndarray  # int8 [gates * H, I]
    recurrent_weights: np.ndarray  # int8 [gates * H, H]
    input_bias: np.ndarray  # int32 [gates * H], at scale x_scale * w_scale[g]
    recurrent_bias: np.ndarray  # int32 [gates * H], at scale h_scale * r_scale[g]
    input_multiplier: np.ndarray  # int32 [gates * H]: x_scale * w_scale[g] * 2^12
    input_shift: np.ndarray
    recurrent_multiplier: np.ndarray  # int32 [gates * H]: h_scale * r_scale[g] * 2^12
    recurrent_shift: np.ndarray
    sigmoid_table: np.ndarray  # int16 [513]
    tanh_table: np.ndarray  # int16 [513]
    # GRU linear_before_reset = 0: the n rows' recurrent side reads r * h (Q0.15 int16, no
    # offset); their recurrent bias / multipliers are at 2^-15 * r_scale
    reset_first: int = 0
    reverse: int = 0  # steps from the last to the first (ONNX direction "reverse")


@dataclass(frozen=True, eq=False)
class TflLstmParams:
    """TFLite's int8x8_16 UNIDIRECTIONAL_SEQUENCE_LSTM (no peephole, projection, layer norm or
    CIFG), the arithmetic of TFLite Micro's LstmStep: python/microq/ref/recurrent.py lstm_tfl.
    Gate rows in ONNX order i, o, f, c (as RecurrentParams); TFLite quantizes each gate's
    weights per tensor, so the rescales are one per gate, and its recurrent matmul has no bias.
    Built by tflite_import.lower."""

    cell: str  # "lstm_tfl"
    input_size: int
    hidden_size: int
    input_offset: int  # -x zero point
    hidden_offset: int  # -hidden-state zero point
    output_offset: int  # +hidden-state zero point
    cell_shift: int  # the cell state's scale is 2^-cell_shift (0..30)
    cell_clip: int  # |c| <= cell_clip in cell-state steps; 0: no clip
    forget_multiplier: int  # f * c (Q0.15 x cell) -> cell: 2^-15
    forget_shift: int
    update_multiplier: int  # i * g (Q0.15 x Q0.15) -> cell: 2^-30 / cell scale
    update_shift: int
    output_multiplier: int  # tanh(c) * o (Q0.15 x Q0.15) -> h: 2^-30 / h scale
    output_shift: int
    input_weights: np.ndarray  # int8 [4 * H, I]
    recurrent_weights: np.ndarray  # int8 [4 * H, H]
    input_bias: np.ndarray  # int32 [4 * H]: the gate biases (TFLite's, as stored)
    input_multiplier: np.ndarray  # int32 [4], per gate: x scale * W scale / 2^-12
    input_shift: np.ndarray
    recurrent_multiplier: np.ndarray  # int32 [4], per gate: h scale * R scale / 2^-12
    recurrent_shift: np.ndarray


@dataclass(frozen=True, eq=False)
class Softmax16Params:
    """TFLite int16 softmax (16x8): the max-shifted input times input_multiplier * 2^shift maps
    [-65535, 0] to [-10, 0] for the exp table; tables int16 [513]. See ref/s16.py."""

    input_multiplier: int
    input_left_shift: int
    exp_lut: np.ndarray  # int16 [513], exp over [-10, 0]
    one_over_one_plus_x_lut: np.ndarray  # int16 [513], 1 / (1 + x) over [0, 1]


@dataclass(frozen=True)
class Sigmoid16Params:
    """TFLite int16 LOGISTIC / TANH (16x8): input rescaled by input_multiplier / 2^left_shift
    (multiplier 0: a power-of-two scale, 3 << left_shift) onto the shared sigmoid table."""

    input_multiplier: int
    input_left_shift: int


@dataclass
class QNode:
    name: str
    kernel: str
    inputs: list[str]
    outputs: list[str]
    params: object
    source: list[str] = field(default_factory=list)  # ONNX node names this node implements


@dataclass
class QGraph:
    name: str
    tensors: dict[str, QTensor]
    nodes: list[QNode]
    inputs: list[str]
    outputs: list[str]
    input_perm: dict[str, tuple[int, ...]] = field(default_factory=dict)
    logical_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
