"""int8 LSTM / GRU (mq_lstm_s8, mq_gru_s8; the GRU with linear_before_reset 1 and 0, "gru_rf"
here): C == numpy reference bit for bit (both rounding
modes, random sizes, weights, biases, zero points and cell shifts, saturating gates), bad
arguments, the interpolated int16 sigmoid/tanh tables against float, and the integer layer
against the float layer on dequantized values."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from cabi import Abi, out8

from microq.errors import MicroqError
from microq.qir import RecurrentParams
from microq.quant.rules_recurrent import recurrent_params
from microq.ref import recurrent as ref

MQ_OK, MQ_ERR_ARG = 0, 1
MODES = [("double", "clib"), ("single", "clib_single")]
CELLS = ["lstm", "gru", "gru_rf"]  # gru_rf: GRU linear_before_reset = 0 (reset_first)
ARRAYS = (("input_weights", "i8"), ("recurrent_weights", "i8"), ("input_bias", "i32"),
          ("recurrent_bias", "i32"), ("input_multiplier", "i32"), ("input_shift", "i32"),
          ("recurrent_multiplier", "i32"), ("recurrent_shift", "i32"), ("sigmoid_table", "i16"),
          ("tanh_table", "i16"))


@pytest.fixture(params=MODES, ids=[m for m, _ in MODES])
def mode(request):
    rounding, fixture = request.param
    return rounding, request.getfixturevalue(fixture)


def c_recurrent(clib, p: RecurrentParams, x: np.ndarray, steps: int | None = None):
    """mq_lstm_s8 / mq_gru_s8 on x [T, I]; returns (status, int8 output [T, H])."""
    abi = Abi(clib)
    out = out8((np.shape(x)[0], p.hidden_size))
    # dirty scratch: the kernel clears it; a reset_first GRU also keeps r * h there
    state = np.full(p.hidden_size * (2 if p.reset_first else 1), 0x1234, np.int16)
    cp = abi.struct(p)
    for name, kind in ARRAYS:
        setattr(cp, name, getattr(abi, kind)(getattr(p, name)))
    fn = abi.lib.mq_lstm_s8 if p.cell == "lstm" else abi.lib.mq_gru_s8
    status = fn(cp, np.shape(x)[0] if steps is None else steps, abi.i8(x), abi.i8(out),
                abi.i16(state))
    return status, out


def float_weights(rng, cell: str, i: int, h: int, scale: float):
    g = ref.GATES[cell[:4].rstrip("_")] * h
    return (rng.normal(0, scale, (g, i)), rng.normal(0, scale, (g, h)),
            rng.normal(0, 0.5, g), rng.normal(0, 0.5, g))


def make_case(seed: int, cell: str, rounding: str, *, i=None, h=None, steps=None,
              wscale=None, cell_max=None):
    rng = np.random.default_rng(seed)
    i = int(rng.integers(1, 12)) if i is None else i
    h = int(rng.integers(1, 20)) if h is None else h
    steps = int(rng.integers(1, 12)) if steps is None else steps
    wscale = float(rng.uniform(0.1, 1.5)) if wscale is None else wscale
    w, r, wb, rb = float_weights(rng, cell, i, h, wscale)
    s_x, zp_x = float(rng.uniform(0.01, 0.05)), int(rng.integers(-30, 30))
    s_h, zp_h = float(rng.uniform(1.8, 2.2) / 255), int(rng.integers(-10, 10))
    cmax = float(rng.uniform(0.3, 12.0)) if cell_max is None else cell_max
    p = recurrent_params(cell[:4].rstrip("_"), w, r, wb, rb, s_x, zp_x, s_h, zp_h, cmax,
                         rounding, reset_first=int(cell == "gru_rf"))
    x = rng.integers(-128, 128, (steps, i)).astype(np.int8)
    return p, x, (w, r, wb, rb, s_x, zp_x, s_h, zp_h)


@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_c_equals_reference_random(mode, cell):
    rounding, clib = mode
    for seed in range(40):
        p, x, _ = make_case(seed, cell, rounding)
        status, got = c_recurrent(clib, p, x)
        assert status == MQ_OK
        want = ref.recurrent(p, x, rounding)
        assert np.array_equal(got, want), (seed, np.argwhere(got != want)[:3])


@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_reverse_c_equals_reference_and_is_the_flipped_forward(mode, cell):
    """reverse = 1 (ONNX direction "reverse"): from the last step to the first, rows in step
    order: the forward layer on the time-flipped input, flipped back."""
    rounding, clib = mode
    for seed in range(12):
        p, x, _ = make_case(300 + seed, cell, rounding)
        rp = replace(p, reverse=1)
        status, got = c_recurrent(clib, rp, x)
        assert status == MQ_OK
        assert np.array_equal(got, ref.recurrent(rp, x, rounding)), seed
        assert np.array_equal(got, c_recurrent(clib, p, x[::-1])[1][::-1]), seed
        if x.shape[0] > 2:
            assert not np.array_equal(got, c_recurrent(clib, p, x)[1]), seed


@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_c_equals_reference_saturating_gates_and_cell(mode, cell):
    """Large weights drive the Q3.12 gate pre-activations and parts to their clamps, a tiny
    calibrated cell range gives cell_shift 15 (the cell saturates int16), a huge one 0."""
    rounding, clib = mode
    for seed, cmax in ((100, 1e-3), (101, 4e4), (102, 0.9)):
        p, x, _ = make_case(seed, cell, rounding, i=9, h=7, steps=15, wscale=20.0,
                            cell_max=cmax)
        if cell == "lstm":
            assert p.cell_shift == (15 if cmax < 1 else 0 if cmax > 3e4 else p.cell_shift)
        status, got = c_recurrent(clib, p, x)
        assert status == MQ_OK
        assert np.array_equal(got, ref.recurrent(p, x, rounding)), seed


def test_recurrent_cell_shift_below_gate_fraction(mode):
    """cell_shift < 12 takes the left-shift path into tanh's Q3.12 input."""
    rounding, clib = mode
    for cs in (0, 5, 11, 12, 13):
        p, x, _ = make_case(200 + cs, "lstm", rounding, i=5, h=6, steps=10, wscale=3.0)
        p = replace(p, cell_shift=cs)
        status, got = c_recurrent(clib, p, x)
        assert status == MQ_OK
        assert np.array_equal(got, ref.recurrent(p, x, rounding)), cs


