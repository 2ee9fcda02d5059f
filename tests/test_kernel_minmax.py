"""Max / Min / PRelu (mq_elementwise.c) and ReduceMax / ReduceMin / ArgMax (mq_reduce.c): C ==
numpy reference bit for bit on randomized shapes, broadcasts and parameters, both rounding
modes; the integer results against float; bad arguments rejected."""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations

import numpy as np
import pytest
from cabi import Abi, out8
from cmsis_cases import assert_exact

from microq.errors import MicroqError
from microq.qir import ArgMaxParams, ReduceParams
from microq.quant import scheme
from microq.quant.rules_minmax import prelu_params
from microq.ref import minmax, reduce

MODES = [("double", "clib"), ("single", "clib_single")]
MQ_OK, MQ_ERR_ARG = 0, 1
BROADCASTS = {
    "same_shape": ((1, 4, 5, 8), (1, 4, 5, 8)),
    "per_channel": ((1, 4, 4, 8), (8,)),
    "scalar": ((1, 3, 3, 5), ()),
    "scalar_first": ((), (3, 7)),
    "rank3_both": ((1, 5, 1), (4, 1, 6)),
    "rank6": ((2, 1, 2, 3, 1, 2), (1, 2, 1, 1, 3, 1)),
}


@pytest.fixture(params=MODES, ids=[m for m, _ in MODES])
def mode(request):
    rounding, fixture = request.param
    return rounding, request.getfixturevalue(fixture)


def _call(clib, fn: str, struct: str, p, a: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray]:
    abi = Abi(clib)
    out = out8(np.broadcast_shapes(a.shape, b.shape), 99)
    status = getattr(abi.lib, fn)(abi.struct(p, struct.rstrip(" *")), abi.bcast(a.shape, b.shape),
                                  abi.i8(a), abi.i8(b), abi.i8(out))
    return status, out


def _scales(rng):
    s1 = 10 ** rng.uniform(-3, 1)
    s2 = s1 * 10 ** rng.uniform(-2, 2)
    return s1, s2, max(s1, s2) * 10 ** rng.uniform(-1, 1.5)


@pytest.mark.parametrize("op", ["maximum", "minimum"])
@pytest.mark.parametrize("case", list(BROADCASTS))
def test_max_min_c_equals_ref(case, op, mode):
    rounding, clib = mode
    shape1, shape2 = BROADCASTS[case]
    rng = np.random.default_rng([list(BROADCASTS).index(case), len(op)])
    for _ in range(4):
        s1, s2, s_out = _scales(rng)
        zp1, zp2, zp_out = (int(z) for z in rng.integers(-128, 128, 3))
        lo, hi = sorted(int(v) for v in rng.integers(-128, 128, 2)) if rng.random() < 0.3 \
            else (-128, 127)
        p = scheme.add_params(s1, zp1, s2, zp2, s_out, zp_out, lo, hi, rounding=rounding)
        a = rng.integers(-128, 128, shape1).astype(np.int8)
        b = rng.integers(-128, 128, shape2).astype(np.int8)
        status, out = _call(clib, f"mq_{op}_s8", "mq_add_params *", p, a, b)
        assert status == MQ_OK
        assert_exact(out, getattr(minmax, op)(p, a, b, rounding), f"{op} {case}")


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_max_min_close_to_float(op):
    """The int8 result is the float max/min of the dequantized inputs to within one output step
    (half a step of rounding, plus the inputs' rescaling)."""
    rng = np.random.default_rng(5)
    s1, s2, s_out, zp1, zp2, zp_out = 0.02, 0.05, 0.04, 3, -7, 10
    p = scheme.add_params(s1, zp1, s2, zp2, s_out, zp_out)
    a = rng.integers(-128, 128, (64, 8)).astype(np.int8)
    b = rng.integers(-128, 128, (8,)).astype(np.int8)
    q = getattr(minmax, op)(p, a, b)
    f = getattr(np, op)(s1 * (a.astype(np.float64) - zp1), s2 * (b - zp2)) / s_out + zp_out
    inside = (f > -128) & (f < 127)
    assert inside.mean() > 0.6 and np.abs(q - f)[inside].max() <= 0.51 + 1e-9


