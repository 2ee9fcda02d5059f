"""mq_lstm_tfl_s8 (TFLite Micro's integer LSTM step, c_runtime/src/mq_recurrent.c) == the numpy
reference ref.recurrent.lstm_tfl on random sizes, offsets, cell scales and clips (both rounding
modes), its argument checks, and TFLite's int16 sigmoid / tanh on every int16 input. A
test_kernel_* file, so its calls are replayed under ASan/UBSan and on the emulated M4
(test_sanitizers, test_dsp_case_tables). Model level: tests/test_tflite_lstm.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from microq.qir import TflLstmParams
from microq.ref import recurrent as ref
from microq.ref.arith import quantize_multiplier

MQ_OK, MQ_ERR_ARG = 0, 1

SCALARS = ("input_size", "hidden_size", "input_offset", "hidden_offset", "output_offset",
           "cell_shift", "cell_clip", "forget_multiplier", "forget_shift", "update_multiplier",
           "update_shift", "output_multiplier", "output_shift")
ARRAYS = (("input_weights", "int8_t", np.int8), ("recurrent_weights", "int8_t", np.int8),
          ("input_bias", "int32_t", np.int32),
          ("input_multiplier", "int32_t", np.int32), ("input_shift", "int32_t", np.int32),
          ("recurrent_multiplier", "int32_t", np.int32),
          ("recurrent_shift", "int32_t", np.int32))


def c_lstm_tfl(clib, p: TflLstmParams, x: np.ndarray, steps: int | None = None):
    ffi, lib = clib
    x = np.ascontiguousarray(x, np.int8)
    out = np.full((x.shape[0], p.hidden_size), 0x5A, np.int8)
    state = np.full(p.hidden_size, 0x1234, np.int16)  # dirty scratch: the kernel clears it
    keep = []
    cp = ffi.new("mq_lstm_tfl_params *", {k: getattr(p, k) for k in SCALARS})
    for name, ctype, dt in ARRAYS:
        arr = np.ascontiguousarray(getattr(p, name), dt)
        keep.append(arr)
        setattr(cp, name, ffi.from_buffer(f"{ctype}[]", arr))
    status = lib.mq_lstm_tfl_s8(cp, x.shape[0] if steps is None else steps,
                                ffi.from_buffer("int8_t[]", x), ffi.from_buffer("int8_t[]", out),
                                ffi.from_buffer("int16_t[]", state))
    return status, out


def random_params(seed: int, rounding: str) -> tuple[TflLstmParams, np.ndarray]:
    """Parameters as the lowering builds them from random scales (TFLite's formulas)."""
    rng = np.random.default_rng(seed)
    i, h, steps = (int(rng.integers(1, 14)), int(rng.integers(1, 20)), int(rng.integers(1, 9)))
    s_x, s_h = float(rng.uniform(0.005, 0.1)), float(rng.uniform(1.5, 2.5) / 255)
    cell_shift = int(rng.integers(8, 16))
    mult = lambda real: quantize_multiplier(real, rounding)  # noqa: E731
    xm, xs, hm, hs = [], [], [], []
    for _ in range(4):
        sw, sr = float(rng.uniform(0.002, 0.03)), float(rng.uniform(0.002, 0.03))
        (m1, e1), (m2, e2) = mult(s_x * sw / 2**-12), mult(s_h * sr / 2**-12)
        xm.append(m1)
        xs.append(e1)
        hm.append(m2)
        hs.append(e2)
    (fm, fs), (um, us), (om, os_) = (mult(2.0**-15), mult(2.0**-30 / 2.0**-cell_shift),
                                     mult(2.0**-30 / s_h))
    clip = int(rng.integers(1, 2**cell_shift * 4)) if rng.random() < 0.5 else 0
    p = TflLstmParams(
        cell="lstm_tfl", input_size=i, hidden_size=h, input_offset=int(rng.integers(-40, 40)),
        hidden_offset=int(rng.integers(-10, 10)), output_offset=int(rng.integers(-10, 10)),
        cell_shift=cell_shift, cell_clip=min(clip, 32767), forget_multiplier=fm,
        forget_shift=fs, update_multiplier=um, update_shift=us, output_multiplier=om,
        output_shift=os_,
        input_weights=rng.integers(-127, 128, (4 * h, i)).astype(np.int8),
        recurrent_weights=rng.integers(-127, 128, (4 * h, h)).astype(np.int8),
        input_bias=rng.integers(-20000, 20000, 4 * h).astype(np.int32),
        input_multiplier=np.array(xm, np.int32), input_shift=np.array(xs, np.int32),
        recurrent_multiplier=np.array(hm, np.int32), recurrent_shift=np.array(hs, np.int32))
    x = rng.integers(-128, 128, (steps, i)).astype(np.int8)
    return p, x


@pytest.mark.parametrize("rounding,fixture", [("double", "clib"), ("single", "clib_single")])
def test_lstm_tfl_kernel_equals_reference_on_random_params(request, rounding, fixture):
    clib = request.getfixturevalue(fixture)
    clipped = 0
    for seed in range(40):
        p, x = random_params(seed, rounding)
        status, got = c_lstm_tfl(clib, p, x)
        assert status == MQ_OK
        want = ref.lstm_tfl(p, x, rounding)
        assert np.array_equal(got, want), f"seed {seed}: C != reference"
        clipped += p.cell_clip > 0
    assert 5 < clipped < 35  # both with and without a cell clip


def test_lstm_tfl_kernel_refuses_bad_arguments(clib):
    p, x = random_params(1, "double")
    for bad in (dict(cell_shift=30), dict(cell_shift=-1), dict(cell_clip=-1),
                dict(hidden_size=0)):
        status, _ = c_lstm_tfl(clib, dataclasses.replace(p, **bad), x)
        assert status == MQ_ERR_ARG, bad
    assert c_lstm_tfl(clib, p, x, steps=0)[0] == MQ_ERR_ARG


@pytest.mark.parametrize("left_shift", [0, 1, 3, -1, -2, -5])
def test_tfl_int16_sigmoid_and_tanh_c_equal_reference_on_every_input(clib, left_shift):
    ffi, lib = clib
    x = np.arange(-32768, 32768, dtype=np.int16)
    for fn, want in ((lib.mq_tfl_sigmoid_s16, ref.tfl_sigmoid16),
                     (lib.mq_tfl_tanh_s16, ref.tfl_tanh16)):
        out = np.zeros_like(x)
        assert fn(ffi.from_buffer("int16_t[]", x), ffi.from_buffer("int16_t[]", out), x.size,
                  left_shift) == MQ_OK
        assert np.array_equal(out, want(x, left_shift).astype(np.int16))


def test_tfl_int16_sigmoid_and_tanh_follow_the_functions():
    """Q3.12 in, Q0.15 out: within 2.5e-4 (sigmoid) / 5e-4 (tanh) of the real functions."""
    x = np.arange(-32768, 32768)
    u = x / 4096.0
    assert np.abs(ref.tfl_sigmoid16(x) / 32768.0 - 1 / (1 + np.exp(-u))).max() < 2.5e-4
    assert np.abs(ref.tfl_tanh16(x) / 32768.0 - np.tanh(u)).max() < 5e-4