def test_recurrent_bad_arguments(clib):
    p, x, _ = make_case(1, "lstm", "double", i=3, h=4, steps=5)
    assert c_recurrent(clib, p, x, steps=0)[0] == MQ_ERR_ARG
    assert c_recurrent(clib, replace(p, cell_shift=16), x)[0] == MQ_ERR_ARG
    assert c_recurrent(clib, replace(p, cell_shift=-1), x)[0] == MQ_ERR_ARG
    assert c_recurrent(clib, replace(p, hidden_size=0), x)[0] == MQ_ERR_ARG
    g, _, _ = make_case(1, "gru", "double", i=3, h=4, steps=5)
    assert c_recurrent(clib, replace(g, input_size=0), x)[0] == MQ_ERR_ARG


def test_lut_tables_match_float_sigmoid_and_tanh():
    x = np.arange(-32768, 32768, 7)
    u = x / 4096.0
    sig = ref.lut_apply(ref.lut_table("sigmoid"), x) / 32768.0
    tnh = ref.lut_apply(ref.lut_table("tanh"), x) / 32768.0
    assert np.abs(sig - 1 / (1 + np.exp(-u))).max() < 1.5e-4
    assert np.abs(tnh - np.tanh(u)).max() < 6e-4
    assert ref.lut_apply(ref.lut_table("tanh"), np.array([0]))[0] == 0


@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_integer_layer_tracks_float(cell):
    """The int8 layer on the dequantized input stays within a few output steps of the float
    layer (weights of a trained-net magnitude, the output range of h)."""
    rng = np.random.default_rng(5)
    i, h, steps = 8, 16, 20
    w, r, wb, rb = float_weights(rng, cell, i, h, 0.4)
    xf = rng.normal(0, 1, (steps, i))
    s_x, zp_x = 8.0 / 255, 0
    x = np.clip(np.round(xf / s_x), -128, 127).astype(np.int8)
    rf = int(cell == "gru_rf")
    kind = cell[:4].rstrip("_")
    yf, cf = ref.float_recurrent(kind, (x.astype(np.float64) * s_x)[None], w, r, wb, rb,
                                 with_cell=True, reset_first=rf)
    s_h, zp_h = 2.0 / 255, 0
    p = recurrent_params(kind, w, r, wb, rb, s_x, zp_x, s_h, zp_h, float(np.abs(cf).max()),
                         reset_first=rf)
    got = ref.recurrent(p, x).astype(np.float64) * s_h
    err = np.abs(got - yf[0])
    assert err.max() < 6 * s_h, err.max() / s_h
    assert err.mean() < 1.5 * s_h, err.mean() / s_h


def test_recurrent_params_refuses_wrong_gate_count():
    rng = np.random.default_rng(0)
    w, r, wb, rb = float_weights(rng, "gru", 3, 4, 0.5)
    with pytest.raises(MicroqError, match="rows"):
        recurrent_params("lstm", w, r, wb, rb, 0.02, 0, 0.008, 0)
