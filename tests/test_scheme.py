"""Scheme math (quant/scheme.py): params reproduce the CMSIS-NN cases' params, and the integer
kernels driven by them stay within stated errors of float math."""

from __future__ import annotations

import math

import numpy as np
import pytest
from cmsis_cases import load_case

from microq.errors import MicroqError
from microq.quant import scheme
from microq.ref import elementwise, softmax


F32_1_OVER_255 = float(np.float32(1 / 255))  # the generators' scales are TFLite float32s


def deq(q, s: float, zp: int) -> np.ndarray:
    return (np.asarray(q, np.float64) - zp) * s


def random_q(rng: np.random.Generator):
    return 10 ** rng.uniform(-3, 1), int(rng.integers(-128, 128))


# --- the CMSIS-NN cases' params come out of the scheme functions --------------------------


def test_add_params_match_cmsis_case():
    _, cfg = load_case("add", "add")
    s = 0.05  # both inputs share a scale; the output's is twice as large (2^-19 after 2^20)
    p = scheme.add_params(s, -128, s, -128, 2 * s, -128)
    got = (p.input1_offset, p.input1_multiplier, p.input1_shift, p.left_shift,
           p.output_offset, p.output_multiplier, p.output_shift)  # fmt: skip
    want = (cfg["INPUT1_OFFSET"], cfg["INPUT1_MULT"], cfg["INPUT1_SHIFT"], cfg["LEFT_SHIFT"],
            cfg["OUTPUT_OFFSET"], cfg["OUTPUT_MULT"], cfg["OUTPUT_SHIFT"])  # fmt: skip
    assert got == want


def test_mul_params_match_cmsis_case():
    _, cfg = load_case("mul", "mul")
    # s1 * s2 / s_out = 1/255 rounded to float32, as TFLite stores scales
    p = scheme.mul_params(1 / 16, -128, 1 / 16, -128, 1 / 256 / F32_1_OVER_255, -128)
    got = (p.input1_offset, p.input2_offset, p.output_offset, p.output_multiplier, p.output_shift)
    want = (cfg["INPUT1_OFFSET"], cfg["INPUT2_OFFSET"], cfg["OUTPUT_OFFSET"], cfg["OUTPUT_MULT"],
            cfg["OUTPUT_SHIFT"])  # fmt: skip
    assert got == want


def test_softmax_params_match_cmsis_case():
    _, cfg = load_case("softmax", "softmax")
    p = scheme.softmax_params(F32_1_OVER_255)
    assert (p.input_multiplier, p.input_left_shift, p.diff_min) == (
        cfg["INPUT_MULT"], cfg["INPUT_LEFT_SHIFT"], cfg["DIFF_MIN"])  # fmt: skip


# --- integer results within a stated error of float math ----------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_add_sub_within_one_output_step(seed):
    """The only real rounding is the final one (0.5 step); 20 bits of headroom keep the rest
    far below, so 1 output step is a safe bound (inputs are exact int8 values here)."""
    rng = np.random.default_rng(seed)
    (s1, zp1), (s2, zp2) = random_q(rng), random_q(rng)
    s_out = max(s1, s2) * 10 ** rng.uniform(-0.5, 1)
    zp_out = int(rng.integers(-128, 128))
    p = scheme.add_params(s1, zp1, s2, zp2, s_out, zp_out)
    a = rng.integers(-128, 128, 2000)
    b = rng.integers(-128, 128, 2000)
    lo, hi = deq(-128, s_out, zp_out), deq(127, s_out, zp_out)
    for op, fn in (("add", np.add), ("sub", np.subtract)):
        want = np.clip(fn(deq(a, s1, zp1), deq(b, s2, zp2)), lo, hi)
        got = deq(getattr(elementwise, op)(p, a, b), s_out, zp_out)
        assert np.abs(got - want).max() <= s_out * 1.0, op


@pytest.mark.parametrize("seed", range(6))
def test_mul_within_one_output_step(seed):
    rng = np.random.default_rng(100 + seed)
    (s1, zp1), (s2, zp2) = random_q(rng), random_q(rng)
    s_out = s1 * s2 * 10 ** rng.uniform(0, 3)
    zp_out = int(rng.integers(-128, 128))
    p = scheme.mul_params(s1, zp1, s2, zp2, s_out, zp_out)
    a = rng.integers(-128, 128, 2000)
    b = rng.integers(-128, 128, 2000)
    want = np.clip(deq(a, s1, zp1) * deq(b, s2, zp2), deq(-128, s_out, zp_out),
                   deq(127, s_out, zp_out))  # fmt: skip
    got = deq(elementwise.mul(p, a, b), s_out, zp_out)
    assert np.abs(got - want).max() <= s_out * 1.0


