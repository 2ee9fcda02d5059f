"""ONNX Abs's kernel mq_abs_s8: C == reference (ref.elementwise.abs_) bit for bit on randomized
parameters in both rounding modes; bad parameters refused. (The model-level test: test_abs.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from cabi import Abi, out8

from microq.qir import RequantizeParams
from microq.ref import elementwise as ref


def _c_abs(clib, p: RequantizeParams, x: np.ndarray) -> np.ndarray:
    abi = Abi(clib)
    out = out8(x.shape)
    status = abi.lib.mq_abs_s8(abi.struct(p), x.size, abi.i8(x), abi.i8(out))
    assert status == abi.lib.MQ_OK
    return out


@pytest.mark.parametrize("rounding,fixture", [("double", "clib"), ("single", "clib_single")])
def test_abs_kernel_equals_reference(request, rounding, fixture):
    clib = request.getfixturevalue(fixture)
    rng = np.random.default_rng(14)
    for _ in range(40):
        lo, hi = sorted(int(v) for v in rng.integers(-128, 128, 2))
        p = RequantizeParams(input_offset=int(rng.integers(-127, 128)),
                             output_offset=int(rng.integers(-128, 128)),
                             multiplier=int(rng.integers(2**30, 2**31 - 1)),
                             shift=int(rng.integers(-10, 3)), act_min=lo, act_max=hi)
        x = rng.integers(-128, 128, int(rng.integers(1, 300))).astype(np.int8)
        want = ref.abs_(p, x, rounding)
        assert np.array_equal(_c_abs(clib, p, x), want), p


def test_abs_kernel_refuses_bad_params(clib):
    abi = Abi(clib)
    x = np.zeros(4, np.int8)
    p = RequantizeParams(0, 0, 2**30, 23, -128, 127)  # shift above 22 could overflow
    assert abi.lib.mq_abs_s8(abi.struct(p), x.size, abi.i8(x), abi.i8(x)) == abi.lib.MQ_ERR_ARG
