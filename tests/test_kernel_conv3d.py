"""Conv3D kernel: C == numpy reference bit for bit on randomized shapes, strides, dilations,
pads and groups (incl. depthwise), both rounding modes; with a depth of one it equals the conv2d
reference; bad arguments refused."""

from __future__ import annotations

import numpy as np
import pytest
from cabi import Abi, out8
from cmsis_cases import assert_exact

from microq.qir import Conv3DParams, ConvParams
from microq.ref.conv import conv2d
from microq.ref.conv3d import conv3d, out_size


@pytest.fixture(params=["double", "single"])
def rt(request):
    ffi, lib = request.getfixturevalue("clib" if request.param == "double" else "clib_single")
    return ffi, lib, request.param


def run_c(ffi, lib, p: Conv3DParams, x, out_dhw, dims=None):
    abi = Abi((ffi, lib))
    cp, quant, bias = abi.weighted(p)
    fs = p.filter
    out = out8((x.shape[0], *out_dhw, fs.shape[0]))
    d = dims or {}
    status = lib.mq_conv3d_s8(
        cp, quant, ffi.new("mq_dims5 *", d.get("input", x.shape)), abi.i8(x),
        ffi.new("mq_dims5 *", d.get("filter", fs.shape)), abi.i8(fs), bias,
        ffi.new("mq_dims5 *", d.get("output", out.shape)), abi.i8(out))
    return status, out


def random_case(seed: int, flat: bool = False):
    """flat: depth 1 with a 1-deep kernel (a conv2d in disguise)."""
    rng = np.random.default_rng(seed)
    groups, cin_g = int(rng.choice([1, 1, 2])), int(rng.integers(1, 4))
    cout_g = int(rng.integers(1, 10))  # >= 4 takes the four-filter path
    if rng.random() < 0.25:  # depthwise
        groups, cin_g, cout_g = int(rng.integers(2, 5)), 1, int(rng.integers(1, 3))
    size = [1 if flat else int(rng.integers(1, 6)), int(rng.integers(1, 6)),
            int(rng.integers(1, 6))]
    k, s, dl, pb, pe, out = [], [], [], [], [], []
    for i in range(3):
        ki = 1 if flat and i == 0 else int(rng.integers(1, 4))
        di = 1 if ki == 1 else int(rng.integers(1, 3))
        span = (ki - 1) * di + 1
        b = int(rng.integers(0, span))
        e = max(0, span - size[i] - b) + int(rng.integers(0, span))
        si = int(rng.integers(1, 3))
        k.append(ki), dl.append(di), s.append(si), pb.append(b), pe.append(e)
        out.append(out_size(size[i], ki, si, di, b, e))
    cout = groups * cout_g
    p = Conv3DParams(
        stride_d=s[0], stride_h=s[1], stride_w=s[2], pad_front=pb[0], pad_top=pb[1],
        pad_left=pb[2], dilation_d=dl[0], dilation_h=dl[1], dilation_w=dl[2],
        input_offset=int(rng.integers(-127, 129)), output_offset=int(rng.integers(-128, 128)),
        act_min=int(rng.integers(-128, -60)), act_max=int(rng.integers(60, 128)),
        multiplier=rng.integers(2**30, 2**31 - 1, cout).astype(np.int32),
        shift=rng.integers(-11, -7, cout).astype(np.int32),
        filter=rng.integers(-127, 128, (cout, *k, cin_g)).astype(np.int8),
        bias=rng.integers(-5000, 5000, cout).astype(np.int32) if rng.random() < 0.8 else None)
    x = rng.integers(-128, 128, (int(rng.integers(1, 3)), *size, groups * cin_g)).astype(np.int8)
    return p, x, tuple(out)


@pytest.mark.parametrize("seed", range(20))
def test_conv3d_c_equals_ref(rt, seed):
    ffi, lib, rounding = rt
    p, x, out = random_case(seed)
    status, got = run_c(ffi, lib, p, x, out)
    assert status == 0
    assert_exact(got, conv3d(p, x, out, rounding), f"seed {seed}")


@pytest.mark.parametrize("seed", range(6))
def test_depth_one_equals_conv2d_reference(seed):
    p, x, out = random_case(200 + seed, flat=True)
    p2 = ConvParams(stride_h=p.stride_h, stride_w=p.stride_w, pad_top=p.pad_top,
                    pad_left=p.pad_left, dilation_h=p.dilation_h, dilation_w=p.dilation_w,
                    input_offset=p.input_offset, output_offset=p.output_offset,
                    act_min=p.act_min, act_max=p.act_max, ch_mult=1, multiplier=p.multiplier,
                    shift=p.shift, filter=p.filter[:, 0], bias=p.bias)
    want = conv2d(p2, x[:, 0], out[1:])
    assert_exact(conv3d(p, x, out)[:, 0], want, f"seed {seed}")


@pytest.mark.parametrize("bad", ["groups", "stride", "pad", "act", "out_c"])
def test_bad_args_are_refused(clib, bad):
    ffi, lib = clib
    p, x, out = random_case(3)
    dims = {}
    if bad == "groups":
        dims["filter"] = (p.filter.shape[0], *p.filter.shape[1:4], x.shape[4] + 1)
    elif bad == "out_c":
        dims["output"] = (x.shape[0], *out, p.filter.shape[0] + 1)
    else:
        field = {"stride": ("stride_d", 0), "pad": ("pad_front", -1), "act": ("act_min", 100)}
        name, value = field[bad]
        p = Conv3DParams(**{**p.__dict__, name: value,
                            "act_max": 99 if bad == "act" else p.act_max})
    status, got = run_c(ffi, lib, p, x, out, dims)
    assert status == 1 and (got == 0x5A).all()
