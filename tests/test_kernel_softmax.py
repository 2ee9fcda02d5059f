"""int8 softmax: C == numpy reference (both rounding modes), both == the CMSIS-NN golden case,
and the gemmlowp fixed-point helpers of the reference against float math."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from cabi import Abi, out8
from cmsis_cases import assert_exact, load_case

from microq.qir import SoftmaxParams
from microq.quant import scheme
from microq.ref import softmax as ref

MODES = [("double", "clib"), ("single", "clib_single")]


@pytest.fixture(params=MODES, ids=[m for m, _ in MODES])
def mode(request):
    rounding, fixture = request.param
    return rounding, request.getfixturevalue(fixture)


def c_softmax(clib, p: SoftmaxParams, x: np.ndarray, expect_status: int = 0) -> np.ndarray:
    abi = Abi(clib)
    x2 = np.ascontiguousarray(x, np.int8).reshape(-1, x.shape[-1])
    out = out8(x2.shape, 99)
    status = abi.lib.mq_softmax_s8(abi.struct(p), x2.shape[0], x2.shape[1], abi.i8(x2),
                                   abi.i8(out))
    assert status == expect_status
    return out.reshape(x.shape)


def cmsis_case():
    arrays, cfg = load_case("softmax", "softmax")
    p = SoftmaxParams(cfg["INPUT_MULT"], cfg["INPUT_LEFT_SHIFT"], cfg["DIFF_MIN"])
    shape = (cfg["NUM_ROWS"], cfg["ROW_SIZE"])
    return p, arrays["input"].reshape(shape), arrays["output_ref"].reshape(shape)


def test_cmsis_softmax(clib):
    p, x, golden = cmsis_case()
    assert_exact(ref.softmax(p, x), golden, "ref softmax")
    assert_exact(c_softmax(clib, p, x), golden, "C softmax")


def test_cmsis_softmax_diff_min_max_gives_all_min(clib):
    p, x, _ = cmsis_case()
    p = replace(p, diff_min=0x7FFFFFFF)
    expected = np.full(x.shape, -128, np.int8)
    assert_exact(ref.softmax(p, x), expected, "ref softmax, no entry above diff_min")
    assert_exact(c_softmax(clib, p, x), expected, "C softmax, no entry above diff_min")


ROW_SIZES = [1, 2, 10, 64, 1000]


@pytest.mark.parametrize("row_size", ROW_SIZES)
def test_softmax_c_equals_ref(row_size, mode):
    rounding, clib = mode
    rng = np.random.default_rng(ROW_SIZES.index(row_size))
    for _ in range(6):
        s_in = 10 ** rng.uniform(-3, 0)
        beta = float(rng.choice([1.0, 0.5, 2.0, 10 ** rng.uniform(-1, 1)]))
        p = scheme.softmax_params(s_in, beta, rounding=rounding)
        rows = int(rng.integers(1, 6))
        lo, hi = sorted(rng.integers(-128, 128, 2))
        x = rng.integers(lo, hi + 1, (rows, row_size)).astype(np.int8)
        expected = ref.softmax(p, x, rounding=rounding)
        assert_exact(c_softmax(clib, p, x), expected, f"rows={rows} s_in={s_in} beta={beta}")


@pytest.mark.parametrize("row_size", [600, 4095])
def test_softmax_large_equal_row_rounds_to_zero(row_size, mode):
    """Equal entries: sum >= 2^28 in Q12.19, the branch where the output shift exceeds 31."""
    rounding, clib = mode
    p = scheme.softmax_params(0.2, rounding=rounding)
    x = np.zeros((2, row_size), np.int8)
    x[1, 0] = 100  # one dominant entry: 20 above the rest in real terms
    expected = ref.softmax(p, x, rounding=rounding)
    assert (expected[0] == -128).all()  # 1/600 < half a step of 1/256
    assert expected[1, 0] == 127
    assert_exact(c_softmax(clib, p, x), expected, "large row")


def test_softmax_rejects_rows_that_could_overflow(clib):
    _, lib = clib
    p = scheme.softmax_params(0.05)
    c_softmax(clib, p, np.zeros((1, 4096), np.int8), expect_status=lib.MQ_ERR_ARG)
    with pytest.raises(ValueError):
        ref.softmax(p, np.zeros((1, 4096), np.int8))


def test_fixed_point_exp_matches_float():
    a = -np.linspace(0, 31.9, 5001)  # Q5.26 inputs
    raw = np.round(a * 2**26).astype(np.int64)
    got = ref.exp_on_negative_values(raw) / 2**31
    assert np.abs(got - np.exp(raw / 2**26)).max() < 1e-6  # measured 2.1e-7
    assert ref.exp_on_negative_values(0) == 2**31 - 1


def test_fixed_point_reciprocal_matches_float():
    x = np.linspace(0, 1 - 2**-20, 2001)
    raw = np.round(x * 2**31).astype(np.int64)
    got = ref.one_over_one_plus_x_for_x_in_0_1(raw) / 2**31
    assert np.abs(got - 1 / (1 + raw / 2**31)).max() < 1e-8  # measured 2.7e-9


def test_count_leading_zeros():
    x = np.array([0, 1, 2, 3, 2**19, 2**31 - 1, 2**30])
    assert ref.count_leading_zeros(x).tolist() == [32, 31, 30, 30, 12, 1, 1]
    assert all(int(c) == 32 - int(v).bit_length() for c, v in zip(ref.count_leading_zeros(x), x))


@pytest.mark.parametrize("s_in", [20.0, 100.0])
def test_softmax_huge_input_scale_caps_the_multiplier(s_in, mode):
    """beta * s_in * 2^26 above the cap: left_shift 31 (double) or 30 (single), diff_min 0/-1."""
    rounding, clib = mode
    p = scheme.softmax_params(s_in, rounding=rounding)
    assert p.input_left_shift == (31 if rounding == "double" else 30)
    x = np.random.default_rng(3).integers(-128, 128, (4, 10)).astype(np.int8)
    x[0, :] = 5  # a tie at the maximum
    expected = ref.softmax(p, x, rounding=rounding)
    assert (np.sort(expected[1:], axis=1)[:, :-1] == -128).all()  # only the max survives
    assert_exact(c_softmax(clib, p, x), expected, f"s_in={s_in}")
