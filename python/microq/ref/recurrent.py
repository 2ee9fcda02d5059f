"""LSTM and GRU (ONNX semantics, forward direction, batch 1 per call): the float definition
(float64 numpy) and the integer reference of c_runtime/src/mq_recurrent.c, bit for bit.

Gate rows follow ONNX: LSTM i, o, f, c (each `hidden` rows); GRU z, r, h with
linear_before_reset = 1 (what torch exports): n = tanh(Wn x + Wbn + r * (Rn h + Rbn)), or
reset_first (linear_before_reset = 0, the ONNX default, Keras reset_after=False):
n = tanh(Wn x + Wbn + Rn (r * h) + Rbn).

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
  GRU reset_first: rh[k] = RDBPOT(r[k] * h16[k], 15) (Q0.15) for every k first; part_h[n] =
        MBQM(bias_h[n] + sum_k rh[k] Rn[k], hm[n], hs[n]) (rh symmetric: no offset; hm, hs
        and bias_h[n] at scale 2^-15 * r_scale); pre_n = sat16(clamp(part_x[n]) +
        clamp(part_h[n])); then h16 as above
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

def float_recurrent(kind: str, x: np.ndarray, w, r, wb, rb, with_cell: bool = False,
                    reset_first: int = 0, reverse: int = 0):
    """x [N, T, I] -> Y [N, T, H] (and the LSTM cell states [N, T, H] when with_cell);
    reverse: over the steps from last to first (outputs stay in step order)."""
    if reverse:
        out = float_recurrent(kind, x[:, ::-1], w, r, wb, rb, with_cell, reset_first)
        return tuple(o[:, ::-1].copy() for o in out) if with_cell else out[:, ::-1].copy()
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
            if reset_first:
                nn = np.tanh(gx[:, 2 * hsz:] + (rr * h) @ r[2 * hsz:].T + rb[2 * hsz:])
            else:
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
    """int8 x [T, I] -> int8 y [T, H] for qir.RecurrentParams p (p.cell 'lstm' or 'gru');
    p.reverse: from the last step to the first, y still in step order."""
    if getattr(p, "reverse", 0):
        from dataclasses import replace

        return recurrent(replace(p, reverse=0), np.asarray(x)[::-1], rounding)[::-1].copy()
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
            if getattr(p, "reset_first", 0):
                rh = rdbpot(r * state, 15)
                rows = np.arange(2 * hsz, 3 * hsz)
                acc = p.recurrent_bias[rows].astype(np.int64) + (
                    p.recurrent_weights[rows].astype(np.int64) @ rh)
                pn = mbqm(acc, p.recurrent_multiplier[rows], p.recurrent_shift[rows], rounding)
                pre_n = clamp(clamp(px[2 * hsz:], -lim, lim) + clamp(pn, -lim, lim),
                              -32768, 32767)
            else:
                hn = clamp(ph[2 * hsz:], -32768, 32767)
                pre_n = clamp(clamp(px[2 * hsz:], -lim, lim) + rdbpot(r * hn, 15),
                              -32768, 32767)
            nn = lut_apply(tnh, pre_n)
            state = rdbpot((32768 - z) * nn + z * state, 15)
            out = mbqm(state, p.output_multiplier, p.output_shift, rounding)
        y[t] = clamp(out + p.output_offset, -128, 127).astype(np.int8)
    return y


# ---- TFLite UNIDIRECTIONAL_SEQUENCE_LSTM (int8x8_16), as TFLite Micro evaluates it ----------
#
# TFLite Micro's integer LSTM (kernels/lstm_eval.h, LstmStep with int8 activations, int8
# weights, int16 cell, int32 biases), for one batch row and zero initial states:
#   gate[g]  = sat16(sat16(FC_x) + sat16(FC_h))           FC_x = MBQM(bias + W (x + input_offset))
#              (FC_h has no bias; at t = 0 h is the zero point exactly, so FC_h = 0)
#   i, f, o  = sigmoid16(gate) and g = tanh16(gate, Q3.12) (Q0.15 outputs)
#   c        = sat16(sat16(MBQM(f * c, fm, fs)) + sat16(MBQM(i * g, im, is))), clipped to
#              +-cell_clip when cell_clip > 0 (c at scale 2^-cell_shift)
#   h = y    = clamp8(output_offset + MBQM(tanh16(c, 2^-cell_shift) * o, om, os))
# sigmoid16 / tanh16 are TFLite's int16 Logistic / Tanh: the input times 3 (tanh's scaled by
# its power-of-two scale), |.| read from the 256-entry Q0.16 table of sigmoid(k / 24) with
# linear interpolation, the sign restored with TFLite's rounding.

# TFLite's table of sigmoid(k / 24) in Q0.16 (k = 0..255). Its entries are not all
# round(65536 sigmoid(k / 24)) (some are one above), so the values are stored as published.
TFL_SIGMOID_TABLE = np.array([
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149, 40794,
    41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369, 47911, 48443,
    48964, 49475, 49975, 50464, 50942, 51409, 51865, 52311, 52745, 53169, 53581, 53983, 54374,
    54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433, 57724, 58007, 58280, 58544,
    58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110, 61279,
    61441, 61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886, 62990,
    63090, 63186, 63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835, 63903, 63968, 64030,
    64090, 64148, 64204, 64257, 64308, 64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652,
    64687, 64721, 64754, 64786, 64816, 64845, 64873, 64900, 64926, 64950, 64974, 64997, 65019,
    65039, 65060, 65079, 65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234,
    65246, 65258, 65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360,
    65367, 65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433,
    65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474, 65476,
    65479, 65481, 65483, 65485, 65488, 65489, 65491, 65493, 65495, 65497, 65498, 65500, 65501,
    65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513, 65514, 65515, 65516,
    65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524,
    65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529, 65529,
    65529, 65530, 65530, 65530, 65530, 65531, 65531, 65531, 65531, 65531, 65532, 65532, 65532,
    65532, 65532, 65532, 65533, 65533, 65533, 65533, 65533, 65533, 65533, 65533, 65534, 65534,
    65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65535], dtype=np.int64)


def _tfl_scaled(x, left_shift: int) -> np.ndarray:
    """TFLite's int16 activation input: x * (3 << s) for s >= 0, else (3x + 2^(-s-1)) >> -s."""
    x = np.asarray(x, np.int64)
    if left_shift >= 0:
        return x * (3 << left_shift)
    s = -left_shift
    return (x * 3 + (1 << (s - 1))) >> s


