"""Data movement kernels (concat, pad, transpose): C == numpy reference == numpy builtins, and
the CMSIS-NN pad/transpose golden vectors."""

from __future__ import annotations

import numpy as np
import pytest
from cabi import Abi, out8
from cmsis_cases import assert_exact, family_dir, list_cases, load_case

from microq.qir import ConcatParams, PadParams, TransposeParams
from microq.ref import tensor as ref


def c_concat(clib, p: ConcatParams, xs: list[np.ndarray]) -> np.ndarray:
    abi = Abi(clib)
    outer, axis_sizes, inner = ref.concat_dims([x.shape for x in xs], p.axis)
    out_shape = list(xs[0].shape)
    out_shape[p.axis] = sum(axis_sizes)
    out = out8(out_shape, 99)
    inputs = abi.ffi.new("const int8_t *[]", [abi.i8(x) for x in xs])
    status = abi.lib.mq_concat_s8(len(xs), inputs, abi.i32(axis_sizes), outer, inner,
                                  abi.i8(out))
    assert status == abi.lib.MQ_OK
    return out


def c_pad(clib, p: PadParams, x: np.ndarray) -> np.ndarray:
    abi = Abi(clib)
    out = out8([pre + n + post for pre, n, post in zip(p.pre, x.shape, p.post)], 99)
    status = abi.lib.mq_pad_s8(abi.dims(x.shape), abi.dims(p.pre), abi.dims(p.post),
                               p.pad_value, abi.i8(x), abi.i8(out))
    assert status == abi.lib.MQ_OK
    return out


def c_transpose(clib, p: TransposeParams, x: np.ndarray, expect_status: int = 0) -> np.ndarray:
    abi = Abi(clib)
    out = out8([x.shape[a] for a in p.perm], 99)
    status = abi.lib.mq_transpose_s8(len(p.perm), abi.i32(x.shape), abi.i32(p.perm), abi.i8(x),
                                     abi.i8(out))
    assert status == expect_status
    return out


# --- CMSIS-NN golden vectors -------------------------------------------------------------


def test_cmsis_family_counts():
    assert len(list(family_dir("pad").glob("*.json"))) == 2
    assert len(list(family_dir("transpose").glob("*.json"))) == 10


@pytest.mark.parametrize("name", list_cases("pad"))
def test_cmsis_pad(clib, name):
    arrays, cfg = load_case("pad", name)
    shape = [cfg[f"INPUT_{a}"] for a in "NHWC"]
    p = PadParams(
        tuple(cfg[f"PRE_PAD_{a}"] for a in "NHWC"),
        tuple(cfg[f"POST_PAD_{a}"] for a in "NHWC"),
        cfg["PAD_VALUE"],
    )
    x = arrays["input_tensor"].reshape(shape)
    golden = arrays["output"]
    assert_exact(ref.pad(p, x).ravel(), golden, f"ref {name}")
    assert_exact(c_pad(clib, p, x).ravel(), golden, f"C {name}")


@pytest.mark.parametrize("name", list_cases("transpose"))
def test_cmsis_transpose(clib, name):
    arrays, cfg = load_case("transpose", name)
    rank = cfg["PERM_SIZE"]
    p = TransposeParams(tuple(cfg["PERM"][:rank]))
    x = arrays["input_tensor"].reshape(cfg["IN_DIM"][:rank])
    golden = arrays["output"]
    assert_exact(ref.transpose(p, x).ravel(), golden, f"ref {name}")
    assert_exact(c_transpose(clib, p, x).ravel(), golden, f"C {name}")


# --- randomized C == reference -----------------------------------------------------------


@pytest.mark.parametrize("num_inputs", [1, 2, 3, 4])
@pytest.mark.parametrize("axis", [0, 1, 2, 3])
def test_concat_c_equals_ref(clib, axis, num_inputs):
    rng = np.random.default_rng([axis, num_inputs])
    base = list(rng.integers(1, 5, 4))
    xs = []
    for _ in range(num_inputs):
        shape = list(base)
        shape[axis] = int(rng.integers(0, 5))  # an empty input is legal
        xs.append(rng.integers(-128, 128, shape).astype(np.int8))
    p = ConcatParams(axis)
    expected = ref.concat(p, xs)
    assert_exact(expected, np.concatenate(xs, axis=axis), "ref == np.concatenate")
    assert_exact(c_concat(clib, p, xs), expected, f"C concat axis {axis}")


def test_concat_dims_negative_axis_and_mismatch():
    assert ref.concat_dims([(2, 3, 4), (2, 5, 4)], -2) == (2, [3, 5], 4)
    with pytest.raises(ValueError):
        ref.concat_dims([(2, 3, 4), (3, 3, 4)], 1)


@pytest.mark.parametrize("seed", range(8))
def test_pad_c_equals_ref(clib, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, rng.integers(1, 5, 4)).astype(np.int8)
    pre, post = (tuple(int(v) for v in rng.integers(0, 3, 4)) for _ in range(2))
    p = PadParams(pre, post, int(rng.integers(-128, 128)))
    expected = ref.pad(p, x)
    np_pad = np.pad(x, list(zip(pre, post)), constant_values=p.pad_value)
    assert_exact(expected, np_pad, "ref == np.pad")
    assert_exact(c_pad(clib, p, x), expected, f"C pad {p}")


@pytest.mark.parametrize("rank", [1, 2, 3, 4, 5, 6])
def test_transpose_c_equals_ref(clib, rank):
    rng = np.random.default_rng(rank)
    for _ in range(6):
        x = rng.integers(-128, 128, rng.integers(1, 5, rank)).astype(np.int8)
        p = TransposeParams(tuple(int(a) for a in rng.permutation(rank)))
        assert_exact(c_transpose(clib, p, x), ref.transpose(p, x), f"C transpose {p.perm}")


def test_transpose_rejects_bad_perm(clib):
    _, lib = clib
    x = np.zeros((2, 3), np.int8)
    c_transpose(clib, TransposeParams((0, 0)), x, expect_status=lib.MQ_ERR_ARG)
    with pytest.raises(ValueError):
        ref.transpose(TransposeParams((0, 0)), x)
