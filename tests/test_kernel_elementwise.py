"""Elementwise kernels (add, sub, mul with broadcasting; lut; requantize): C == numpy reference,
both rounding modes, and both == the CMSIS-NN golden vectors."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest
from cabi import Abi, out8
from cmsis_cases import assert_exact, load_case

from microq.qir import AddParams, LutParams, MulParams, RequantizeParams
from microq.quant import scheme
from microq.ref import elementwise as ref

MODES = [("double", "clib"), ("single", "clib_single")]


@pytest.fixture(params=MODES, ids=[m for m, _ in MODES])
def mode(request):
    """(rounding name for the reference, (ffi, lib) built with that rounding)."""
    rounding, fixture = request.param
    return rounding, request.getfixturevalue(fixture)


def c_binary(clib, op: str, p, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    abi = Abi(clib)
    out = out8(np.broadcast_shapes(a.shape, b.shape), 99)
    status = getattr(abi.lib, f"mq_{op}_s8")(abi.struct(p), abi.bcast(a.shape, b.shape),
                                            abi.i8(a), abi.i8(b), abi.i8(out))
    assert status == abi.lib.MQ_OK
    return out


def c_requantize(clib, p: RequantizeParams, x: np.ndarray) -> np.ndarray:
    abi = Abi(clib)
    out = out8(np.shape(x))
    status = abi.lib.mq_requantize_s8(abi.struct(p), x.size, abi.i8(x), abi.i8(out))
    assert status == abi.lib.MQ_OK
    return out


# --- CMSIS-NN golden vectors -------------------------------------------------------------


def test_cmsis_add(clib):
    arrays, cfg = load_case("add", "add")
    p = AddParams(
        input1_offset=cfg["INPUT1_OFFSET"], input1_multiplier=cfg["INPUT1_MULT"],
        input1_shift=cfg["INPUT1_SHIFT"], input2_offset=cfg["INPUT2_OFFSET"],
        input2_multiplier=cfg["INPUT2_MULT"], input2_shift=cfg["INPUT2_SHIFT"],
        left_shift=cfg["LEFT_SHIFT"], output_offset=cfg["OUTPUT_OFFSET"],
        output_multiplier=cfg["OUTPUT_MULT"], output_shift=cfg["OUTPUT_SHIFT"],
        act_min=cfg["OUT_ACTIVATION_MIN"], act_max=cfg["OUT_ACTIVATION_MAX"],
    )  # fmt: skip
    a, b, golden = arrays["input1"], arrays["input2"], arrays["output_ref"]
    assert_exact(ref.add(p, a, b), golden, "ref add")
    assert_exact(c_binary(clib, "add", p, a, b), golden, "C add")


def test_cmsis_mul(clib):
    arrays, cfg = load_case("mul", "mul")
    p = MulParams(
        input1_offset=cfg["INPUT1_OFFSET"], input2_offset=cfg["INPUT2_OFFSET"],
        output_offset=cfg["OUTPUT_OFFSET"], output_multiplier=cfg["OUTPUT_MULT"],
        output_shift=cfg["OUTPUT_SHIFT"], act_min=cfg["OUT_ACTIVATION_MIN"],
        act_max=cfg["OUT_ACTIVATION_MAX"],
    )  # fmt: skip
    a, b, golden = arrays["input1"], arrays["input2"], arrays["output_ref"]
    assert_exact(ref.mul(p, a, b), golden, "ref mul")
    assert_exact(c_binary(clib, "mul", p, a, b), golden, "C mul")


# --- randomized C == reference -----------------------------------------------------------

BROADCAST_CASES = {
    "same_shape": ((2, 3, 4, 5), (2, 3, 4, 5)),
    "scalar": ((1, 4, 4, 8), ()),
    "scalar_first": ((), (3, 7)),
    "per_channel": ((1, 4, 4, 8), (8,)),
    "column_1_1_w_1": ((1, 4, 5, 3), (1, 1, 5, 1)),
    "rank2": ((6, 7), (6, 1)),
    "rank3_both": ((1, 5, 1), (4, 1, 6)),
    "rank5": ((2, 1, 3, 1, 4), (1, 3, 1, 5, 1)),
    "rank6": ((2, 1, 2, 3, 1, 2), (1, 2, 1, 1, 3, 1)),
    "ones": ((1, 1), (1, 1)),
}


def random_binary_params(op: str, rng: np.random.Generator, rounding: str):
    s1 = 10 ** rng.uniform(-3, 1)
    s2 = s1 * 10 ** rng.uniform(-2, 2)  # either input may have the larger scale
    zp1, zp2, zp_out = (int(z) for z in rng.integers(-128, 128, 3))
    lo, hi = -128, 127
    if rng.random() < 0.5:  # a fused-activation clamp
        lo, hi = sorted(int(v) for v in rng.integers(-128, 128, 2))
    if op == "mul":
        s_out = s1 * s2 * 10 ** rng.uniform(-1, 3)  # multiplier 1e-3..10: shifts of both signs
        return scheme.mul_params(s1, zp1, s2, zp2, s_out, zp_out, lo, hi, rounding=rounding)
    s_out = max(s1, s2) * 10 ** rng.uniform(-1, 1.5)
    return scheme.add_params(s1, zp1, s2, zp2, s_out, zp_out, lo, hi, rounding=rounding)


@pytest.mark.parametrize("op", ["add", "sub", "mul"])
@pytest.mark.parametrize("case", list(BROADCAST_CASES))
def test_binary_broadcast_c_equals_ref(case, op, mode):
    rounding, clib = mode
    shape1, shape2 = BROADCAST_CASES[case]
    rng = np.random.default_rng([list(BROADCAST_CASES).index(case), ord(op[0])])
    for _ in range(4):
        p = random_binary_params(op, rng, rounding)
        a = rng.integers(-128, 128, shape1).astype(np.int8)
        b = rng.integers(-128, 128, shape2).astype(np.int8)
        expected = getattr(ref, op)(p, a, b, rounding=rounding)
        assert expected.shape == np.broadcast_shapes(shape1, shape2)
        assert_exact(c_binary(clib, op, p, a, b), expected, f"{op} {case} {p}")


@pytest.mark.parametrize("op", ["add", "sub", "mul"])
def test_binary_saturates_at_both_ends(op, mode):
    rounding, clib = mode
    rng = np.random.default_rng(7)
    a = np.arange(-128, 128, dtype=np.int8).reshape(16, 16)
    b = rng.integers(-128, 128, (16, 1)).astype(np.int8)
    if op == "mul":
        p = scheme.mul_params(0.1, 0, 0.1, 0, 0.01, 0, rounding=rounding)
    else:
        p = scheme.add_params(0.1, 0, 0.1, 0, 0.05, 0, rounding=rounding)
    out = c_binary(clib, op, p, a, b)
    assert_exact(out, getattr(ref, op)(p, a, b, rounding=rounding), op)
    assert out.min() == -128 and out.max() == 127


def test_binary_act_clamp(clib):
    p = scheme.add_params(0.05, 3, 0.02, -7, 0.06, -10, act_min=-10, act_max=40)
    a = np.arange(-128, 128, dtype=np.int8)
    out = c_binary(clib, "add", p, a, a[::-1].copy())
    assert_exact(out, ref.add(p, a, a[::-1]), "relu-like clamp")
    assert out.min() == -10 and out.max() == 40


def test_broadcast_struct_fields():
    bc = ref.broadcast_struct((1, 4, 5, 3), (5, 1))
    assert bc == {
        "rank": 4,
        "out_shape": [1, 1, 1, 4, 5, 3],
        "in1_strides": [0, 0, 0, 15, 3, 1],
        "in2_strides": [0, 0, 0, 0, 1, 0],
    }
    with pytest.raises(ValueError):
        ref.broadcast_struct((2, 3), (4,))


def test_bad_params_are_rejected(clib):
    ffi, lib = clib
    p = scheme.add_params(0.1, 0, 0.1, 0, 0.1, 0)
    x = np.zeros(4, np.int8)
    buf = ffi.from_buffer("int8_t[]", x)
    good = ref.broadcast_struct((4,), (4,))
    bad_rank = dict(good, rank=7)
    for params, bc in ((p, bad_rank), (replace(p, left_shift=21), good)):
        status = lib.mq_add_s8(
            ffi.new("mq_add_params *", asdict(params)), ffi.new("mq_broadcast *", bc), buf, buf, buf
        )
        assert status == lib.MQ_ERR_ARG
    mp = replace(scheme.mul_params(0.1, 0, 0.1, 0, 0.1, 0), output_shift=13)
    status = lib.mq_mul_s8(
        ffi.new("mq_mul_params *", asdict(mp)), ffi.new("mq_broadcast *", good), buf, buf, buf
    )
    assert status == lib.MQ_ERR_ARG


# --- lut and requantize ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lut_c_equals_ref(clib, seed):
    ffi, lib = clib
    rng = np.random.default_rng(seed)
    p = LutParams(rng.integers(-128, 128, 256).astype(np.int8), "random")
    x = np.concatenate([np.arange(-128, 128), rng.integers(-128, 128, 1000)]).astype(np.int8)
    out = np.empty_like(x)
    table = ffi.from_buffer("int8_t[]", p.table)
    x_buf, out_buf = ffi.from_buffer("int8_t[]", x), ffi.from_buffer("int8_t[]", out)
    assert lib.mq_lut_s8(table, x.size, x_buf, out_buf) == lib.MQ_OK
    expected = ref.lut(p, x)
    assert_exact(expected[:256], p.table, "ref lut covers the table in order")
    assert_exact(out, expected, "C lut")


REQUANT_RATIOS = {"ratio_0.01": 0.01, "ratio_0.37": 0.37, "ratio_1": 1.0, "ratio_3.3": 3.3,
                  "ratio_150": 150.0}  # fmt: skip


@pytest.mark.parametrize("name", list(REQUANT_RATIOS))
def test_requantize_c_equals_ref(name, mode):
    rounding, clib = mode
    rng = np.random.default_rng(list(REQUANT_RATIOS).index(name))
    x = np.arange(-128, 128, dtype=np.int8)
    for _ in range(5):
        s_in = 10 ** rng.uniform(-3, 1)
        ratio = REQUANT_RATIOS[name] * 10 ** rng.uniform(-0.1, 0.1)
        zp_in, zp_out = (int(z) for z in rng.integers(-128, 128, 2))
        p = scheme.requantize_params(s_in, zp_in, s_in / ratio, zp_out, rounding=rounding)
        assert (p.shift > 0) == (ratio >= 1.0)
        assert_exact(c_requantize(clib, p, x), ref.requantize(p, x, rounding=rounding), name)


def test_requantize_in_place(clib):
    ffi, lib = clib
    p = scheme.requantize_params(0.02, 5, 0.03, -3)
    x = np.arange(-128, 128, dtype=np.int8)
    expected = ref.requantize(p, x)
    buf = ffi.from_buffer("int8_t[]", x)
    assert lib.mq_requantize_s8(ffi.new("mq_requantize_params *", asdict(p)), x.size, buf, buf) == 0
    assert_exact(x, expected, "in place")


def test_rounding_switch_reaches_the_kernels(clib, clib_single):
    """Negative ties: double rounding goes away from zero, single rounding up (-0.5 -> -1 / 0)."""
    x = np.array([-2, 2, -6, 6], np.int8)  # /4: -0.5, 0.5, -1.5, 1.5 (ties in RDBPOT)
    p = scheme.requantize_params(1.0, 0, 4.0, 0)
    assert_exact(c_requantize(clib, p, x), np.array([-1, 1, -2, 2], np.int8), "double")
    assert_exact(c_requantize(clib_single, p, x), np.array([0, 1, -1, 2], np.int8), "single")
    pa = scheme.add_params(1.0, 0, 1.0, 0, 8.0, 0)  # (x1 + x2) / 8
    for lib, rounding in ((clib, "double"), (clib_single, "single")):
        got = c_binary(lib, "add", pa, x, x)
        assert_exact(got, ref.add(pa, x, x, rounding=rounding), rounding)
        assert got[0] == (-1 if rounding == "double" else 0)
