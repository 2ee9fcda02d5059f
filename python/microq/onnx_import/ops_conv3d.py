"""ONNX frontend converter for Conv with a 3-D kernel (Conv3D, NDHWC); every other Conv goes to
ops_spatial.conv."""

from __future__ import annotations

import numpy as np

from microq import ir
from microq.onnx_import import ops_spatial as sp
from microq.onnx_import.context import Ctx, Unsupported

NDHWC = (0, 2, 3, 4, 1)  # physical NDHWC from logical NCDHW


def conv(cx: Ctx) -> None:
    """ONNX Conv: 3-D here, 1-D / 2-D in ops_spatial.conv."""
    w = cx.const(1)
    if w is None or w.ndim != 5:
        sp.conv(cx)
        return
    a = cx.attrs()
    b = cx.const(2)
    if cx.has_input(2) and b is None:
        raise Unsupported("Conv with a non-constant bias is not supported")
    logical = cx.shape(cx.node.input[0])
    if len(logical) != 5:
        raise Unsupported(f"Conv3D weight {list(w.shape)} on a rank-{len(logical)} input: the "
                          "model is invalid")
    v = cx.b.to_perm(cx.value(0), logical, NDHWC, cx.source)
    xs = cx.b.shape(v.name)
    k = list(w.shape[2:])
    s = [int(x) for x in a.get("strides", [1] * 3)]
    d = [int(x) for x in a.get("dilations", [1] * 3)]
    in_sp = list(xs[1:4])
    pb, pe = sp._spatial_pads(a, in_sp, k, s, d)
    outs = [sp._out_size(in_sp[i], pb[i], pe[i], k[i], s[i], d[i], False) for i in range(3)]
    sp._check_windows(cx, in_sp, outs, [(k[i] - 1) * d[i] + 1 for i in range(3)], pb, pe)
    groups = int(a.get("group", 1))
    cout = w.shape[0]
    if groups < 1 or xs[4] != w.shape[1] * groups or cout % groups:
        raise Unsupported(f"weight {list(w.shape)} with group={groups} does not match "
                          f"{xs[4]} input channels: the model is invalid")
    wname = cx.b.const(cx.node.input[1], np.transpose(w, (0, 2, 3, 4, 1)))
    bias = np.zeros(cout, np.float32) if b is None else b.reshape(cout)
    bname = cx.b.const(cx.node.input[2] if b is not None else f"{cx.out()}__bias", bias)
    attrs = ir.Conv3DAttrs(tuple(s), tuple(d), tuple(pb + pe), groups)
    y = cx.b.add("Conv3D", [v.name, wname, bname], cx.out(), (xs[0], *outs, cout), attrs,
                 cx.name, cx.source)
    cx.set(y, NDHWC)