def tfl_sigmoid16(x, left_shift: int = 0) -> np.ndarray:
    """TFLite int16 Logistic of Q3.12 x (left_shift 0) -> Q0.15."""
    v = _tfl_scaled(x, left_shift)
    a = np.abs(v)
    uh = np.minimum(a >> 9, 254)
    ua, ub = TFL_SIGMOID_TABLE[uh], TFL_SIGMOID_TABLE[uh + 1]
    res = np.where(a >> 9 >= 255, 0x7FFF << 10, (ua << 9) + (a & 0x1FF) * (ub - ua))
    res = np.where(v >= 0, res + (1 << 9), (1 << 25) - res + (1 << 9) - 1)
    return res >> 10


def tfl_tanh16(x, left_shift: int = 0) -> np.ndarray:
    """TFLite int16 Tanh -> Q0.15; left_shift = 12 - p for an input at scale 2^-p."""
    v = _tfl_scaled(x, left_shift)
    a = np.abs(v)
    uh = np.minimum(a >> 8, 254)
    ua, ub = TFL_SIGMOID_TABLE[uh], TFL_SIGMOID_TABLE[uh + 1]
    res = np.where(a >> 8 >= 255, 0xFFFF << 8, (ua << 8) + (a & 0xFF) * (ub - ua))
    res = np.where(v >= 0, res - (1 << 23) + (1 << 7), -res + (1 << 23) + (1 << 7) - 1)
    return res >> 8


def lstm_tfl(p, x: np.ndarray, rounding: str = "double") -> np.ndarray:
    """int8 x [T, I] -> int8 y [T, H] for qir.TflLstmParams p (gate rows i, o, f, c)."""
    x = np.asarray(x, np.int8)
    steps, hsz = x.shape[0], p.hidden_size
    y = np.zeros((steps, hsz), np.int8)
    cell = np.zeros(hsz, np.int64)
    s16 = (-32768, 32767)
    per_row = [np.repeat(np.asarray(v, np.int64), hsz) for v in (
        p.input_multiplier, p.input_shift, p.recurrent_multiplier, p.recurrent_shift)]
    for t in range(steps):
        acc_x = p.input_bias.astype(np.int64) + p.input_weights.astype(np.int64) @ (
            x[t].astype(np.int64) + p.input_offset)
        px = mbqm(acc_x, per_row[0], per_row[1], rounding)
        ph = np.zeros_like(px)  # t = 0: h is the zero point, the recurrent matmul is 0
        if t > 0:
            acc_h = p.recurrent_weights.astype(np.int64) @ (y[t - 1].astype(np.int64) +
                                                             p.hidden_offset)
            ph = mbqm(acc_h, per_row[2], per_row[3], rounding)
        gate = clamp(clamp(px, *s16) + clamp(ph, *s16), *s16)
        i = tfl_sigmoid16(gate[:hsz])
        o = tfl_sigmoid16(gate[hsz:2 * hsz])
        f = tfl_sigmoid16(gate[2 * hsz:3 * hsz])
        g = tfl_tanh16(gate[3 * hsz:])
        fc = clamp(mbqm(f * cell, p.forget_multiplier, p.forget_shift, rounding), *s16)
        ig = clamp(mbqm(i * g, p.update_multiplier, p.update_shift, rounding), *s16)
        cell = clamp(fc + ig, *s16)
        if p.cell_clip > 0:
            cell = clamp(cell, -p.cell_clip, p.cell_clip)
        th = tfl_tanh16(cell, GATE_FRAC - p.cell_shift)
        out = mbqm(th * o, p.output_multiplier, p.output_shift, rounding) + p.output_offset
        y[t] = clamp(out, -128, 127).astype(np.int8)
    return y
