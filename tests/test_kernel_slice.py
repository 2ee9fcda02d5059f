"""Strided slice: C == numpy reference == python slicing, over ranks 1..6 with positive and
negative steps; ONNX Slice / Gather params (scheme) against numpy semantics."""

from __future__ import annotations

import numpy as np
import pytest
from cabi import Abi, out8
from cmsis_cases import assert_exact

from microq.errors import MicroqError
from microq.qir import SliceParams
from microq.quant import scheme
from microq.ref.slice import slice_count, strided_slice

MQ_OK, MQ_ERR_ARG = 0, 1


def c_slice(clib, p: SliceParams, x: np.ndarray) -> tuple[int, np.ndarray]:
    """mq_slice_s8; returns (status, output shaped by the slice counts)."""
    abi = Abi(clib)
    x = np.ascontiguousarray(x, np.int8)
    rank = len(p.begin)
    counts = [slice_count(b, e, s) for b, e, s in zip(p.begin, p.end, p.step)]
    out = out8(counts)
    guard = out8(out.size + 16)  # out, then 16 bytes nothing may touch
    cp = abi.ffi.new("mq_slice_params *")
    cp.rank = rank
    for d in range(rank):
        cp.begin[d], cp.end[d], cp.step[d] = p.begin[d], p.end[d], p.step[d]
    status = abi.lib.mq_slice_s8(cp, abi.i32(x.shape), abi.i8(x), abi.i8(guard))
    assert (guard[out.size :] == 0x5A).all(), "mq_slice_s8 wrote past its output"
    return status, guard[: out.size].reshape(out.shape)


def python_slices(p: SliceParams) -> tuple[slice, ...]:
    """The same slice in python syntax: end = -1 with a negative step is written None."""
    return tuple(
        slice(b, None if (e < 0 and s < 0) else e, s) for b, e, s in zip(p.begin, p.end, p.step)
    )


SLICE_CASES = {
    "split_heads_last_axis": ((1, 7, 24), SliceParams((0, 0, 8), (1, 7, 16), (1, 1, 1))),
    "gather_one_token": ((1, 7, 16), SliceParams((0, 0, 0), (1, 1, 16), (1, 1, 1))),
    "gather_head_rank4": ((1, 4, 7, 8), SliceParams((0, 3, 0, 0), (1, 4, 7, 8), (1, 1, 1, 1))),
    "stride2": ((5, 9), SliceParams((1, 0), (5, 9), (2, 3))),
    "reverse_all": ((4, 6), SliceParams((3, 5), (-1, -1), (-1, -1))),
    "reverse_step2": ((11,), SliceParams((10,), (-1,), (-2,))),
    "negative_step_partial": ((3, 10), SliceParams((2, 8), (0, 1), (-1, -3))),
    "rank6": (
        (2, 3, 2, 3, 2, 5),
        SliceParams((1, 0, 0, 1, 0, 4), (2, 3, 2, 3, 1, 0), (1, 2, 1, 1, 1, -2)),
    ),
    "empty": ((3, 4), SliceParams((0, 2), (3, 2), (1, 1))),
    "whole": ((3, 4, 5), SliceParams((0, 0, 0), (3, 4, 5), (1, 1, 1))),
}


@pytest.mark.parametrize("name", SLICE_CASES)
def test_slice_named(clib, name):
    shape, p = SLICE_CASES[name]
    x = np.random.default_rng(len(name)).integers(-128, 128, shape).astype(np.int8)
    expected = x[python_slices(p)]
    assert_exact(strided_slice(p, x), expected, f"numpy ref {name}")
    status, out = c_slice(clib, p, x)
    assert status == MQ_OK
    assert_exact(out, expected, f"C {name}")


