"""Float IR: graph, tensors and op attributes in physical (NHWC) layout. Imports nothing of ours.

The ONNX importer builds this graph; the float executor (ref.float_exec) runs it; the quantizer
rewrites it into the quantized graph (qir). Shapes here are *physical*: 4-D activations are NHWC,
a Conv1D activation [N, C, L] is stored as [N, 1, L, C]. Graph inputs keep the permutation that
maps the user's (ONNX, logical) layout to the physical one; graph outputs are always logical.

Op vocabulary (Node.op, inputs, attrs):
  Conv2D          x [N,H,W,Cin], w [Cout,KH,KW,Cin/groups] (OHWI, const), b [Cout] (const)
                  ConvAttrs; depthwise is groups == Cin (Cout = Cin * multiplier)
  FullyConnected  x [..., K], w [Cout, K] (const), b [Cout] (const); FCAttrs
  MaxPool/AvgPool x [N,H,W,C]; PoolAttrs (global pooling = window of the whole input)
  Add/Sub/Mul     a, b (either may be const), numpy broadcasting; BinaryAttrs
  Concat          any number of inputs; ConcatAttrs(axis) (physical axis)
  Reshape         x; ReshapeAttrs(shape) (physical output shape; a no-op in memory)
  Transpose       x; TransposeAttrs(perm)
  Pad             x; PadAttrs(pads=((before, after), ...) per axis, value)
  Softmax         x; SoftmaxAttrs (always over the last physical axis)
  MaskedSoftmax   x, keep (const 0/1, x's physical shape with the sample axis 1); SoftmaxAttrs;
                  over the last axis of the kept keys only: masked keys get exactly 0, a row
                  with every key masked is all 0 (an attention mask: causal, attn_mask)
  Activation      x; ActAttrs(kind, ...) elementwise: relu, clip, leaky_relu, sigmoid, tanh,
                  hard_sigmoid, hard_swish, silu, gelu, gelu_tanh, elu, softplus, mish, ...
  MatMul          a [..., M, K], b [..., K, N] (or [..., N, K] when transpose_b), both
                  activations with equal batch dims; MatMulAttrs(transpose_b, alpha)
  LayerNorm       x, gamma [C] (const), beta [C] (const); over the last physical axis;
                  LayerNormAttrs(eps)
  Slice           x; SliceAttrs(begin, end, step) per physical axis (step > 0, axis 0 untouched)
  Resize          x [N,H,W,C] -> [N,OH,OW,C]; ResizeAttrs (nearest / linear, ONNX coordinate modes)
  ConvTranspose2D x [N,H,W,Cin], w [Cout,KH,KW,Cin/groups] (OHWI, const), b [Cout] (const);
                  ConvAttrs (pads: the ONNX pads; the output size is the output tensor's)
  Conv3D          x [N,D,H,W,Cin] (NDHWC), w [Cout,KD,KH,KW,Cin/groups], b [Cout]; Conv3DAttrs
  Max/Min         a, b (either may be const), numpy broadcasting; BinaryAttrs
  PRelu           x, slope (const, broadcasting against x); BinaryAttrs
  ReduceMax/Min   x; ReduceAttrs(axes) physical axes, kept with size 1
  ArgMax          x; ArgMaxAttrs(axis, select_last_index) physical axis, kept with size 1; the
                  output holds indices (float here, int8 with scale 1 once quantized)
  GroupNorm       x [N, ..., C] (channels last), gamma [C] (const), beta [C] (const); each of
                  `groups` runs of C / groups channels normalized over all axes but N and C
                  (instance norm: groups == C); GroupNormAttrs(groups, eps)
  LSTM / GRU      x [N, T, I], W [G*H, I], R [G*H, H], Wb [G*H], Rb [G*H] (all const, ONNX gate
                  order: LSTM iofc, GRU zrh, linear_before_reset 1 or 0); forward, zero initial
                  state; outputs (y [N, T, H], state [N, T, H]: the LSTM cell state / GRU h, for
                  calibration only); RecurrentAttrs(hidden, reset_first, reverse)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

INF = math.inf


@dataclass(frozen=True)
class ConvAttrs:
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    groups: int = 1
    act_min: float = -INF  # fused ReLU/Clip: the output clamp, in float
    act_max: float = INF


@dataclass(frozen=True)
class FCAttrs:
    act_min: float = -INF
    act_max: float = INF


@dataclass(frozen=True)
class PoolAttrs:
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    count_include_pad: bool = False  # AvgPool only


@dataclass(frozen=True)
class BinaryAttrs:
    act_min: float = -INF
    act_max: float = INF


@dataclass(frozen=True)
class ConcatAttrs:
    axis: int


@dataclass(frozen=True)
class ReshapeAttrs:
    shape: tuple[int, ...]


@dataclass(frozen=True)
class TransposeAttrs:
    perm: tuple[int, ...]


@dataclass(frozen=True)
class PadAttrs:
    pads: tuple[tuple[int, int], ...]
    value: float = 0.0


@dataclass(frozen=True)
class SoftmaxAttrs:
    beta: float = 1.0


@dataclass(frozen=True)
class ActAttrs:
    kind: str
    alpha: float = 0.0  # leaky_relu slope, hard_sigmoid alpha, elu alpha
    beta: float = 0.0  # hard_sigmoid beta
    lo: float = -INF  # clip range
    hi: float = INF


@dataclass(frozen=True)
class MatMulAttrs:
    transpose_b: bool = False  # b is stored [..., N, K] (Q.K^T without moving K)
    alpha: float = 1.0  # y = alpha * (a @ b): attention's 1/sqrt(d), folded by the importer


@dataclass(frozen=True)
class LayerNormAttrs:
    eps: float = 1e-5


@dataclass(frozen=True)
class GroupNormAttrs:
    groups: int
    eps: float = 1e-5
    act_min: float = -INF  # fused ReLU/Clip
    act_max: float = INF


@dataclass(frozen=True)
class ReduceAttrs:
    axes: tuple[int, ...]


@dataclass(frozen=True)
class ArgMaxAttrs:
    axis: int
    select_last_index: bool = False


@dataclass(frozen=True)
class RecurrentAttrs:
    hidden: int
    reset_first: int = 0  # GRU linear_before_reset = 0: n = tanh(Wn x + Rn (r * h) + ...)
    reverse: int = 0  # runs from the last step to the first (ONNX direction "reverse")


@dataclass(frozen=True)
class SliceAttrs:
    begin: tuple[int, ...]
    end: tuple[int, ...]
    step: tuple[int, ...]


RESIZE_COORD_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                      "tf_half_pixel_for_nn", "half_pixel_symmetric")
RESIZE_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


@dataclass(frozen=True)
class ResizeAttrs:
    """Resize of H and W as onnxruntime computes it: `scale` per axis is the float32 factor the
    coordinate transform divides by (out/in when the model gives sizes)."""

    mode: str  # "nearest" or "linear"
    coord_mode: str  # ONNX coordinate_transformation_mode
    nearest_mode: str  # ONNX nearest_mode
    scale: tuple[float, float]  # (H, W)
    size: tuple[int, int]  # (OH, OW)
    # linear only: per axis (H, W), None or the model's own taps (lo, hi, weight of hi) per
    # output index, from a gather + lerp decomposition (onnx_import.patterns.fuse_gather_lerp)
    taps: tuple[tuple[tuple[int, ...], tuple[int, ...], tuple[float, ...]] | None, ...] = (
        None, None)


@dataclass(frozen=True)
class Conv3DAttrs:
    stride: tuple[int, int, int] = (1, 1, 1)
    dilation: tuple[int, int, int] = (1, 1, 1)
    pads: tuple[int, int, int, int, int, int] = (0,) * 6  # front, top, left, back, bottom, right
    groups: int = 1
    act_min: float = -INF
    act_max: float = INF


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    const: np.ndarray | None = None  # float32 constant data, or None for an activation

    @property
    def is_const(self) -> bool:
        return self.const is not None


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: object = None
    source: list[str] = field(default_factory=list)  # ONNX node names merged into this node


@dataclass
class Graph:
    name: str
    tensors: dict[str, Tensor]
    nodes: list[Node]  # topologically sorted
    inputs: list[str]
    outputs: list[str]
    # physical = logical.transpose(input_perm[name]); identity when absent
    input_perm: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # the ONNX (logical) shapes of graph inputs and outputs, batch fixed to 1
    logical_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    source_path: str = ""

    def producer(self, tensor: str) -> Node | None:
        for n in self.nodes:
            if tensor in n.outputs:
                return n
        return None

    def consumers(self, tensor: str) -> list[Node]:
        return [n for n in self.nodes if tensor in n.inputs]
