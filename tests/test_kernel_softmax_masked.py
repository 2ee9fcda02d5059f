"""Masked int8 softmax (attention masks): C mq_softmax_masked_s8 == numpy reference bit for bit
on random shapes, masks and parameters (both rounding modes); masked keys get probability
exactly 0 and change nothing for the kept ones; an all-masked row is all zero probability."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
from cmsis_cases import assert_exact

from microq.qir import SoftmaxParams
from microq.quant import scheme
from microq.ref import softmax as ref

MODES = [("double", "clib"), ("single", "clib_single")]


@pytest.fixture(params=MODES, ids=[m for m, _ in MODES])
def mode(request):
    rounding, fixture = request.param
    return rounding, request.getfixturevalue(fixture)


def c_softmax_masked(clib, p: SoftmaxParams, x: np.ndarray, mask: np.ndarray,
                     expect_status: int = 0) -> np.ndarray:
    ffi, lib = clib
    x2 = np.ascontiguousarray(x, np.int8).reshape(-1, x.shape[-1])
    m2 = np.ascontiguousarray(mask, np.uint8).reshape(-1, x.shape[-1])
    out = np.full_like(x2, 99)
    status = lib.mq_softmax_masked_s8(
        ffi.new("mq_softmax_params *", asdict(p)), x2.shape[0], x2.shape[1], m2.shape[0],
        ffi.from_buffer("uint8_t[]", m2), ffi.from_buffer("int8_t[]", x2),
        ffi.from_buffer("int8_t[]", out))
    assert status == expect_status
    return out.reshape(x.shape)


def _params(rng, rounding):
    s_in = 10 ** rng.uniform(-3, 0)
    beta = float(rng.choice([1.0, 0.5, 10 ** rng.uniform(-1, 1)]))
    return scheme.softmax_params(s_in, beta, rounding=rounding)


@pytest.mark.parametrize("row_size", [1, 3, 8, 64, 65, 300])
def test_masked_softmax_c_equals_ref_on_random_masks(row_size, mode):
    """Random rows, random per-(row, key) masks repeated every mask_rows rows (one [Tq, Tk] mask
    for all heads), including fully masked rows; rows <= 64 and > 64 take the two C paths."""
    rounding, clib = mode
    rng = np.random.default_rng(row_size)
    for trial in range(8):
        p = _params(rng, rounding)
        mask_rows = int(rng.integers(1, 5))
        rows = mask_rows * int(rng.integers(1, 4))
        lo, hi = sorted(rng.integers(-128, 128, 2))
        x = rng.integers(lo, hi + 1, (rows, row_size)).astype(np.int8)
        kind = trial % 3
        if kind == 0:  # causal-like lower triangle
            mask = (np.arange(row_size)[None, :] <= np.arange(mask_rows)[:, None] * 2)
        else:
            mask = rng.random((mask_rows, row_size)) < rng.uniform(0.1, 0.9)
        if trial == 4:
            mask[0] = False  # a row with every key masked
        mask = mask.astype(np.uint8)
        keep = np.tile(mask, (rows // mask_rows, 1))
        expected = ref.softmax_masked(p, x, keep, rounding=rounding)
        assert_exact(c_softmax_masked(clib, p, x, mask), expected,
                     f"rows={rows} mask_rows={mask_rows} trial={trial}")
        assert (expected[keep == 0] == -128).all(), "a masked key carries probability"


def test_masked_softmax_equals_plain_softmax_of_the_kept_keys(mode):
    """Masking a key is removing it: the kept keys' outputs equal mq_softmax_s8 on them alone,
    whatever the masked logits are (here the row's largest, which would dominate otherwise)."""
    rounding, clib = mode
    rng = np.random.default_rng(7)
    for _ in range(20):
        p = _params(rng, rounding)
        n = int(rng.integers(2, 40))
        x = rng.integers(-128, 128, (1, n)).astype(np.int8)
        keep = rng.random(n) < 0.6
        keep[rng.integers(n)] = True
        x[0, ~keep] = 127
        got = ref.softmax_masked(p, x, keep[None], rounding=rounding)
        alone = ref.softmax(p, x[:, keep], rounding=rounding)
        assert_exact(got[:, keep], alone, "kept keys")
        assert_exact(c_softmax_masked(clib, p, x, keep[None].astype(np.uint8)), got, "C")


def test_all_masked_row_is_zero_probability(mode):
    rounding, clib = mode
    p = scheme.softmax_params(0.1, rounding=rounding)
    x = np.random.default_rng(2).integers(-128, 128, (3, 10)).astype(np.int8)
    mask = np.ones((3, 10), np.uint8)
    mask[1] = 0
    got = ref.softmax_masked(p, x, mask, rounding=rounding)
    assert (got[1] == -128).all()
    assert (got[[0, 2]] > -128).any(axis=1).all()
    assert_exact(c_softmax_masked(clib, p, x, mask), got, "all-masked row")


def test_all_kept_mask_equals_plain_softmax(mode):
    rounding, clib = mode
    rng = np.random.default_rng(5)
    p = scheme.softmax_params(0.05, rounding=rounding)
    x = rng.integers(-128, 128, (6, 33)).astype(np.int8)
    want = ref.softmax(p, x, rounding=rounding)
    assert_exact(ref.softmax_masked(p, x, np.ones((1, 33)), rounding=rounding), want, "ref")
    assert_exact(c_softmax_masked(clib, p, x, np.ones((1, 33), np.uint8)), want, "C")


def test_masked_softmax_rejects_bad_arguments(clib):
    ffi, lib = clib
    p = scheme.softmax_params(0.05)
    x = np.zeros((6, 4), np.int8)
    # 6 rows do not repeat a 4-row mask
    c_softmax_masked(clib, p, x, np.ones((4, 4), np.uint8), expect_status=lib.MQ_ERR_ARG)
    out = np.zeros_like(x)
    status = lib.mq_softmax_masked_s8(ffi.new("mq_softmax_params *", asdict(p)), 6, 4, 1,
                                      ffi.NULL, ffi.from_buffer("int8_t[]", x),
                                      ffi.from_buffer("int8_t[]", out))
    assert status == lib.MQ_ERR_ARG
    c_softmax_masked(clib, p, np.zeros((1, 4096), np.int8), np.ones((1, 4096), np.uint8),
                     expect_status=lib.MQ_ERR_ARG)