@pytest.mark.parametrize("seed", range(6))
def test_requantize_within_one_output_step(seed):
    rng = np.random.default_rng(200 + seed)
    (s_in, zp_in), (s_out, zp_out) = random_q(rng), random_q(rng)
    p = scheme.requantize_params(s_in, zp_in, s_out, zp_out)
    x = np.arange(-128, 128)
    want = np.clip(deq(x, s_in, zp_in), deq(-128, s_out, zp_out), deq(127, s_out, zp_out))
    got = deq(elementwise.requantize(p, x), s_out, zp_out)
    assert np.abs(got - want).max() <= s_out * 1.0


@pytest.mark.parametrize("seed", range(8))
def test_softmax_within_two_steps_of_float(seed):
    rng = np.random.default_rng(300 + seed)
    s_in = 10 ** rng.uniform(-3, 0)
    beta = float(rng.choice([1.0, 10 ** rng.uniform(-0.5, 0.5)]))
    zp = int(rng.integers(-128, 128))
    p = scheme.softmax_params(s_in, beta)
    x = rng.integers(-128, 128, (5, int(rng.choice([2, 10, 64, 300]))))
    logits = beta * deq(x, s_in, zp)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    want = e / e.sum(axis=-1, keepdims=True)
    got = deq(softmax.softmax(p, x), 1 / 256, -128)
    assert np.abs(got - want).max() <= 2 / 256


@pytest.mark.parametrize("fn_name", ["tanh", "sigmoid", "exp", "square"])
def test_lut_table_is_the_rounded_function(fn_name):
    fns = {"tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "exp": np.exp,
           "square": np.square}  # fmt: skip
    fn = fns[fn_name]
    s_in, zp_in, s_out, zp_out = 0.05, 3, 1 / 100, -20
    table = scheme.lut_table(fn, s_in, zp_in, s_out, zp_out)
    assert table.dtype == np.int8 and table.shape == (256,)
    x = np.arange(-128, 128)
    want = np.clip(fn(deq(x, s_in, zp_in)), deq(-128, s_out, zp_out), deq(127, s_out, zp_out))
    got = deq(table[x + 128], s_out, zp_out)
    assert np.abs(got - want).max() <= s_out * 0.5 + 1e-12


def test_lut_table_rounds_half_away_from_zero():
    table = scheme.lut_table(lambda v: v, 1.0, 0, 2.0, 0)  # y / s_out = x / 2
    assert table[3 + 128] == 2 and table[-3 + 128] == -2  # 1.5 -> 2, -1.5 -> -2
    assert table[5 + 128] == 3 and table[-5 + 128] == -3


# --- activation ranges -------------------------------------------------------------------

ACT_CASES = {
    "none": (0.1, -20, -math.inf, math.inf, (-128, 127)),
    "relu": (0.1, -20, 0.0, math.inf, (-20, 127)),
    "relu6": (0.1, -20, 0.0, 6.0, (-20, 40)),
    "relu6_full_range": (6 / 255, -128, 0.0, 6.0, (-128, 127)),
    "relu6_clamped_high": (0.01, 0, 0.0, 6.0, (0, 127)),
    "relu_zp_below_range": (0.1, -128, 0.0, math.inf, (-128, 127)),
    "half_away_rounding": (1.0, 0, -2.5, 2.5, (-3, 3)),
}


@pytest.mark.parametrize("name", list(ACT_CASES))
def test_act_range(name):
    s, zp, lo, hi, want = ACT_CASES[name]
    assert scheme.act_range(s, zp, lo, hi) == want


# --- invalid inputs are user errors ------------------------------------------------------


def test_bad_scales_raise():
    with pytest.raises(MicroqError):
        scheme.add_params(0.0, 0, 0.1, 0, 0.1, 0)
    with pytest.raises(MicroqError):
        scheme.mul_params(1.0, 0, 1.0, 0, 1e-6, 0)  # multiplier 1e6: beyond mq_mul_s8
    with pytest.raises(MicroqError):
        scheme.requantize_params(1.0, 0, 1e-8, 0)
    with pytest.raises(MicroqError):
        scheme.softmax_params(1e-9)
    with pytest.raises(MicroqError):
        scheme.lut_table(lambda v: np.where(v < 0, np.nan, v), 0.1, 0, 0.1, 0)
