"""Quantizer rule and scheme math of LSTM / GRU (ir LSTM, GRU -> qir lstm, gru).

Weights: int8, symmetric per gate row. Gate pre-activations: Q3.12 int16 (TFLite Micro's
fixed gate scale 2^-12; beyond +-8 sigmoid and tanh are within 3.4e-4 of their limits). The
LSTM cell state: int16 at the power-of-two scale 2^-cell_shift that holds the calibrated
|c| max (ir LSTM's second output, recorded by the float run). The output h (also the recurrent
input): the calibrated range of the node's output."""

from __future__ import annotations

import math

import numpy as np

from .. import ir, qir
from ..errors import MicroqError
from ..qir import RecurrentParams
from ..ref.arith import quantize_multiplier, round_half_away
from ..ref.recurrent import GATE_FRAC, GATES, lut_table

INT32_MAX = 2**31 - 1


def _mults(real: np.ndarray, rounding: str) -> tuple[np.ndarray, np.ndarray]:
    ms = [quantize_multiplier(float(v), rounding) for v in real]
    return (np.array([m for m, _ in ms], np.int32), np.array([s for _, s in ms], np.int32))


def _quant_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from .scheme import quantize_weights_per_channel

    return quantize_weights_per_channel(np.asarray(w, np.float32))


def _bias(b: np.ndarray, scale: np.ndarray, what: str) -> np.ndarray:
    q = round_half_away(np.asarray(b, np.float64) / scale)
    if np.any(np.abs(q) > 2**30):
        raise MicroqError(f"{what}: a bias is beyond 2^30 accumulator steps (input or weight "
                          "scale too small for it); the layer cannot be quantized")
    return q.astype(np.int32)


def check_gate_accumulator(what: str, wq: np.ndarray, bias: np.ndarray, offset: int,
                           shift: np.ndarray) -> None:
    """Refuse gate rows whose int32 accumulator bias + sum (x + offset) w (x int8), shifted
    left by the rescale's left shift, can overflow (also used by the TFLite LSTM lowering)."""
    reach = max(abs(-128 + offset), abs(127 + offset))
    bound = np.abs(wq.astype(np.int64)).sum(axis=1) * reach + np.abs(bias.astype(np.int64))
    left = np.maximum(shift.astype(np.int64), 0)
    if np.any(bound << left > INT32_MAX):
        row = int(np.flatnonzero(bound << left > INT32_MAX)[0])
        raise MicroqError(f"{what}: the int32 accumulator of gate row {row} (bound {bound[row]}"
                          f", left shift {left[row]}) can overflow; the layer is too wide")


def recurrent_params(cell: str, w, r, wb, rb, s_x: float, zp_x: int, s_h: float, zp_h: int,
                     cell_max: float = 0.0, rounding: str = "double",
                     what: str = "recurrent layer", reset_first: int = 0,
                     reverse: int = 0) -> RecurrentParams:
    """RecurrentParams of one LSTM/GRU layer: float W [G*H, I], R [G*H, H], Wb, Rb [G*H];
    input (s_x, zp_x), output = hidden (s_h, zp_h); cell_max the LSTM's calibrated |c|."""
    hidden = int(np.asarray(r).shape[1])
    if np.asarray(w).shape[0] != GATES[cell] * hidden:
        raise MicroqError(f"{what}: weights of {np.asarray(w).shape[0]} rows, expected "
                          f"{GATES[cell]} * {hidden}")
    wq, sw = _quant_rows(w)
    rq, sr = _quant_rows(r)
    bx = _bias(wb, s_x * sw, what)
    # the recurrent side's input scale per row: h (s_h), or r * h (2^-15) on GRU n rows
    s_in = np.full(len(sr), s_h)
    if reset_first and cell == "gru":
        s_in[2 * hidden:] = 2.0**-15
    bh = _bias(rb, s_in * sr, what)
    xm, xs = _mults(s_x * sw * 2.0**GATE_FRAC, rounding)
    hm, hs = _mults(s_in * sr * 2.0**GATE_FRAC, rounding)
    check_gate_accumulator(what + " (input side)", wq, bx, -zp_x, xs)
    if reset_first and cell == "gru":
        n = slice(2 * hidden, 3 * hidden)
        check_gate_accumulator(what + " (recurrent side)", rq[:2 * hidden], bh[:2 * hidden],
                               -zp_h, hs[:2 * hidden])
        bound = np.abs(rq[n].astype(np.int64)).sum(axis=1) * 32767 + np.abs(bh[n].astype(np.int64))
        if np.any(bound << np.maximum(hs[n].astype(np.int64), 0) > INT32_MAX):
            raise MicroqError(f"{what}: the int32 accumulator of Rn (r * h) can overflow; the "
                              "layer is too wide")
    else:
        check_gate_accumulator(what + " (recurrent side)", rq, bh, -zp_h, hs)
    if cell == "lstm":
        cs = 15 if cell_max <= 0 else int(min(15, max(0, math.floor(math.log2(32767.0 /
                                                                               cell_max)))))
        om, os_ = quantize_multiplier(2.0**-30 / s_h, rounding)
    else:
        cs = 0
        om, os_ = quantize_multiplier(2.0**-15 / s_h, rounding)
    return RecurrentParams(
        cell=cell, input_size=int(wq.shape[1]), hidden_size=hidden, input_offset=-int(zp_x),
        hidden_offset=-int(zp_h), output_offset=int(zp_h), cell_shift=cs,
        output_multiplier=int(om), output_shift=int(os_), input_weights=wq,
        recurrent_weights=rq, input_bias=bx, recurrent_bias=bh, input_multiplier=xm,
        input_shift=xs, recurrent_multiplier=hm, recurrent_shift=hs,
        sigmoid_table=lut_table("sigmoid"), tanh_table=lut_table("tanh"),
        reset_first=int(bool(reset_first) and cell == "gru"), reverse=int(bool(reverse)))


def recurrent(qz, node: ir.Node) -> None:
    """ir LSTM / GRU -> qir lstm / gru; `qz` is the running quant.quantize._Quantizer."""
    cell = node.op.lower()
    x, w, r, wb, rb = node.inputs
    out = node.outputs[0]
    qi = qz.q(x)
    qz.add_tensor(out, qz.calibrated(out))
    qo = qz.q(out)
    cell_max = 0.0
    if cell == "lstm":
        rng = qz.ranges.get(node.outputs[1]) if len(node.outputs) > 1 else None
        if rng is None:  # a QDQ model: no ONNX tensor carries the cell state's range
            raise MicroqError(f"node '{node.name}': LSTM: no calibrated range for its cell "
                              "state (a QDQ model has no tensor that carries it); compile the "
                              "float model with --calib instead")
        cell_max = max(abs(float(rng.lo)), abs(float(rng.hi)))
    c = qz.g.tensors
    p = recurrent_params(cell, c[w].const, c[r].const, c[wb].const, c[rb].const, qi.scale,
                         qi.zero_point, qo.scale, qo.zero_point, cell_max, qz.rounding,
                         what=f"node '{node.name}': {node.op}",
                         reset_first=getattr(node.attrs, "reset_first", 0),
                         reverse=getattr(node.attrs, "reverse", 0))
    scratch = qz.g.tensors[out].name + "__state"
    words = 2 if p.reset_first else 1  # h16, and r * h for a reset_first GRU
    qz.tensors[scratch] = qir.QTensor(scratch, (2 * words * p.hidden_size,),
                                      qir.QParams(1.0, 0))
    qz.emit(node, cell, [x], [out, scratch], p)
