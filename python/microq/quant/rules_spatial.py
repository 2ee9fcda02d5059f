"""Quantizer rules of the spatial ops (Resize, ConvTranspose2D, Conv3D): float IR node -> qir
node, called by quant.quantize's HANDLERS with the running quantizer."""

from __future__ import annotations

from ..ref.resize import resize_params


def resize(q, node) -> None:
    """Nearest copies and bilinear blends (weights summing to one) of int8 values: the output
    keeps its input's quantization, as TFLite's RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR."""
    x, out = node.inputs[0], node.outputs[0]
    q.add_tensor(out, q.q(x))
    in_hw = tuple(q.g.tensors[x].shape[1:3])
    p = resize_params(node.attrs, in_hw, tuple(node.attrs.size))
    kernel = "resize_nearest" if node.attrs.mode == "nearest" else "resize_bilinear"
    q.emit(node, kernel, [x], [out], p)
