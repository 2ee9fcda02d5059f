"""Resize kernels (nearest, bilinear): C == numpy reference bit for bit on randomized shapes and
every coordinate / nearest mode; the reference against a float blend; bad tables refused."""

from __future__ import annotations

import numpy as np
import pytest
from cabi import Abi, out8
from cmsis_cases import assert_exact

from microq import ir
from microq.qir import ResizeParams
from microq.ref import resize as ref


def c_resize(clib, kernel: str, p: ResizeParams, x: np.ndarray, out_hw, expect_status=0):
    abi = Abi(clib)
    n, h, w, c = x.shape
    out = out8((n, *out_hw, c), 99)

    def taps(axis):
        return abi.ffi.new("mq_resize_taps *",
                           [abi.i32(getattr(p, f"{axis}_{t}")) for t in ("lo", "hi", "frac")])

    ty, tx = taps("y"), taps("x")
    status = getattr(abi.lib, f"mq_{kernel}_s8")(
        abi.dims((n, h, w, c)), ty, tx, abi.dims((n, *out_hw, c)), abi.i8(x), abi.i8(out))
    assert status == expect_status
    return out


def random_case(rng, mode: str):
    coord = str(rng.choice(ir.RESIZE_COORD_MODES))
    nearest = str(rng.choice(ir.RESIZE_NEAREST_MODES))
    h, w = (int(v) for v in rng.integers(1, 9, 2))
    oh, ow = (int(v) for v in rng.integers(1, 17, 2))
    scale = (oh / h, ow / w) if rng.random() < 0.5 else tuple(
        float(np.float32(rng.choice([0.5, 1.5, 2.0, 3.0, 0.75]))) for _ in range(2))
    a = ir.ResizeAttrs(mode, coord, nearest, scale, (oh, ow))
    x = rng.integers(-128, 128, (int(rng.integers(1, 3)), h, w, int(rng.integers(1, 6))))
    return a, x.astype(np.int8)


@pytest.mark.parametrize("mode, kernel", [("nearest", "resize_nearest"),
                                          ("linear", "resize_bilinear")])
@pytest.mark.parametrize("seed", range(12))
def test_resize_c_equals_ref(clib, mode, kernel, seed):
    rng = np.random.default_rng([seed, len(mode)])
    a, x = random_case(rng, mode)
    p = ref.resize_params(a, x.shape[1:3], a.size)
    fn = ref.resize_nearest if mode == "nearest" else ref.resize_bilinear
    assert_exact(c_resize(clib, kernel, p, x, a.size), fn(p, x, a.size), f"C {kernel} {a}")


@pytest.mark.parametrize("seed", range(4))
def test_bilinear_ref_is_the_rounded_float_blend(seed):
    """The Q10 taps blend like the float op to within the weight rounding (<= 0.25 LSB + 0.5)."""
    rng = np.random.default_rng(seed)
    a, x = random_case(rng, "linear")
    p = ref.resize_params(a, x.shape[1:3], a.size)
    got = ref.resize_bilinear(p, x, a.size).astype(np.float64)
    want = ref.float_resize([x.astype(np.float32)], a).astype(np.float64)
    assert np.abs(got - want).max() <= 0.5 + 255 * 2 / 2**ref.FRAC_BITS


def test_bilinear_saturated_inputs_stay_in_range(clib):
    a = ir.ResizeAttrs("linear", "half_pixel", "floor", (2.7, 3.1), (11, 13))
    for v in (-128, 127):
        x = np.full((1, 4, 4, 3), v, np.int8)
        p = ref.resize_params(a, (4, 4), a.size)
        assert_exact(c_resize(clib, "resize_bilinear", p, x, a.size), np.full((1, 11, 13, 3), v,
                                                                               np.int8), f"{v}")


def test_nearest_modes_pick_the_onnx_index():
    """Half-way source coordinates: each nearest_mode's own tie rule (ONNX spec)."""
    def idx(coord, mode, n_in, n_out, scale):
        return list(ref.nearest_index(ir.ResizeAttrs("nearest", coord, mode, (1, scale),
                                                     (1, n_out)), n_in, n_out, scale))
    # asymmetric x2: x_in = o / 2 -> .5 ties at odd o
    assert idx("asymmetric", "round_prefer_floor", 3, 6, 2.0) == [0, 0, 1, 1, 2, 2]
    assert idx("asymmetric", "round_prefer_ceil", 3, 6, 2.0) == [0, 1, 1, 2, 2, 2]
    assert idx("asymmetric", "floor", 3, 6, 2.0) == [0, 0, 1, 1, 2, 2]
    assert idx("asymmetric", "ceil", 3, 6, 2.0) == [0, 1, 1, 2, 2, 2]
    assert idx("align_corners", "floor", 3, 5, 5 / 3) == [0, 0, 1, 1, 2]
    assert idx("half_pixel", "round_prefer_floor", 4, 2, 0.5) == [0, 2]  # x_in 0.5, 2.5


@pytest.mark.parametrize("field, value", [("y_lo", 5), ("x_hi", -1), ("x_frac", 1025)])
def test_bad_tables_are_refused(clib, field, value):
    _, lib = clib
    a = ir.ResizeAttrs("linear", "half_pixel", "floor", (2.0, 2.0), (4, 4))
    x = np.zeros((1, 2, 2, 1), np.int8)
    p = ref.resize_params(a, (2, 2), (4, 4))
    getattr(p, field)[1] = value
    out = c_resize(clib, "resize_bilinear", p, x, (4, 4), expect_status=lib.MQ_ERR_ARG)
    assert (out == 99).all(), "nothing may be written before the tables are checked"
    with pytest.raises(ValueError):
        ref.resize_bilinear(p, x, (4, 4))
