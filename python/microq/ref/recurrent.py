"""LSTM and GRU (ONNX semantics, forward direction, batch 1 per call): the float definition
(float64 numpy) and the integer reference of c_runtime/src/mq_recurrent.c, bit for bit.

Gate rows follow ONNX: LSTM i, o, f, c (each `hidden` rows); GRU z, r, h with
linear_before_reset = 1 (what torch exports): n = tanh(Wn x + Wbn + r * (Rn h + Rbn)).

Integer scheme (as TFLite Micro's int8 LSTM: int8 weights and activations, int16 gates and
cell state, int16 sigmoid/tanh):
  part_x[g] = clamp(MBQM(bias_x[g] + sum_k (x[k] + input_offset) W[g, k], xm[g], xs[g]),
                    -2^16, 2^16)                         gate pre-activation in Q3.12 (int32)
  part_h[g] = likewise with h[t-1] (int8, the previous output row) and R, bias_h, hm, hs;
              at t = 0 the sum is empty (h = 0 is the output zero point exactly)
  pre[g]    = sat16(part_x[g] + part_h[g])
  sigmoid / tanh: Q3.12 int16 -> Q0.15 by a 513-entry table over [-8, 8) with linear
              interpolation between entries (LUT below, computed offline here)
  LSTM: c = sat16(RDBPOT(f * c, 15) + RDBPOT(i * g, 30 - cell_shift))   (c in Q cell_shift)
        y = clamp(output_offset + MBQM(o * tanh(Q3.12 of c), om, os))  (o * tanh in Q30)
  GRU:  hn = clamp(part_h[n], -2^15, 2^15 - 1); pre_n = sat16(part_x[n] + RDBPOT(r * hn, 15))
        h16 = RDBPOT((2^15 - z) * tanh(pre_n) + z * h16, 15)              (h16 in Q0.15)
        y = clamp(output_offset + MBQM(h16, om, os))
"""

from __future__ import annotations

import numpy as np

from .arith import clamp, mbqm, rdbpot, round_half_away

GATES = {"lstm": 4, "gru": 3}
LUT_SIZE = 513
GATE_FRAC = 12  # gate pre-activations in Q3.12
PART_LIMIT = 1 << 16


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lut_table(kind: str) -> np.ndarray:
    """int16 [513]: f(-8 + k / 32) in Q0.15 for f sigmoid or tanh, k = 0..512."""
    u = -8.0 + np.arange(LUT_SIZE, dtype=np.float64) / 32.0
    f = _sigmoid(u) if kind == "sigmoid" else np.tanh(u)
    return np.clip(round_half_away(f * 32768.0), -32767, 32767).astype(np.int16)


def lut_apply(table: np.ndarray, x) -> np.ndarray:
    """The table at Q3.12 int16 x, interpolated: t[i] + ((t[i+1] - t[i]) * f + 64) >> 7."""
    u = np.asarray(x, np.int64) + 32768
    i, f = u >> 7, u & 127
    t = table.astype(np.int64)
    return t[i] + (((t[i + 1] - t[i]) * f + 64) >> 7)


# ---- float ---------------------------------------------------------------------------------

def float_recurrent(kind: str, x: np.ndarray, w, r, wb, rb, with_cell: bool = False):
    """x [N, T, I] -> Y [N, T, H] (and the LSTM cell states [N, T, H] when with_cell)."""
    x = x.astype(np.float64)
    w, r, wb, rb = (np.asarray(a, np.float64) for a in (w, r, wb, rb))
    n, steps, _ = x.shape
    hsz = r.shape[1]
    h = np.zeros((n, hsz))
    c = np.zeros((n, hsz))
    ys, cs = [], []
    for t in range(steps):
        gx = x[:, t] @ w.T + wb
        gh = h @ r.T + rb
        if kind == "lstm":
            g = gx + gh
            i, o, f, cc = (g[:, k * hsz:(k + 1) * hsz] for k in range(4))
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(cc)
            h = _sigmoid(o) * np.tanh(c)
            cs.append(c)
        else:
            z = _sigmoid(gx[:, :hsz] + gh[:, :hsz])
            rr = _sigmoid(gx[:, hsz:2 * hsz] + gh[:, hsz:2 * hsz])
            nn = np.tanh(gx[:, 2 * hsz:] + rr * gh[:, 2 * hsz:])
            h = (1.0 - z) * nn + z * h
            cs.append(h)
        ys.append(h)
    y = np.stack(ys, axis=1).astype(np.float32)
    if with_cell:
        return y, np.stack(cs, axis=1).astype(np.float32)
    return y


