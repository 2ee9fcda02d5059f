"""ONNX frontend converter for ConvTranspose (1-D and 2-D): NHWC, OHWI weights."""

from __future__ import annotations

import numpy as np

from microq import ir
from microq.onnx_import.context import Ctx, Unsupported
from microq.onnx_import.ops_spatial import _finish_2d, _to_2d


def _text(a: dict, key: str, default: str) -> str:
    v = a.get(key, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def _pads(a: dict, in_sp, k, s, d, op) -> tuple[list[int], list[int]]:
    """(begin, end) pads per spatial axis, output_padding already subtracted from the end (ONNX
    ConvTranspose: explicit pads, or output_shape / auto_pad SAME_* giving the total)."""
    n = len(in_sp)
    auto = _text(a, "auto_pad", "NOTSET")
    full = [s[i] * (in_sp[i] - 1) + op[i] + (k[i] - 1) * d[i] + 1 for i in range(n)]
    if "output_shape" in a or auto in ("SAME_UPPER", "SAME_LOWER"):
        want = list(a["output_shape"])[-n:] if "output_shape" in a else [
            in_sp[i] * s[i] for i in range(n)]
        total = [full[i] - want[i] for i in range(n)]
        if min(total) < 0:
            raise Unsupported(f"ConvTranspose output_shape {want} larger than the full output "
                              f"{full}")
        if auto == "SAME_UPPER":
            begin = [t // 2 for t in total]
        else:
            begin = [t - t // 2 for t in total]
        end = [total[i] - begin[i] for i in range(n)]
    elif auto == "VALID" or "pads" not in a:
        begin, end = [0] * n, [0] * n
    else:
        pads = [int(v) for v in a["pads"]]
        begin, end = pads[:n], pads[n:]
    if min(begin + end) < 0:
        raise Unsupported(f"ConvTranspose with negative pads {begin + end}")
    return begin, [end[i] - op[i] for i in range(n)]


def conv_transpose(cx: Ctx) -> None:
    a = cx.attrs()
    w = cx.const(1)
    if w is None:
        raise Unsupported("ConvTranspose with a non-constant weight is not supported")
    nsp = w.ndim - 2
    if nsp not in (1, 2):
        raise Unsupported(f"ConvTranspose{nsp}D (only 1-D and 2-D)")
    b = cx.const(2)
    if cx.has_input(2) and b is None:
        raise Unsupported("ConvTranspose with a non-constant bias is not supported")
    groups = int(a.get("group", 1))
    x, xs, is_1d = _to_2d(cx, 0)
    cin = xs[3]
    if groups < 1 or w.shape[0] != cin or cin % groups:
        raise Unsupported(f"weight {list(w.shape)} with group={groups} does not match {cin} "
                          "input channels: the model is invalid")
    k = list(w.shape[2:])
    s = [int(v) for v in a.get("strides", [1] * nsp)]
    d = [int(v) for v in a.get("dilations", [1] * nsp)]
    op = [int(v) for v in a.get("output_padding", [0] * nsp)]
    in_sp = [xs[2]] if is_1d else [xs[1], xs[2]]
    pb, pe = _pads(a, in_sp, k, s, d, op)
    if is_1d:
        k, s, d, pb, pe, in_sp = [1] + k, [1] + s, [1] + d, [0] + pb, [0] + pe, [1] + in_sp
        w = w[:, :, None, :]
    out = [s[i] * (in_sp[i] - 1) + (k[i] - 1) * d[i] + 1 - pb[i] - pe[i] for i in range(2)]
    if min(out) < 1:
        raise Unsupported(f"ConvTranspose output size {out} is empty: the model is invalid")
    cin_g, cout_g = cin // groups, w.shape[1]
    cout = cout_g * groups
    # [Cin, Cout/g, KH, KW] -> OHWI [Cout, KH, KW, Cin/g]: oc = g*cout_g + o reads g*cin_g + c
    wg = w.reshape(groups, cin_g, cout_g, k[0], k[1]).transpose(0, 2, 3, 4, 1)
    wname = cx.b.const(cx.node.input[1], np.ascontiguousarray(wg.reshape(cout, k[0], k[1], cin_g)))
    bias = np.zeros(cout, np.float32) if b is None else b.reshape(cout)
    bname = cx.b.const(cx.node.input[2] if b is not None else f"{cx.out()}__bias", bias)
    attrs = ir.ConvAttrs(tuple(s), tuple(d), (pb[0], pb[1], pe[0], pe[1]), groups)
    _finish_2d(cx, "ConvTranspose2D", [x, wname, bname], (xs[0], out[0], out[1], cout), attrs,
               is_1d)