@pytest.mark.parametrize("seed", range(40), ids=lambda s: f"seed{s}")
def test_slice_random(clib, seed):
    rng = np.random.default_rng(3000 + seed)
    rank = int(rng.integers(1, 7))
    shape = tuple(int(v) for v in rng.integers(1, 7, rank))
    x = rng.integers(-128, 128, shape).astype(np.int8)
    begin, end, step = [], [], []
    for dim in shape:
        s = int(rng.choice([1, 1, 2, 3, -1, -2]))
        if s > 0:
            b = int(rng.integers(0, dim))
            e = int(rng.integers(b, dim + 1))
        else:
            b = int(rng.integers(0, dim))
            e = int(rng.integers(-1, b + 1))
        begin.append(b), end.append(e), step.append(s)
    p = SliceParams(tuple(begin), tuple(end), tuple(step))
    expected = x[python_slices(p)]
    assert_exact(strided_slice(p, x), expected, f"numpy ref seed {seed} {p}")
    status, out = c_slice(clib, p, x)
    assert status == MQ_OK
    assert_exact(out, expected, f"C seed {seed} {shape} {p}")


@pytest.mark.parametrize("seed", range(20), ids=lambda s: f"seed{s}")
def test_onnx_slice_params_match_numpy(seed):
    """ONNX Slice with negative, out-of-range and INT64_MAX bounds == python slicing, except
    where the spec differs: with a negative step, a start below -dim clamps to 0 (python: an
    empty slice)."""
    rng = np.random.default_rng(4000 + seed)
    shape = tuple(int(v) for v in rng.integers(1, 8, int(rng.integers(1, 5))))
    x = rng.integers(-128, 128, shape).astype(np.int8)
    axes = sorted(rng.choice(len(shape), int(rng.integers(1, len(shape) + 1)), replace=False))
    bounds = [-(2**63), -20, -3, -1, 0, 1, 2, 5, 20, 2**63 - 1]
    starts = [int(rng.choice(bounds)) for _ in axes]
    ends = [int(rng.choice(bounds)) for _ in axes]
    steps = [int(rng.choice([1, 2, -1, -3])) for _ in axes]
    neg_axes = [int(a) - len(shape) if rng.random() < 0.3 else int(a) for a in axes]
    p = scheme.slice_params(shape, starts, ends, neg_axes, steps)
    py = [slice(None)] * len(shape)
    for a, s0, e0, st in zip(axes, starts, ends, steps):
        py[a] = slice(0 if (st < 0 and s0 < -shape[a]) else s0, e0, st)
    assert_exact(strided_slice(p, x), x[tuple(py)], f"seed {seed} {shape} {starts} {ends}")


def test_gather_params():
    x = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.int8)
    for axis, index in ((0, 1), (1, -1), (-1, 2)):
        p = scheme.gather_params(x.shape, axis, index)
        want = np.expand_dims(np.take(x, index, axis=axis), axis)
        assert_exact(strided_slice(p, x), want, f"gather axis {axis} index {index}")
    with pytest.raises(MicroqError, match="out of range"):
        scheme.gather_params(x.shape, 1, 3)
    with pytest.raises(MicroqError, match="invalid"):
        scheme.slice_params(x.shape, [0], [1], [0], [0])


def test_slice_bad_args(clib):
    x = np.zeros((3, 4), np.int8)
    bad = {
        "begin_past_end_of_axis": SliceParams((3, 0), (4, 4), (1, 1)),
        "negative_begin": SliceParams((-1, 0), (2, 4), (1, 1)),
        "end_past_axis": SliceParams((0, 0), (3, 5), (1, 1)),
        "reverse_from_past_axis": SliceParams((0, 4), (3, -1), (1, -1)),
        "reverse_below_zero": SliceParams((0, 2), (3, -3), (1, -1)),
    }
    for what, p in bad.items():
        assert c_slice(clib, p, x)[0] == MQ_ERR_ARG, what
        with pytest.raises(ValueError):
            strided_slice(p, x)
    ffi, lib = clib
    cp = ffi.new("mq_slice_params *", {"rank": 2, "begin": [0, 0], "end": [3, 4], "step": [1, 0]})
    shape = ffi.new("int32_t[]", [3, 4])
    xin = ffi.from_buffer("int8_t[]", x)
    buf = ffi.from_buffer("int8_t[]", np.zeros(16, np.int8))
    assert lib.mq_slice_s8(cp, shape, xin, buf) == MQ_ERR_ARG, "step 0"
    cp.step[1] = 1
    assert lib.mq_slice_s8(cp, shape, xin, buf) == MQ_OK
    cp.rank = 7
    assert lib.mq_slice_s8(cp, shape, xin, buf) == MQ_ERR_ARG, "rank 7"
