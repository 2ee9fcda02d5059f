"""Compile-time proofs that a quantized node cannot overflow int32 or shift out of range in the
C kernels (issue 9: silent wrong results and undefined behaviour on the MCU).

Every producer of quantized nodes (the quantizer, the QDQ importer, the TFLite lowering) runs
check_node on what it emits; a node that fails is refused with a one-line MicroqError naming
it. The numpy reference (ref/*) asserts the same bounds on actual data (arith.Int32Overflow).

Bounds, per output channel c of conv / depthwise / fully connected:
    reach(input_offset) * sum_k |w[c, k] + filter_offset| + |bias[c]| <= 2^31 - 1
where reach = max |x + input_offset| over int8 x (at most 255). The left side bounds every
partial sum of the accumulator, in any order (the kernels start from the bias or add it last).
A left shift (shift > 0) must keep that bound times 2^shift within int32 too.
Average pooling: taps * reach(input_offset) + taps / 2 <= 2^31 - 1 (taps = kernel_h * kernel_w).
Batched matmul: K * reach(lhs_offset) * reach(rhs_offset) <= 2^31 - 1.
Softmax rows <= 4095 (the sum of exponentials), LayerNorm rows <= 32768.
Every requantization shift lies in [-31, 31] (single rounding: [-31, 30]).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import MicroqError
from ..ops import check_kernel
from ..ref.arith import INT32_MAX
from ..ref.layernorm import MAX_ROW as LAYERNORM_MAX_ROW
from ..ref.matmul import MAX_DEPTH as MATMUL_MAX_DEPTH
from ..ref.softmax import MAX_ROW_SIZE as SOFTMAX_MAX_ROW

SHIFT_MIN, SHIFT_MAX = -31, 31


def reach(offset: int) -> int:
    """max |x + offset| over int8 x."""
    return max(abs(-128 + int(offset)), abs(127 + int(offset)))


def channel_weight_sums(kernel: str, filt: np.ndarray, filter_offset: int = 0) -> np.ndarray:
    """sum_k |w + filter_offset| per output channel, as int64: conv2d OHWI, depthwise 1HWO,
    fully connected [out, in]."""
    w = np.abs(np.asarray(filt, np.int64) + int(filter_offset))
    if kernel == "depthwise_conv2d":
        return w.reshape(-1, w.shape[-1]).sum(axis=0)
    return w.reshape(w.shape[0], -1).sum(axis=1)


def accumulator_bounds(kernel: str, p) -> np.ndarray:
    """Per output channel, the largest |partial sum| the kernel's int32 accumulator can hold."""
    sums = channel_weight_sums(kernel, p.filter, getattr(p, "filter_offset", 0))
    bias = 0 if p.bias is None else np.abs(np.asarray(p.bias, np.int64))
    return reach(p.input_offset) * sums + bias


def _fail(where: str, node, why: str):
    raise MicroqError(f"{where}node '{node.name}' ({node.kernel}): {why}")


def _check_shifts(where: str, node, shift, multiplier, rounding: str, signed: bool = False,
                  what: str = "requantization") -> None:
    shift = np.atleast_1d(np.asarray(shift, np.int64))
    mult = np.atleast_1d(np.asarray(multiplier, np.int64))
    hi = SHIFT_MAX - (1 if rounding == "single" else 0)
    bad = np.flatnonzero((shift < SHIFT_MIN) | (shift > hi))
    if bad.size:
        c = int(bad[0])
        _fail(where, node, f"{what} shift {int(shift[c])} (channel {c}) is outside "
              f"[{SHIFT_MIN}, {hi}]: the scales give a multiplier of about "
              f"2^{int(shift[c]) - 1}, which the kernels cannot apply; the layer's input, weight "
              "and output scales are inconsistent (check the model's quantization parameters)")
    lo = -INT32_MAX if signed else 0
    bad = np.flatnonzero((mult < lo) | (mult > INT32_MAX))
    if bad.size:
        c = int(bad[0])
        _fail(where, node, f"{what} multiplier {int(mult[c])} (channel {c}) is not a valid "
              "int32 fixed-point multiplier")


def _check_left_shift(where: str, node, bound, shift, what: str) -> None:
    """bound * 2^shift must fit int32 wherever shift > 0 (the kernels left-shift before the
    multiply)."""
    bound = np.broadcast_to(np.asarray(bound, np.int64), np.shape(shift))
    left = np.maximum(np.asarray(shift, np.int64), 0)
    bad = np.flatnonzero((bound << left) > INT32_MAX)
    if bad.size:
        c = int(bad[0])
        _fail(where, node, f"{what} of channel {c} (up to {int(bound[c])}) times the left shift "
              f"2^{int(left[c])} overflows int32: the output scale is too small for the input "
              "and weight scales; widen the output range")


