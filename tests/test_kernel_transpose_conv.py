"""Transposed conv kernel: C == numpy reference bit for bit on randomized shapes, strides,
dilations, pads, output padding and groups (incl. depthwise), both rounding modes; the
reference against a literal scatter loop; bad arguments refused."""

from __future__ import annotations

import numpy as np
import pytest
from cabi import Abi, out8
from cmsis_cases import assert_exact

from microq.qir import ConvParams
from microq.ref.arith import clamp, mbqm
from microq.ref.transpose_conv import out_size, transpose_conv2d


@pytest.fixture(params=["double", "single"])
def rt(request):
    ffi, lib = request.getfixturevalue("clib" if request.param == "double" else "clib_single")
    return ffi, lib, request.param


def run_c(ffi, lib, p: ConvParams, x, out_hw, dims=None):
    abi = Abi((ffi, lib))
    cp, quant, bias = abi.weighted(p)
    out = out8((x.shape[0], *out_hw, p.filter.shape[0]))
    d = dims or {}
    status = lib.mq_transpose_conv2d_s8(
        cp, quant, abi.dims(d.get("input", x.shape)), abi.i8(x),
        abi.dims(d.get("filter", p.filter.shape)), abi.i8(p.filter), bias,
        abi.dims(d.get("output", out.shape)), abi.i8(out))
    return status, out


def random_case(seed: int, one_d: bool = False):
    rng = np.random.default_rng(seed)
    groups = int(rng.choice([1, 1, 2, 3]))
    cin_g, cout_g = int(rng.integers(1, 4)), int(rng.integers(1, 10))  # >= 4: 1x4 path
    if rng.random() < 0.25:  # depthwise: one input and one output channel per group
        groups, cin_g, cout_g = int(rng.integers(2, 6)), 1, 1
    h, w = (1 if one_d else int(rng.integers(1, 6))), int(rng.integers(1, 7))
    k = (1 if one_d else int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    s = (1 if one_d else int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    d = (1 if one_d else int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pads, out_hw = [], []
    for i, size in enumerate((h, w)):
        full = out_size(size, k[i], s[i], d[i], 0, 0)
        pb = int(rng.integers(0, min(3, full)))
        pe = int(rng.integers(-(s[i] - 1), min(3, full - pb)))  # < 0: output_padding
        pads.append((pb, pe))
        out_hw.append(out_size(size, k[i], s[i], d[i], pb, pe))
    cout = groups * cout_g
    shift = rng.integers(-10, -6, cout)
    p = ConvParams(
        stride_h=s[0], stride_w=s[1], pad_top=pads[0][0], pad_left=pads[1][0],
        dilation_h=d[0], dilation_w=d[1], input_offset=int(rng.integers(-127, 129)),
        output_offset=int(rng.integers(-128, 128)), act_min=int(rng.integers(-128, -60)),
        act_max=int(rng.integers(60, 128)), ch_mult=1,
        multiplier=rng.integers(2**30, 2**31 - 1, cout).astype(np.int32),
        shift=shift.astype(np.int32),
        filter=rng.integers(-127, 128, (cout, *k, cin_g)).astype(np.int8),
        bias=rng.integers(-5000, 5000, cout).astype(np.int32) if rng.random() < 0.8 else None)
    x = rng.integers(-128, 128, (int(rng.integers(1, 3)), h, w, groups * cin_g)).astype(np.int8)
    return p, x, tuple(out_hw)


@pytest.mark.parametrize("seed", range(24))
def test_transpose_conv_c_equals_ref(rt, seed):
    ffi, lib, rounding = rt
    p, x, out_hw = random_case(seed, one_d=seed % 4 == 3)
    status, got = run_c(ffi, lib, p, x, out_hw)
    assert status == 0
    assert_exact(got, transpose_conv2d(p, x, out_hw, rounding), f"seed {seed}")


@pytest.mark.parametrize("seed", range(4))
def test_ref_equals_literal_scatter(seed):
    p, x, (oh, ow) = random_case(100 + seed)
    n, h, w, cin = x.shape
    cout, kh, kw, f_c = p.filter.shape
    og = cout // (cin // f_c)
    acc = np.zeros((n, oh, ow, cout), np.int64) + (0 if p.bias is None else p.bias)
    for b in range(n):
        for iy in range(h):
            for ix in range(w):
                for ky in range(kh):
                    for kx in range(kw):
                        oy = iy * p.stride_h - p.pad_top + ky * p.dilation_h
                        ox = ix * p.stride_w - p.pad_left + kx * p.dilation_w
                        if not (0 <= oy < oh and 0 <= ox < ow):
                            continue
                        for oc in range(cout):
                            xs = x[b, iy, ix, (oc // og) * f_c:(oc // og + 1) * f_c]
                            acc[b, oy, ox, oc] += int(np.dot(xs.astype(np.int64) + p.input_offset,
                                                             p.filter[oc, ky, kx].astype(np.int64)))
    want = clamp(mbqm(acc, p.multiplier, p.shift) + p.output_offset, p.act_min, p.act_max)
    assert_exact(transpose_conv2d(p, x, (oh, ow)), want.astype(np.int8), f"seed {seed}")


@pytest.mark.parametrize("bad", ["groups", "stride", "pad", "act", "out_c"])
def test_bad_args_are_refused(clib, bad):
    ffi, lib = clib
    p, x, out_hw = random_case(7)
    dims = {}
    if bad == "groups":
        dims["filter"] = (p.filter.shape[0], *p.filter.shape[1:3], x.shape[3] + 1)
    elif bad == "out_c":
        dims["output"] = (x.shape[0], *out_hw, p.filter.shape[0] + 1)
    else:
        field = {"stride": ("stride_h", 0), "pad": ("pad_left", -1), "act": ("act_min", 100)}[bad]
        p = ConvParams(**{**p.__dict__, field[0]: field[1], "act_max": 99 if bad == "act"
                          else p.act_max})
    status, out = run_c(ffi, lib, p, x, out_hw, dims)
    assert status == 1 and (out == 0x5A).all()
