"""Quantizer rule of the masked softmax (ir MaskedSoftmax -> qir softmax_masked): attention with
a constant mask (causal, a boolean attn_mask, an additive 0 / -inf mask). The scores keep their
calibrated int8 scale; the mask never enters it: it becomes a constant keep byte per (query, key),
stored once per distinct block of rows (one [Tq, Tk] mask serves every head)."""

from __future__ import annotations

import numpy as np

from .. import ir
from ..qir import MaskedSoftmaxParams, QParams
from . import scheme


def mask_rows(keep: np.ndarray) -> np.ndarray:
    """keep [rows, row_size] (0/1) -> its shortest block of rows that repeats down to `rows`."""
    rows = keep.shape[0]
    for m in range(1, rows + 1):
        if rows % m == 0 and np.array_equal(np.tile(keep[:m], (rows // m, 1)), keep):
            return np.ascontiguousarray(keep[:m])
    return keep  # pragma: no cover - m = rows always matches


def masked_softmax(qz, node: ir.Node) -> None:
    x, keep_name, out = node.inputs[0], node.inputs[1], node.outputs[0]
    shape = tuple(qz.g.tensors[x].shape)
    keep = np.broadcast_to(qz.g.tensors[keep_name].const != 0, shape)
    keep = keep.reshape(-1, shape[-1]).astype(np.uint8)
    qz.add_tensor(out, QParams(1.0 / 256.0, -128))
    p = scheme.softmax_params(qz.q(x).scale, node.attrs.beta, qz.rounding)
    qz.emit(node, "softmax_masked", [x], [out],
            MaskedSoftmaxParams(p.input_multiplier, p.input_left_shift, p.diff_min,
                                mask_rows(keep)))