@pytest.mark.parametrize("case", list(BROADCASTS))
def test_prelu_c_equals_ref(case, mode):
    rounding, clib = mode
    shape1, shape2 = BROADCASTS[case]
    rng = np.random.default_rng([list(BROADCASTS).index(case), 99])
    for _ in range(4):
        s_in, s_alpha = 10 ** rng.uniform(-3, 0), 10 ** rng.uniform(-3, 0)
        s_out = s_in * 10 ** rng.uniform(-1, 1)
        zp_in, zp_out = (int(z) for z in rng.integers(-128, 128, 2))
        p = prelu_params(s_in, zp_in, s_alpha, int(rng.integers(-5, 5)), s_out, zp_out,
                         rounding=rounding)
        x = rng.integers(-128, 128, shape1).astype(np.int8)
        alpha = rng.integers(-128, 128, shape2).astype(np.int8)
        status, out = _call(clib, "mq_prelu_s8", "mq_prelu_params *", p, x, alpha)
        assert status == MQ_OK
        expected = minmax.prelu(p, x, alpha, rounding)
        assert_exact(out, expected, f"prelu {case}")
        assert x.size < 4 or len(np.unique(expected)) > 2, "degenerate case"


def test_prelu_close_to_float():
    """Both sides within one output step of float PRelu (negative slopes too)."""
    rng = np.random.default_rng(2)
    slope = np.array([0.25, -0.5, 1.5, 0.0, 0.01, 2.0])
    s_in, zp_in, s_out, zp_out = 0.03, -5, 0.05, 20
    s_alpha = float(np.float32(np.abs(slope).max() / 127))
    alpha = np.round(slope / s_alpha).astype(np.int8)
    p = prelu_params(s_in, zp_in, s_alpha, 0, s_out, zp_out)
    x = rng.integers(-128, 128, (200, 6)).astype(np.int8)
    q = minmax.prelu(p, x, alpha)
    xf = s_in * (x.astype(np.float64) - zp_in)
    f = np.where(xf >= 0, xf, xf * slope) / s_out + zp_out
    inside = (f > -128) & (f < 127)
    assert inside.mean() > 0.8
    assert np.abs(q - f)[inside].max() <= 1.0, "slope int8 rounding is at most half a step"


def test_prelu_and_max_bad_params(clib):
    x, a = np.zeros((4,), np.int8), np.zeros((4,), np.int8)
    p = prelu_params(0.1, 0, 0.01, 0, 0.1, 0)
    for what, q in {"shift_1": replace(p, output_shift_1=23),
                    "shift_2": replace(p, output_shift_2=15),
                    "offset": replace(p, input_offset=300),
                    "act": replace(p, act_min=5, act_max=4)}.items():
        assert _call(clib, "mq_prelu_s8", "mq_prelu_params *", q, x, a)[0] == MQ_ERR_ARG, what
    ap = scheme.add_params(0.1, 0, 0.1, 0, 0.1, 0)
    bad = replace(ap, input1_shift=1)
    assert _call(clib, "mq_maximum_s8", "mq_add_params *", bad, x, a)[0] == MQ_ERR_ARG
    assert _call(clib, "mq_minimum_s8", "mq_add_params *", bad, x, a)[0] == MQ_ERR_ARG
    with pytest.raises(MicroqError, match="too small"):
        prelu_params(1.0, 0, 1.0, 0, 1e-6, 0)


# ---- reductions --------------------------------------------------------------------------------


def c_reduce(clib, kind: str, p: ReduceParams, x: np.ndarray) -> tuple[int, np.ndarray]:
    ffi, lib = clib
    rank = x.ndim
    pad = 6 - rank
    fields = {"rank": rank, "in_shape": list(x.shape) + [1] * pad,
              "reduce": [int(d in p.axes) for d in range(rank)] + [0] * pad}
    out = np.full(tuple(1 if d in p.axes else s for d, s in enumerate(x.shape)), 99, np.int8)
    status = getattr(lib, f"mq_reduce_{kind}_s8")(
        ffi.new("mq_reduce_params *", fields),
        ffi.from_buffer("int8_t[]", np.ascontiguousarray(x)), ffi.from_buffer("int8_t[]", out))
    return status, out


REDUCE_SHAPES = [(1, 5, 6, 7), (1, 9), (2, 3, 4), (1, 2, 3, 2, 3), (1, 1, 4, 1, 2, 3)]


