"""int8 group / instance normalization (mq_groupnorm_s8): C == numpy reference bit for bit
(both rounding modes, random shapes and group counts, extreme groups, the largest count with
its reduced var_bits), bad arguments, and the accuracy of the kernel against float group
normalization of the dequantized input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from cabi import Abi, out8
from cmsis_cases import assert_exact

from microq.errors import MicroqError
from microq.qir import GroupNormParams
from microq.quant.rules_norm import groupnorm_params
from microq.ref import groupnorm as ref

MQ_OK, MQ_ERR_ARG = 0, 1
MODES = [("double", "clib"), ("single", "clib_single")]


@pytest.fixture(params=MODES, ids=[m for m, _ in MODES])
def mode(request):
    rounding, fixture = request.param
    return rounding, request.getfixturevalue(fixture)


def c_groupnorm(clib, p: GroupNormParams, x: np.ndarray) -> tuple[int, np.ndarray]:
    """mq_groupnorm_s8 on x [batches, spatial, C]; returns (status, int8 output)."""
    abi = Abi(clib)
    out = out8(np.shape(x))
    status = abi.lib.mq_groupnorm_s8(abi.struct(p), abi.quant(p.multiplier, p.shift),
                                     abi.i32(p.bias), x.shape[0], x.shape[1], x.shape[2],
                                     abi.i8(x), abi.i8(out))
    return status, out


def make_case(seed: int, batches: int, spatial: int, channels: int, groups: int, *,
              gamma=None, beta=None, eps=1e-5, s_in=0.05, rounding="double"):
    rng = np.random.default_rng(seed)
    zp_in = int(rng.integers(-20, 20))
    gamma = rng.uniform(-2.0, 2.0, channels) if gamma is None else np.broadcast_to(gamma,
                                                                                   channels)
    beta = rng.uniform(-1.0, 1.0, channels) if beta is None else np.broadcast_to(beta, channels)
    s_out = float(rng.uniform(0.02, 0.06))
    zp_out = int(rng.integers(-10, 10))
    p = groupnorm_params(s_in, zp_in, gamma, beta, eps, groups, spatial, s_out, zp_out,
                         rounding=rounding)
    x = rng.integers(-128, 128, (batches, spatial, channels)).astype(np.int8)
    return p, x, (s_in, zp_in, gamma, beta, eps, s_out, zp_out)


def float_groupnorm(x: np.ndarray, groups: int, floats) -> np.ndarray:
    """Float group norm of the dequantized input, in output steps (unrounded, unclamped)."""
    s_in, zp_in, gamma, beta, eps, s_out, zp_out = floats
    n, s, c = x.shape
    xf = (s_in * (x.astype(np.float64) - zp_in)).reshape(n, s, groups, c // groups)
    mean = xf.mean(axis=(1, 3), keepdims=True)
    var = xf.var(axis=(1, 3), keepdims=True)
    z = ((xf - mean) / np.sqrt(var + eps)).reshape(n, s, c)
    return (z * gamma + beta) / s_out + zp_out


# ---- C == numpy reference ------------------------------------------------------------------

GN_CASES = {
    "instance_2d": dict(batches=1, spatial=36, channels=8, groups=8),
    "instance_1pixel": dict(batches=2, spatial=1, channels=5, groups=5),
    "group4_of_16": dict(batches=1, spatial=49, channels=16, groups=4),
    "one_group_is_layernorm_over_all": dict(batches=3, spatial=10, channels=6, groups=1),
    "odd_channels_per_group": dict(batches=1, spatial=13, channels=21, groups=7),
    "negative_and_zero_gamma": dict(batches=1, spatial=9, channels=16, groups=4,
                                    gamma=np.tile([-1.5, 0.0, 2.0, -0.01], 4)),
    "no_eps": dict(batches=1, spatial=9, channels=8, groups=2, eps=0.0),
    "large_eps": dict(batches=1, spatial=9, channels=8, groups=2, eps=0.5),
    "tiny_input_scale": dict(batches=1, spatial=20, channels=6, groups=3, s_in=0.001),
    "count_2^16_var_bits_14": dict(batches=1, spatial=4096, channels=32, groups=2),
}


@pytest.mark.parametrize("name", GN_CASES)
def test_groupnorm_named(mode, name):
    rounding, clib = mode
    case = dict(GN_CASES[name])
    p, x, _ = make_case(len(name), case.pop("batches"), case.pop("spatial"),
                        case.pop("channels"), case.pop("groups"), rounding=rounding, **case)
    expected = ref.groupnorm(p, x, rounding)
    status, out = c_groupnorm(clib, p, x)
    assert status == MQ_OK
    assert_exact(out, expected, f"groupnorm {name} ({rounding})")
    assert len(np.unique(expected)) > 2, "degenerate case"


@pytest.mark.parametrize("seed", range(24), ids=lambda s: f"seed{s}")
def test_groupnorm_random(mode, seed):
    rounding, clib = mode
    rng = np.random.default_rng(700 + seed)
    groups, width = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    batches, spatial = int(rng.integers(1, 4)), int(rng.integers(1, 200))
    p, x, _ = make_case(seed, batches, spatial, groups * width, groups,
                        s_in=float(rng.uniform(0.005, 0.2)), rounding=rounding)
    if rng.random() < 0.5:  # narrow groups: few distinct values, small variance
        x = np.clip(x // int(rng.integers(8, 128)), -128, 127).astype(np.int8)
    if rng.random() < 0.3:
        p = replace(p, act_min=-20, act_max=90)
    status, out = c_groupnorm(clib, p, x)
    assert status == MQ_OK
    assert_exact(out, ref.groupnorm(p, x, rounding),
                 f"seed {seed} {batches}x{spatial}x{groups * width} g{groups} ({rounding})")


def test_var_bits_follow_the_count():
    """16 extra variance bits up to 2^15 values per group, two fewer per doubling after."""
    assert [ref.var_bits_for(n) for n in (1, 2**15, 2**15 + 1, 2**16, 2**17, 2**18)] == [
        16, 16, 14, 14, 12, 10]
    with pytest.raises(ValueError):
        ref.var_bits_for(2**18 + 1)


@pytest.mark.parametrize("spatial, channels, groups", [(2, 1, 1), (5, 4, 4), (65536, 4, 1)],
                         ids=["tiny", "instance", "count_2^18"])
def test_groupnorm_extreme_groups(mode, spatial, channels, groups):
    """Largest variance (alternating -128 / 127), one outlier (|z| = sqrt(count - 1), the
    largest possible) and the largest count, var_bits 10: the int32/int64 bounds of the
    kernel's comment."""
    rounding, clib = mode
    p, _, floats = make_case(spatial, 3, spatial, channels, groups, gamma=3.0, beta=0.25,
                             eps=0.0, rounding=rounding)
    x = np.zeros((3, spatial, channels), np.int8)
    x[0, ::2], x[0, 1::2] = -128, 127
    x[1] = 127
    x[1, spatial // 2] = 126
    x[2] = -128
    x[2, 0] = 127
    expected = ref.groupnorm(p, x, rounding)
    status, out = c_groupnorm(clib, p, x)
    assert status == MQ_OK
    assert_exact(out, expected, f"extreme {spatial}x{channels} g{groups} ({rounding})")
    f = float_groupnorm(x, groups, floats)
    inside = (f > -127.5) & (f < 126.5)
    assert np.abs(expected - f)[inside].max() <= 0.51


@pytest.mark.parametrize("eps", [0.0, 1e-5], ids=["eps0", "eps1e-5"])
def test_groupnorm_constant_groups_give_beta(mode, eps):
    """Zero variance (even with eps = 0): a defined output, beta, never a division by zero."""
    rounding, clib = mode
    p, _, floats = make_case(4, 4, 7, 6, 3, eps=eps, rounding=rounding)
    x = np.stack([np.full((7, 6), v, np.int8) for v in (-128, -1, 0, 127)])
    expected = ref.groupnorm(p, x, rounding)
    status, out = c_groupnorm(clib, p, x)
    assert status == MQ_OK
    assert_exact(out, expected, f"constant groups ({rounding})")
    s_out, zp_out = floats[5], floats[6]
    beta_q = np.clip(np.round(floats[3] / s_out) + zp_out, -128, 127)
    assert_exact(expected, np.broadcast_to(beta_q, x.shape).astype(np.int8), "beta")


def test_groupnorm_bad_args(clib):
    p, x, _ = make_case(1, 1, 5, 8, 4)
    bad = {
        "positive_shift": replace(p, shift=np.where(np.arange(8) == 3, 1, p.shift)),
        "shift_below_-31": replace(p, shift=np.full(8, -32)),
        "bias_too_large": replace(p, bias=np.full(8, 2**30 + 1)),
        "negative_eps": replace(p, eps=-1),
        "act_range": replace(p, act_min=10, act_max=0),
        "groups_not_dividing": replace(p, groups=3),
        "zero_groups": replace(p, groups=0),
        "odd_var_bits": replace(p, var_bits=15),
        "var_bits_above_16": replace(p, var_bits=18),
    }
    for what, q in bad.items():
        assert c_groupnorm(clib, q, x)[0] == MQ_ERR_ARG, what
    big = np.zeros((1, 2**14, 4), np.int8)  # count 2^16 needs var_bits <= 14
    big_p = replace(p, groups=1, multiplier=np.zeros(4), shift=np.zeros(4), bias=np.zeros(4))
    assert c_groupnorm(clib, replace(big_p, var_bits=16), big)[0] == MQ_ERR_ARG
    assert c_groupnorm(clib, replace(big_p, var_bits=14), big)[0] == MQ_OK
    huge = np.zeros((1, 2**16 + 1, 4), np.int8)  # count above 2^18
    assert c_groupnorm(clib, replace(big_p, var_bits=0), huge)[0] == MQ_ERR_ARG


# ---- accuracy against float ------------------------------------------------------------------


@pytest.mark.parametrize("spatial, channels, groups", [(64, 8, 8), (49, 16, 4), (10, 12, 1)])
def test_groupnorm_close_to_float(spatial, channels, groups):
    """Measured bound: within 0.51 output steps of float group norm of the dequantized input
    (0.5 is the final rounding; the rest is the Q.30 inverse square root, the Q.20 normalized
    value, gamma as a 31-bit multiplier and beta at 1/256 step)."""
    p, x, floats = make_case(spatial + channels, 20, spatial, channels, groups)
    x[:3] = np.clip(x[:3] // 64, -128, 127)  # narrow groups too
    q = ref.groupnorm(p, x)
    f = float_groupnorm(x, groups, floats)
    inside = (f > -127.5) & (f < 126.5)  # outside, both saturate
    err = np.abs(q - f)[inside]
    assert inside.mean() > 0.8 and err.max() <= 0.51, f"max error {err.max():.4f} steps"
    assert_exact(q[~inside], np.clip(np.round(f[~inside]), -128, 127).astype(np.int8), "clamp")


def test_groupnorm_params_scheme():
    gamma, beta = np.array([1.0, -0.5, 0.0, 1e-9]), np.array([0.1, -0.2, 1e9, 0.0])
    p = groupnorm_params(0.05, 7, gamma, beta, 1e-5, 2, 9, 0.02, 3)
    assert p.var_bits == 16 and p.eps == round(1e-5 / 0.05**2 * 18**2 * 2**16)
    assert p.multiplier[0] > 0 > p.multiplier[1] and p.multiplier[2] == p.multiplier[3] == 0
    assert (p.shift <= 0).all() and (p.shift >= -31).all()
    assert p.bias[0] == round(0.1 / 0.02 * 256) and p.bias[2] == 2**29  # clipped: saturates
    with pytest.raises(MicroqError, match="output scale is too small"):
        groupnorm_params(0.05, 0, [100.0], [0.0], 1e-5, 1, 4, 0.01, 0)
    with pytest.raises(MicroqError, match="epsilon"):
        groupnorm_params(1e-9, 0, np.ones(64), np.zeros(64), 1.0, 1, 4096, 0.01, 0)
    with pytest.raises(MicroqError, match="one value per channel"):
        groupnorm_params(0.05, 0, np.ones(4), np.zeros(3), 1e-5, 1, 4, 0.01, 0)
    with pytest.raises(MicroqError, match="do not split into 3 groups"):
        groupnorm_params(0.05, 0, np.ones(4), np.zeros(4), 1e-5, 3, 4, 0.01, 0)
    with pytest.raises(MicroqError, match="at most 262144"):
        groupnorm_params(0.05, 0, np.ones(4), np.zeros(4), 1e-5, 1, 2**17, 0.01, 0)