def check_node(node, tensors: Mapping | None = None, where: str = "",
               rounding: str = "double") -> None:
    """Refuse (MicroqError) a quantized node whose int32 arithmetic is not proved safe.
    `tensors` (name -> QTensor) gives operand shapes (needed for batch_matmul's depth);
    `where` prefixes the message (e.g. the model file)."""
    k, p = node.kernel, node.params
    check_kernel(f"{where}node '{node.name}'", k, p)  # a kernel and params of microq.ops
    if k.endswith("_s16"):  # 16x8: int64 accumulators, proved in quant/s16.py
        from .s16 import check_node_s16

        return check_node_s16(where, node)
    if k in ("conv2d", "depthwise_conv2d", "fully_connected"):
        _check_shifts(where, node, p.shift, p.multiplier, rounding)
        bounds = accumulator_bounds(k, p)
        bad = np.flatnonzero(bounds > INT32_MAX)
        if bad.size:
            c = int(bad[0])
            sums = channel_weight_sums(k, p.filter, getattr(p, "filter_offset", 0))
            bias = 0 if p.bias is None else int(p.bias[c])
            terms = int(np.prod(p.filter.shape)) // int(np.asarray(p.multiplier).size)
            _fail(where, node, f"the int32 accumulator of output channel {c} is not bounded: "
                  f"{reach(p.input_offset)} * sum|w| ({int(sums[c])}, {terms} terms) + |bias| "
                  f"({abs(bias)}) = {int(bounds[c])} exceeds 2^31 - 1; the layer is too deep "
                  "(or its bias too large) for int32: split it into smaller layers")
        _check_left_shift(where, node, bounds, p.shift, "the accumulator")
    elif k == "avg_pool":
        taps = int(p.kernel_h) * int(p.kernel_w)
        # the C sums raw x (|.| <= 128 taps), adds taps * input_offset, then +- count / 2
        bound = max(taps * reach(p.input_offset) + taps // 2, taps * abs(int(p.input_offset)))
        if bound > INT32_MAX:
            _fail(where, node, f"a {p.kernel_h}x{p.kernel_w} window ({taps} taps) can sum to "
                  f"{bound}, beyond int32; pool in two steps (smaller windows)")
    elif k == "batch_matmul":
        _check_shifts(where, node, p.output_shift, p.output_multiplier, rounding)
        if tensors is not None and node.inputs and node.inputs[0] in tensors:
            depth = int(tensors[node.inputs[0]].shape[-1])
            bound = depth * reach(p.lhs_offset) * reach(p.rhs_offset)
            if depth > MATMUL_MAX_DEPTH:
                _fail(where, node, f"depth {depth} exceeds the kernel's {MATMUL_MAX_DEPTH} "
                      "(MQ_MATMUL_MAX_DEPTH); split the matmul")
            if bound > INT32_MAX:
                _fail(where, node, f"depth {depth} can accumulate {bound}, beyond int32 "
                      f"(at most {INT32_MAX // (reach(p.lhs_offset) * reach(p.rhs_offset))} "
                      "terms); split the matmul")
            _check_left_shift(where, node, bound, np.asarray([p.output_shift]), "the accumulator")
    elif k == "mul":
        _check_shifts(where, node, p.output_shift, p.output_multiplier, rounding)
        bound = reach(p.input1_offset) * reach(p.input2_offset)
        _check_left_shift(where, node, bound, np.asarray([p.output_shift]), "the product")
    elif k == "requantize":
        _check_shifts(where, node, p.shift, p.multiplier, rounding)
        _check_left_shift(where, node, reach(p.input_offset), np.asarray([p.shift]),
                          "the input")
    elif k in ("add", "sub"):
        for m, s in ((p.input1_multiplier, p.input1_shift), (p.input2_multiplier,
                     p.input2_shift), (p.output_multiplier, p.output_shift)):
            _check_shifts(where, node, s, m, rounding)
            if s > 0:
                _fail(where, node, f"rescaling shift {s} must be <= 0 (a multiplier below 1)")
    elif k == "layernorm":
        _check_shifts(where, node, p.shift, p.multiplier, rounding, signed=True)
        row = np.asarray(p.multiplier).size
        if row > LAYERNORM_MAX_ROW:
            _fail(where, node, f"rows of {row} values exceed the kernel's {LAYERNORM_MAX_ROW} "
                  "(its int32 sums are bounded for that many)")
    elif k in ("softmax", "softmax_masked"):
        if not 0 <= int(p.input_left_shift) <= SHIFT_MAX:
            _fail(where, node, f"input left shift {p.input_left_shift} is outside [0, 31]")
        if tensors is not None and node.inputs and node.inputs[0] in tensors:
            row = int(tensors[node.inputs[0]].shape[-1])
            if row > SOFTMAX_MAX_ROW:
                _fail(where, node, f"rows of {row} classes exceed {SOFTMAX_MAX_ROW}: the int32 "
                      "sum of exponentials would overflow")


def check_graph(qg, where: str = "", rounding: str = "double") -> None:
    """check_node on every node of a quantized graph."""
    for node in qg.nodes:
        check_node(node, qg.tensors, where, rounding)
