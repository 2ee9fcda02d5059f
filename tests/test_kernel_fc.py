"""fully connected: C kernel == numpy reference == CMSIS-NN golden outputs."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from cabi import Abi, out8
from cmsis_cases import assert_exact, family_dir, list_cases, load_case
from microq.qir import FCParams
from microq.ref.fc import fully_connected

MQ_OK, MQ_ERR_ARG = 0, 1


@pytest.fixture(params=["double", "single"])
def rt(request):
    """(ffi, lib, rounding): the runtime built for one rounding mode and its reference name."""
    ffi, lib = request.getfixturevalue("clib" if request.param == "double" else "clib_single")
    return ffi, lib, request.param


def run_c(ffi, lib, p: FCParams, x: np.ndarray, dims=None):
    """Call mq_fully_connected_s8 on x [rows, K]; returns (status, int8 [rows, out])."""
    rows, depth = x.shape
    out_c = p.filter.shape[0]
    abi = Abi((ffi, lib))
    cp, quant, bias = abi.weighted(p)
    out = out8((rows, out_c))
    d = dims or {}
    status = lib.mq_fully_connected_s8(
        cp, quant, abi.dims(d.get("input", (rows, 1, 1, depth))), abi.i8(x),
        abi.dims(d.get("filter", (out_c, 1, 1, depth))), abi.i8(p.filter), bias,
        abi.dims(d.get("output", (rows, 1, 1, out_c))), abi.i8(out))
    return status, out


# ---- conformance: CMSIS-NN golden vectors --------------------------------------------------


def cmsis_fc(name: str):
    """(FCParams, input [rows, K], output_ref) of one fully_connected/ case."""
    a, cfg = load_case("fully_connected", name)
    rows, depth, out_c = cfg["INPUT_BATCHES"], cfg["ACCUMULATION_DEPTH"], cfg["OUT_CH"]
    if "output_mult" in a:
        mult, shift = a["output_mult"], a["output_shift"]
    else:  # per-tensor: the same multiplier for every output channel
        mult = np.full(out_c, cfg["OUTPUT_MULTIPLIER"], np.int32)
        shift = np.full(out_c, cfg["OUTPUT_SHIFT"], np.int32)
    # Only fully_connected_w_zp passes its FILTER_OFFSET; the other tests pass 0.
    filter_offset = cfg["FILTER_OFFSET"] if name == "fully_connected_w_zp" else 0
    # NULL arrays have length 0; an all-zero bias goes in as NULL (both must agree).
    bias = a["biases"] if a["biases"].size and a["biases"].any() else None
    p = FCParams(
        input_offset=cfg["INPUT_OFFSET"],
        filter_offset=filter_offset,
        output_offset=cfg["OUTPUT_OFFSET"],
        act_min=cfg["OUT_ACTIVATION_MIN"],
        act_max=cfg["OUT_ACTIVATION_MAX"],
        multiplier=mult,
        shift=shift,
        filter=a["weights"].reshape(out_c, depth),
        bias=bias,
    )
    return p, a["input"].reshape(rows, depth), a["output_ref"].reshape(rows, out_c)


def test_conformance_cases_present():
    family_dir("fully_connected")
    assert len(list_cases("fully_connected")) == 7


@pytest.mark.parametrize("name", list_cases("fully_connected"))
def test_fc_cmsis_conformance(clib, clib_single, name):
    p, x, expected = cmsis_fc(name)
    assert_exact(fully_connected(p, x), expected, f"numpy ref, fully_connected/{name}")
    status, out = run_c(*clib, p, x)
    assert status == MQ_OK
    assert_exact(out, expected, f"C, fully_connected/{name}")
    status, out = run_c(*clib_single, p, x)  # same inputs, single rounding: C == reference
    assert status == MQ_OK
    assert_exact(out, fully_connected(p, x, "single"), f"C single, fully_connected/{name}")


# ---- randomized: C == numpy reference ------------------------------------------------------


def make_case(
    seed: int,
    *,
    rows=2,
    depth=16,
    out_c=5,
    in_off=None,
    filter_offset=0,
    out_off=None,
    act=(-128, 127),
    shift=None,
    mult=None,
    bias=True,
    x_spread=None,
    w_max=127,
):
    rng = np.random.default_rng(seed)
    in_off = int(rng.integers(-127, 129)) if in_off is None else in_off
    out_off = int(rng.integers(-128, 128)) if out_off is None else out_off
    if x_spread is None:
        x = rng.integers(-128, 128, size=(rows, depth))
    else:  # values near the zero point: small accumulators
        x = np.clip(-in_off + rng.integers(-x_spread, x_spread + 1, size=(rows, depth)), -128, 127)
    w = rng.integers(-w_max, w_max + 1, size=(out_c, depth))
    if shift is None:  # aim the outputs at the int8 range
        shift = round(-6.5 - 0.5 * math.log2(depth)) + rng.integers(-1, 2, size=out_c)
    elif isinstance(shift, tuple):
        shift = rng.integers(shift[0], shift[1] + 1, size=out_c)
    mult = rng.integers(2**30, 2**31, size=out_c) if mult is None else mult
    if bias is True:
        bias = rng.integers(-(2**14), 2**14, size=out_c).astype(np.int32)
    elif isinstance(bias, str):  # "huge": tiny multipliers still round some outputs to +-1
        bias = rng.integers(-(2**31) + 2**20, 2**31 - 2**20, size=out_c).astype(np.int32)
    p = FCParams(
        input_offset=in_off,
        filter_offset=filter_offset,
        output_offset=out_off,
        act_min=act[0],
        act_max=act[1],
        multiplier=np.broadcast_to(np.asarray(mult, np.int32), (out_c,)).copy(),
        shift=np.broadcast_to(np.asarray(shift, np.int32), (out_c,)).copy(),
        filter=w.astype(np.int8),
        bias=bias,
    )
    return p, x.astype(np.int8)


FC_CASES = {
    "single_row": dict(rows=1, depth=10, out_c=4),
    "batch4_odd_sizes": dict(rows=4, depth=37, out_c=11),
    "depth1": dict(rows=3, depth=1, out_c=3, shift=-1),
    "deep_1024": dict(rows=1, depth=1024, out_c=3),
    "null_bias": dict(bias=None),
    "filter_offset_minus15": dict(filter_offset=-15, w_max=100),
    "filter_offset_plus127": dict(filter_offset=127, w_max=127),
    "input_offset_minus127": dict(in_off=-127),
    "input_offset_zero": dict(in_off=0, out_off=-100),
    "relu_narrow_act": dict(act=(0, 6)),
    "saturate_both_ends": dict(rows=3, shift=0),
    "multiplier_extremes": dict(out_c=4, mult=[2**30, 2**31 - 1, 2**30, 2**31 - 1]),
    "shift_minus31": dict(out_c=8, shift=-31, bias="huge"),
    "shift_minus31_to_minus20": dict(out_c=8, shift=(-31, -20), bias="huge"),
    "positive_shift_mixed": dict(depth=4, out_c=8, shift=(1, 3), x_spread=2, w_max=1, bias=None),
}


@pytest.mark.parametrize("name", FC_CASES)
def test_fc_named(rt, name):
    ffi, lib, rounding = rt
    p, x = make_case(len(name), **FC_CASES[name])
    expected = fully_connected(p, x, rounding)
    status, out = run_c(ffi, lib, p, x)
    assert status == MQ_OK
    assert_exact(out, expected, f"fc {name} ({rounding})")
    if "saturate" in name:
        assert expected.min() == -128 and expected.max() == 127
    elif "shift_minus31" in name or "positive_shift" in name:
        assert len(np.unique(expected)) > 1


@pytest.mark.parametrize("seed", range(40), ids=lambda s: f"seed{s}")
def test_fc_random(rt, seed):
    ffi, lib, rounding = rt
    rng = np.random.default_rng(2000 + seed)
    cfg = dict(
        rows=int(rng.integers(1, 5)), depth=int(rng.integers(1, 80)), out_c=int(rng.integers(1, 20))
    )
    if rng.random() < 0.3:
        cfg["filter_offset"] = int(rng.integers(-127, 128))
    if rng.random() < 0.15:
        cfg["shift"] = (-31, 3)
    if rng.random() < 0.3:
        lo = int(rng.integers(-128, 60))
        cfg["act"] = (lo, int(rng.integers(lo, 128)))
    if rng.random() < 0.25:
        cfg["bias"] = None
    p, x = make_case(seed, **cfg)
    status, out = run_c(ffi, lib, p, x)
    assert status == MQ_OK
    assert_exact(out, fully_connected(p, x, rounding), f"fc seed {seed} {cfg} ({rounding})")


def test_fc_flattened_nhwc_input(clib):
    """input_dims [rows, h, w, c] with h*w*c = K is the same as [rows, 1, 1, K]."""
    p, x = make_case(5, rows=2, depth=24, out_c=3)
    status, out = run_c(*clib, p, x, dims={"input": (2, 2, 3, 4)})
    assert status == MQ_OK
    assert_exact(out, fully_connected(p, x), "fc flattened input")


def test_fc_bad_args(clib):
    p, x = make_case(6, rows=2, depth=8, out_c=3)
    bad = {
        "depth_mismatch": {"input": (2, 1, 1, 7)},
        "rows_mismatch": {"output": (3, 1, 1, 3)},
        "out_mismatch": {"output": (2, 1, 1, 4)},
        "zero_rows": {"input": (0, 1, 1, 8), "output": (0, 1, 1, 3)},
    }
    for what, dims in bad.items():
        assert run_c(*clib, p, x, dims=dims)[0] == MQ_ERR_ARG, what
    assert run_c(*clib, replace(p, act_min=10, act_max=0), x)[0] == MQ_ERR_ARG
