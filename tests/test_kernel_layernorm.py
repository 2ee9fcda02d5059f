"""int8 LayerNorm: C == numpy reference bit for bit (both rounding modes, random shapes, odd
widths, extreme rows), the integer inverse square root against float, and the accuracy of the
whole kernel against float LayerNorm of the dequantized input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from cabi import Abi, out8
from cmsis_cases import assert_exact

from microq.errors import MicroqError
from microq.qir import LayerNormParams
from microq.quant import scheme
from microq.ref import layernorm as ref

MQ_OK, MQ_ERR_ARG = 0, 1
MODES = [("double", "clib"), ("single", "clib_single")]


@pytest.fixture(params=MODES, ids=[m for m, _ in MODES])
def mode(request):
    rounding, fixture = request.param
    return rounding, request.getfixturevalue(fixture)


def c_layernorm(clib, p: LayerNormParams, x: np.ndarray) -> tuple[int, np.ndarray]:
    """mq_layernorm_s8 on x [rows, C]; returns (status, int8 output)."""
    abi = Abi(clib)
    out = out8(np.shape(x))
    status = abi.lib.mq_layernorm_s8(abi.struct(p), abi.quant(p.multiplier, p.shift),
                                     abi.i32(p.bias), x.shape[0], x.shape[1], abi.i8(x),
                                     abi.i8(out))
    return status, out


def make_case(
    seed: int,
    rows: int,
    width: int,
    *,
    gamma=None,
    beta=None,
    eps=1e-5,
    s_in=0.05,
    zp_in=None,
    rounding="double",
):
    rng = np.random.default_rng(seed)
    zp_in = int(rng.integers(-20, 20)) if zp_in is None else zp_in
    gamma = rng.uniform(-2.0, 2.0, width) if gamma is None else np.broadcast_to(gamma, width)
    beta = rng.uniform(-1.0, 1.0, width) if beta is None else np.broadcast_to(beta, width)
    s_out = float(rng.uniform(0.02, 0.06))
    zp_out = int(rng.integers(-10, 10))
    p = scheme.layernorm_params(s_in, zp_in, gamma, beta, eps, s_out, zp_out, rounding=rounding)
    x = rng.integers(-128, 128, (rows, width)).astype(np.int8)
    return p, x, (s_in, zp_in, gamma, beta, eps, s_out, zp_out)


def float_layernorm(x: np.ndarray, floats) -> np.ndarray:
    """Float LayerNorm of the dequantized input, in output steps (unrounded, unclamped)."""
    s_in, zp_in, gamma, beta, eps, s_out, zp_out = floats
    xf = s_in * (x.astype(np.float64) - zp_in)
    mean = xf.mean(axis=1, keepdims=True)
    var = xf.var(axis=1, keepdims=True)
    return ((xf - mean) / np.sqrt(var + eps) * gamma + beta) / s_out + zp_out


# ---- C == numpy reference ------------------------------------------------------------------

LN_CASES = {
    "width1": dict(rows=3, width=1),
    "width3_odd": dict(rows=5, width=3),
    "width7_odd": dict(rows=7, width=7),
    "width33_odd": dict(rows=4, width=33),
    "width64": dict(rows=64, width=64),
    "width193_odd": dict(rows=3, width=193),
    "width768": dict(rows=2, width=768),
    "negative_and_zero_gamma": dict(rows=4, width=16, gamma=np.tile([-1.5, 0.0, 2.0, -0.01], 4)),
    "no_eps": dict(rows=4, width=9, eps=0.0),
    "large_eps": dict(rows=4, width=9, eps=0.5),
    "tiny_input_scale": dict(rows=4, width=24, s_in=0.001),
}


@pytest.mark.parametrize("name", LN_CASES)
def test_layernorm_named(mode, name):
    rounding, clib = mode
    p, x, _ = make_case(len(name), rounding=rounding, **LN_CASES[name])
    expected = ref.layernorm(p, x, rounding)
    status, out = c_layernorm(clib, p, x)
    assert status == MQ_OK
    assert_exact(out, expected, f"layernorm {name} ({rounding})")
    if LN_CASES[name]["width"] > 1:
        assert len(np.unique(expected)) > 2, "degenerate case"


@pytest.mark.parametrize("seed", range(24), ids=lambda s: f"seed{s}")
def test_layernorm_random(mode, seed):
    rounding, clib = mode
    rng = np.random.default_rng(900 + seed)
    rows, width = int(rng.integers(1, 9)), int(rng.integers(1, 300))
    p, x, _ = make_case(seed, rows, width, s_in=float(rng.uniform(0.005, 0.2)), rounding=rounding)
    if rng.random() < 0.5:  # narrow rows: few distinct values, small variance
        x = np.clip(x // int(rng.integers(8, 128)), -128, 127).astype(np.int8)
    if rng.random() < 0.3:
        p = replace(p, act_min=-20, act_max=90)
    status, out = c_layernorm(clib, p, x)
    assert status == MQ_OK
    assert_exact(out, ref.layernorm(p, x, rounding), f"seed {seed} {rows}x{width} ({rounding})")


@pytest.mark.parametrize("width", [2, 5, 32768], ids=lambda w: f"width{w}")
def test_layernorm_extreme_rows(mode, width):
    """Largest variance (alternating -128 / 127), smallest non-zero one (one value differs by
    1) and the widest row: the int32/int64 bounds of the kernel's comment."""
    rounding, clib = mode
    p, _, floats = make_case(width, 3, width, gamma=3.0, beta=0.25, eps=0.0, rounding=rounding)
    x = np.zeros((3, width), np.int8)
    x[0, ::2], x[0, 1::2] = -128, 127
    x[1, :] = 127
    x[1, width // 2] = 126
    x[2, :] = -128
    x[2, 0] = 127  # one outlier: |z| = sqrt(width - 1), the largest possible
    expected = ref.layernorm(p, x, rounding)
    status, out = c_layernorm(clib, p, x)
    assert status == MQ_OK
    assert_exact(out, expected, f"extreme rows width {width} ({rounding})")
    f = float_layernorm(x, floats)
    inside = (f > -127.5) & (f < 126.5)
    assert np.abs(expected - f)[inside].max() <= 0.51


@pytest.mark.parametrize("eps", [0.0, 1e-5], ids=["eps0", "eps1e-5"])
def test_layernorm_constant_rows_give_beta(mode, eps):
    """Zero variance (even with eps = 0): a defined output, beta, never a division by zero."""
    rounding, clib = mode
    width = 11
    p, _, floats = make_case(4, 4, width, eps=eps, rounding=rounding)
    x = np.array([[v] * width for v in (-128, -1, 0, 127)], np.int8)
    expected = ref.layernorm(p, x, rounding)
    status, out = c_layernorm(clib, p, x)
    assert status == MQ_OK
    assert_exact(out, expected, f"constant rows ({rounding})")
    s_out, zp_out = floats[5], floats[6]
    beta_q = np.clip(np.round(floats[3] / s_out) + zp_out, -128, 127)
    assert_exact(expected, np.broadcast_to(beta_q, x.shape).astype(np.int8), "beta")


def test_layernorm_bad_args(clib):
    p, x, _ = make_case(1, 2, 8)
    bad = {
        "positive_shift": replace(p, shift=np.where(np.arange(8) == 3, 1, p.shift)),
        "shift_below_-31": replace(p, shift=np.full(8, -32)),
        "bias_too_large": replace(p, bias=np.full(8, 2**30 + 1)),
        "negative_eps": replace(p, eps=-1),
        "act_range": replace(p, act_min=10, act_max=0),
    }
    for what, q in bad.items():
        assert c_layernorm(clib, q, x)[0] == MQ_ERR_ARG, what
    wide = np.zeros((1, 32769), np.int8)
    wide_p = replace(p, multiplier=np.zeros(32769), shift=np.zeros(32769), bias=np.zeros(32769))
    assert c_layernorm(clib, wide_p, wide)[0] == MQ_ERR_ARG


# ---- arithmetic and accuracy against float ---------------------------------------------------


def test_inv_sqrt_q30_against_float():
    """1/sqrt(v) = y * 2^-(30 + k) to 5e-9 relative over v in [1, 2^46], 4 Newton steps."""
    v = np.unique(
        np.concatenate(
            [
                np.arange(1, 5000),
                np.round(np.geomspace(1, 2.0**46, 20000)),
                (np.int64(1) << np.arange(47)) - 1,
                np.int64(1) << np.arange(47),
            ]
        ).astype(np.int64)
    )
    v = v[v > 0]
    y, k = ref.inv_sqrt_q30(v)
    assert ((y >= 2**29) & (y <= 2**30)).all()
    approx = y.astype(np.float64) * 2.0 ** (-30 - k.astype(np.float64))
    rel = np.abs(approx * np.sqrt(v.astype(np.float64)) - 1.0)
    assert rel.max() < 5e-9, f"worst relative error {rel.max():.3g} at v = {v[rel.argmax()]}"


@pytest.mark.parametrize("width", [7, 64, 193])
def test_layernorm_close_to_float(width):
    """Measured bound: within 0.51 output steps of float LayerNorm of the dequantized input
    (0.5 is the final rounding; the rest is the Q.30 inverse square root, the Q11.20
    normalized value, gamma as a 31-bit multiplier and beta at 1/256 step)."""
    p, x, floats = make_case(width, 200, width)
    x[:3] = np.clip(x[:3] // 64, -128, 127)  # narrow rows too
    q = ref.layernorm(p, x)
    f = float_layernorm(x, floats)
    inside = (f > -127.5) & (f < 126.5)  # outside, both saturate
    err = np.abs(q - f)[inside]
    assert inside.mean() > 0.8 and err.max() <= 0.51, f"max error {err.max():.4f} steps"
    assert_exact(q[~inside], np.clip(np.round(f[~inside]), -128, 127).astype(np.int8), "clamp")


def test_layernorm_params_scheme():
    gamma, beta = np.array([1.0, -0.5, 0.0, 1e-9]), np.array([0.1, -0.2, 1e9, 0.0])
    p = scheme.layernorm_params(0.05, 7, gamma, beta, 1e-5, 0.02, 3)
    assert p.eps == round(1e-5 / 0.05**2 * 16 * 2**16)
    assert p.multiplier[0] > 0 > p.multiplier[1] and p.multiplier[2] == p.multiplier[3] == 0
    assert (p.shift <= 0).all() and (p.shift >= -31).all()
    assert p.bias[0] == round(0.1 / 0.02 * 256) and p.bias[2] == 2**29  # clipped: saturates
    with pytest.raises(MicroqError, match="output scale is too small"):
        scheme.layernorm_params(0.05, 0, [100.0], [0.0], 1e-5, 0.01, 0)
    with pytest.raises(MicroqError, match="epsilon"):
        scheme.layernorm_params(1e-9, 0, np.ones(4096), np.zeros(4096), 1.0, 0.01, 0)
    with pytest.raises(MicroqError, match="one width"):
        scheme.layernorm_params(0.05, 0, np.ones(4), np.zeros(3), 1e-5, 0.01, 0)
