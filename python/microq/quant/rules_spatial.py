"""Quantizer rules of the spatial ops (Resize, ConvTranspose2D, Conv3D): float IR node -> qir
node, called by quant.quantize's HANDLERS with the running quantizer."""

from __future__ import annotations

from .. import qir
from ..ref.resize import resize_params
from . import scheme


def _weighted(q, node):
    """(x, out, input qparams, output qparams, int8 weights, per-channel scales, act range,
    multipliers, shifts, int32 bias) of a conv-like node with weight input 1 and bias input 2."""
    x, out = node.inputs[0], node.outputs[0]
    qi = q.q(x)
    q.add_tensor(out, q.calibrated(out))
    qo = q.q(out)
    wq, s_w = q.weights(node)
    mult, shift = scheme.channel_multipliers(qi.scale, s_w, qo.scale, q.rounding)
    lo, hi = scheme.act_range(qo.scale, qo.zero_point, node.attrs.act_min, node.attrs.act_max)
    return x, out, qi, qo, wq, mult, shift, lo, hi, q.bias(node, qi.scale, s_w)


def transpose_conv(q, node) -> None:
    """Per-channel int8 weights (OHWI), int32 bias, as TFLite's TRANSPOSE_CONV."""
    a = node.attrs
    x, out, qi, qo, wq, mult, shift, lo, hi, bias = _weighted(q, node)
    p = scheme.conv_params(a.stride, a.dilation, a.pads[:2], qi.zero_point, qo.zero_point,
                           (lo, hi), mult, shift, wq, bias)
    q.emit(node, "transpose_conv2d", [x], [out], p)


def resize(q, node) -> None:
    """Nearest copies and bilinear blends (weights summing to one) of int8 values: the output
    keeps its input's quantization, as TFLite's RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR."""
    x, out = node.inputs[0], node.outputs[0]
    q.add_tensor(out, q.q(x))
    in_hw = tuple(q.g.tensors[x].shape[1:3])
    p = resize_params(node.attrs, in_hw, tuple(node.attrs.size))
    kernel = "resize_nearest" if node.attrs.mode == "nearest" else "resize_bilinear"
    q.emit(node, kernel, [x], [out], p)


def conv3d(q, node) -> None:
    """Per-channel int8 weights [Cout,KD,KH,KW,Cin/g], int32 bias, any groups."""
    a = node.attrs
    x, out, qi, qo, wq, mult, shift, lo, hi, bias = _weighted(q, node)
    p = qir.Conv3DParams(
        stride_d=a.stride[0], stride_h=a.stride[1], stride_w=a.stride[2], pad_front=a.pads[0],
        pad_top=a.pads[1], pad_left=a.pads[2], dilation_d=a.dilation[0],
        dilation_h=a.dilation[1], dilation_w=a.dilation[2], input_offset=-qi.zero_point,
        output_offset=qo.zero_point, act_min=lo, act_max=hi, multiplier=mult, shift=shift,
        filter=wq, bias=bias)
    q.emit(node, "conv3d", [x], [out], p)
