"""ONNX Expand of an activation to a constant shape, lowered to what microq already has.

numpy broadcasting of x to `shape`: new leading axes are a free Reshape (leading 1s), then every
axis where x has 1 and the output N > 1 is a Concat of N copies of the same tensor along that
axis (one quantization throughout: a pure copy, never a requantize). ONNX's Attention function
body repeats the K/V heads of grouped-query attention this way, and so does torch's dynamo
export of F.scaled_dot_product_attention(enable_gqa=True) at opset 18. An Expand of a constant
is folded before conversion (fold.py).
"""

from __future__ import annotations

import numpy as np

from microq import ir
from microq.onnx_import.context import Ctx, Unsupported
from microq.onnx_import.layout import identity
from microq.onnx_import.ops_tensor import _hidden_rank


def expand_shape(logical: tuple[int, ...], target) -> tuple[int, ...]:
    """The output shape of Expand(x, target): ONNX's (numpy's bidirectional) broadcasting."""
    t = tuple(int(d) for d in np.asarray(target).reshape(-1))
    if any(d < 0 for d in t):
        raise Unsupported(f"Expand to the shape {list(t)}: negative dims; the model is invalid")
    try:
        return tuple(int(d) for d in np.broadcast_shapes(tuple(logical), t))
    except ValueError:
        raise Unsupported(
            f"Expand of {list(logical)} to the shape {list(t)}: the shapes do not broadcast "
            "(each dim of the shape must equal x's or be 1, or x's must be 1); the model is "
            "invalid") from None


def expand(cx: Ctx) -> None:
    if cx.const(0) is not None:  # fold.py folds it when the shape is constant too
        raise Unsupported("Expand of a constant whose shape is not constant is not supported")
    target = cx.const(1)
    if target is None:
        raise Unsupported("Expand with a computed (non-constant) shape input is not supported: "
                          "the shape must be a constant after constant folding")
    logical = cx.shape(cx.node.input[0])
    out = expand_shape(logical, target)
    if 0 in out:
        raise Unsupported(f"Expand of {list(logical)} to {list(out)}: empty (0-element) tensors "
                          "are not supported")
    lead = len(out) - len(logical)
    padded = (1,) * lead + tuple(logical)
    grow = [a for a in range(len(out)) if padded[a] == 1 and out[a] > 1]
    k, m = cx.batch_of(0), cx.merged_of(0)
    k_out = None if k is None else k + lead
    if k_out is not None and k_out in grow:
        raise Unsupported(f"Expand of {list(logical)} to {list(out)} along the batch axis (axis "
                          f"{k}) would replicate the sample; microq compiles one sample at a "
                          "time (a shape holding the batch size of the export: export with a "
                          "dynamic batch)")
    m_out = None if m is None else m + lead
    if m_out is not None and m_out in grow:
        raise Unsupported(f"Expand of {list(logical)} to {list(out)} along axis {m}, into which "
                          "a Reshape merged the batch, would replicate the sample; microq "
                          "compiles one sample at a time")
    if not grow:  # only leading 1s (or nothing): a reshape of the same bytes
        v = cx.value(0, hidden=True)
        if not lead:
            cx.values[cx.out()] = v
        else:
            v = _hidden_rank(cx, v, logical, len(out))
            cx.set(v.name, v.perm, hidden=True)
        cx.set_batch(k_out, merged=m_out)
        return
    v = _hidden_rank(cx, cx.value(0, hidden=True), logical, len(out))
    cur, shape = v.name, [1] + list(padded)  # IR shape: the hidden leading 1, then row-major
    for i, a in enumerate(grow):
        shape[a + 1] = out[a]
        name = cx.out() if i == len(grow) - 1 else f"{cx.out()}__x{a}"
        cur = cx.b.add("Concat", [cur] * out[a], name, tuple(shape), ir.ConcatAttrs(a + 1),
                       cx.name, cx.source)
    cx.set(cur, identity(len(out)), hidden=True)
    cx.set_batch(k_out, merged=m_out)