@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("shape", REDUCE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_reduce_every_axis_subset_c_equals_ref(clib, kind, shape):
    """Every non-empty subset of axes (keepdims shape), values over the whole int8 range."""
    rng = np.random.default_rng(len(shape) * 7 + len(kind))
    x = rng.integers(-128, 128, shape).astype(np.int8)
    for k in range(1, len(shape) + 1):
        for axes in combinations(range(len(shape)), k):
            p = ReduceParams(axes)
            status, out = c_reduce(clib, kind, p, x)
            assert status == MQ_OK
            expected = getattr(reduce, f"reduce_{kind}")(p, x)
            assert_exact(out, expected, f"reduce_{kind} {shape} axes {axes}")
            assert_exact(expected, getattr(x, kind)(axis=axes, keepdims=True), "numpy")


def test_reduce_extremes_and_bad_args(clib):
    x = np.full((1, 3, 4), -128, np.int8)
    assert_exact(c_reduce(clib, "max", ReduceParams((1, 2)), x)[1], x[:, :1, :1], "all -128")
    x = np.full((1, 3, 4), 127, np.int8)
    assert_exact(c_reduce(clib, "min", ReduceParams((2,)), x)[1], x[:, :, :1], "all 127")
    ffi, lib = clib
    buf = np.zeros(8, np.int8)
    for fields in ({"rank": 0}, {"rank": 7}, {"rank": 2, "in_shape": [2, 0]},
                   {"rank": 2, "in_shape": [2, 4], "reduce": [0, 2]}):
        st = lib.mq_reduce_max_s8(ffi.new("mq_reduce_params *", fields),
                                  ffi.from_buffer("int8_t[]", buf),
                                  ffi.from_buffer("int8_t[]", buf))
        assert st == MQ_ERR_ARG, fields


def c_argmax(clib, p: ArgMaxParams, x: np.ndarray) -> tuple[int, np.ndarray]:
    ffi, lib = clib
    axis = p.axis
    fields = {"outer": int(np.prod(x.shape[:axis])), "axis_size": x.shape[axis],
              "inner": int(np.prod(x.shape[axis + 1 :])),
              "select_last_index": p.select_last_index}
    out = np.full(tuple(1 if d == axis else s for d, s in enumerate(x.shape)), 99, np.int8)
    status = lib.mq_argmax_s8(ffi.new("mq_argmax_params *", fields),
                              ffi.from_buffer("int8_t[]", np.ascontiguousarray(x)),
                              ffi.from_buffer("int8_t[]", out))
    return status, out


@pytest.mark.parametrize("last", [0, 1], ids=["first", "last"])
@pytest.mark.parametrize("seed", range(8))
def test_argmax_c_equals_ref(clib, seed, last):
    """Random shapes and axes; narrow values so that ties are frequent (select_last_index)."""
    rng = np.random.default_rng(300 + seed)
    shape = tuple(int(d) for d in rng.integers(1, 7, int(rng.integers(2, 5))))
    axis = int(rng.integers(0, len(shape)))
    x = rng.integers(-3, 3, shape).astype(np.int8)
    p = ArgMaxParams(axis, last)
    status, out = c_argmax(clib, p, x)
    assert status == MQ_OK
    expected = reduce.argmax(p, x)
    assert_exact(out, expected, f"argmax {shape} axis {axis} last {last}")
    # against numpy: the index holds the maximum, and is the first / last such
    vals = np.take_along_axis(x, expected.astype(np.int64), axis=axis)
    assert_exact(vals, x.max(axis=axis, keepdims=True), "argmax picks a maximum")


def test_argmax_axis_128_and_bad_args(clib):
    x = np.zeros((2, 128), np.int8)
    x[0, 127], x[1, 5] = 1, 1
    status, out = c_argmax(clib, ArgMaxParams(1, 0), x)
    assert status == MQ_OK and out.reshape(-1).tolist() == [127, 5]
    ffi, lib = clib
    buf = np.zeros(300, np.int8)
    for fields in ({"outer": 1, "axis_size": 129, "inner": 1},
                   {"outer": 1, "axis_size": 0, "inner": 1},
                   {"outer": 1, "axis_size": 4, "inner": 1, "select_last_index": 2}):
        st = lib.mq_argmax_s8(ffi.new("mq_argmax_params *", fields),
                              ffi.from_buffer("int8_t[]", buf), ffi.from_buffer("int8_t[]", buf))
        assert st == MQ_ERR_ARG, fields