# ---- integer -------------------------------------------------------------------------------

def _parts(p, rows: np.ndarray, xt: np.ndarray, hprev: np.ndarray | None, rounding: str):
    acc_x = p.input_bias[rows].astype(np.int64) + (
        p.input_weights[rows].astype(np.int64) @ (xt.astype(np.int64) + p.input_offset))
    acc_h = p.recurrent_bias[rows].astype(np.int64)
    if hprev is not None:
        acc_h = acc_h + p.recurrent_weights[rows].astype(np.int64) @ (
            hprev.astype(np.int64) + p.hidden_offset)
    px = mbqm(acc_x, p.input_multiplier[rows], p.input_shift[rows], rounding)
    ph = mbqm(acc_h, p.recurrent_multiplier[rows], p.recurrent_shift[rows], rounding)
    return px, ph


def recurrent(p, x: np.ndarray, rounding: str = "double") -> np.ndarray:
    """int8 x [T, I] -> int8 y [T, H] for qir.RecurrentParams p (p.cell 'lstm' or 'gru')."""
    x = np.asarray(x, np.int8)
    steps = x.shape[0]
    hsz = p.hidden_size
    sig, tnh = p.sigmoid_table, p.tanh_table
    y = np.zeros((steps, hsz), np.int8)
    state = np.zeros(hsz, np.int64)
    lim = PART_LIMIT
    for t in range(steps):
        hprev = y[t - 1] if t > 0 else None
        if p.cell == "lstm":
            px, ph = _parts(p, np.arange(4 * hsz), x[t], hprev, rounding)
            pre = clamp(clamp(px, -lim, lim) + clamp(ph, -lim, lim), -32768, 32767)
            i = lut_apply(sig, pre[:hsz])
            o = lut_apply(sig, pre[hsz:2 * hsz])
            f = lut_apply(sig, pre[2 * hsz:3 * hsz])
            g = lut_apply(tnh, pre[3 * hsz:])
            cs = p.cell_shift
            state = clamp(rdbpot(f * state, 15) + rdbpot(i * g, 30 - cs), -32768, 32767)
            if cs >= GATE_FRAC:
                tin = rdbpot(state, cs - GATE_FRAC)
            else:
                tin = clamp(state * (1 << (GATE_FRAC - cs)), -32768, 32767)
            prod = o * lut_apply(tnh, tin)
            out = mbqm(prod, p.output_multiplier, p.output_shift, rounding)
        else:
            px, ph = _parts(p, np.arange(3 * hsz), x[t], hprev, rounding)
            pre = clamp(clamp(px[:2 * hsz], -lim, lim) + clamp(ph[:2 * hsz], -lim, lim),
                        -32768, 32767)
            z = lut_apply(sig, pre[:hsz])
            r = lut_apply(sig, pre[hsz:])
            hn = clamp(ph[2 * hsz:], -32768, 32767)
            pre_n = clamp(clamp(px[2 * hsz:], -lim, lim) + rdbpot(r * hn, 15), -32768, 32767)
            nn = lut_apply(tnh, pre_n)
            state = rdbpot((32768 - z) * nn + z * state, 15)
            out = mbqm(state, p.output_multiplier, p.output_shift, rounding)
        y[t] = clamp(out + p.output_offset, -128, 127).astype(np.int8)
    return y
