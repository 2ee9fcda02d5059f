"""conv2d / depthwise conv2d: C kernel == numpy reference == CMSIS-NN golden outputs."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from cabi import Abi, out8
from cmsis_cases import assert_exact, family_dir, list_cases, load_case
from microq.qir import ConvParams
from microq.ref.conv import conv2d, depthwise_conv2d

MQ_OK, MQ_ERR_ARG = 0, 1


@pytest.fixture(params=["double", "single"])
def rt(request):
    """(ffi, lib, rounding): the runtime built for one rounding mode and its reference name."""
    ffi, lib = request.getfixturevalue("clib" if request.param == "double" else "clib_single")
    return ffi, lib, request.param


def run_c(ffi, lib, p: ConvParams, x: np.ndarray, out_hw, depthwise=False, dims=None):
    """Call mq_conv2d_s8 / mq_depthwise_conv2d_s8; returns (status, int8 output)."""
    n, h, w, c = x.shape
    out_c = p.filter.shape[3] if depthwise else p.filter.shape[0]
    abi = Abi((ffi, lib))
    cp, quant, bias = abi.weighted(p)
    out = out8((n, *out_hw, out_c))
    d = dims or {}
    fn = lib.mq_depthwise_conv2d_s8 if depthwise else lib.mq_conv2d_s8
    status = fn(cp, quant, abi.dims(d.get("input", (n, h, w, c))), abi.i8(x),
                abi.dims(d.get("filter", p.filter.shape)), abi.i8(p.filter), bias,
                abi.dims(d.get("output", out.shape)), abi.i8(out))
    return status, out


# ---- conformance: CMSIS-NN golden vectors --------------------------------------------------


def cmsis_conv(family: str, name: str):
    """(ConvParams, input, out_hw, output_ref) of one conv/ or depthwise_conv/ case."""
    a, cfg = load_case(family, name)
    n, h, w, cin = cfg["INPUT_BATCHES"], cfg["INPUT_H"], cfg["INPUT_W"], cfg["IN_CH"]
    kh, kw, cout = cfg["FILTER_Y"], cfg["FILTER_X"], cfg["OUT_CH"]
    if family == "conv":
        filt = a["weights"].reshape(cout, kh, kw, cfg.get("FILTER_CH", cin))
    else:
        filt = a["weights"].reshape(1, kh, kw, cout)
    # An all-zero bias goes in as NULL, as CMSIS-NN's tests do: both must agree.
    bias = a["biases"] if a["biases"].size and a["biases"].any() else None
    p = ConvParams(
        stride_h=cfg["STRIDE_Y"],
        stride_w=cfg["STRIDE_X"],
        pad_top=cfg["PAD_Y"],
        pad_left=cfg["PAD_X"],
        dilation_h=cfg.get("DILATION_Y", 1),
        dilation_w=cfg.get("DILATION_X", 1),
        input_offset=cfg["INPUT_OFFSET"],
        output_offset=cfg["OUTPUT_OFFSET"],
        act_min=cfg["OUT_ACTIVATION_MIN"],
        act_max=cfg["OUT_ACTIVATION_MAX"],
        ch_mult=cfg.get("CH_MULT", 1),
        multiplier=a["output_mult"],
        shift=a["output_shift"],
        filter=filt,
        bias=bias,
    )
    out_hw = (cfg["OUTPUT_H"], cfg["OUTPUT_W"])
    ref = a["output_ref"].reshape(n, *out_hw, cout)
    return p, a["input"].reshape(n, h, w, cin), out_hw, ref


@pytest.mark.parametrize("family,count", [("conv", 31), ("depthwise_conv", 14)])
def test_conformance_cases_present(family, count):
    family_dir(family)
    assert len(list_cases(family)) == count


@pytest.mark.parametrize("name", list_cases("conv"))
def test_conv_cmsis_conformance(clib, name):
    p, x, out_hw, expected = cmsis_conv("conv", name)
    assert_exact(conv2d(p, x, out_hw), expected, f"numpy ref, conv/{name}")
    status, out = run_c(*clib, p, x, out_hw)
    assert status == MQ_OK
    assert_exact(out, expected, f"C, conv/{name}")


@pytest.mark.parametrize("name", list_cases("depthwise_conv"))
def test_depthwise_cmsis_conformance(clib, name):
    p, x, out_hw, expected = cmsis_conv("depthwise_conv", name)
    assert_exact(depthwise_conv2d(p, x, out_hw), expected, f"numpy ref, depthwise_conv/{name}")
    status, out = run_c(*clib, p, x, out_hw, depthwise=True)
    assert status == MQ_OK
    assert_exact(out, expected, f"C, depthwise_conv/{name}")


@pytest.mark.parametrize("family", ["conv", "depthwise_conv"])
def test_cmsis_data_single_rounding(clib_single, family):
    """The golden inputs, single rounding: C and reference must still agree bit for bit."""
    for name in list_cases(family):
        p, x, out_hw, _ = cmsis_conv(family, name)
        dw = family == "depthwise_conv"
        ref = (depthwise_conv2d if dw else conv2d)(p, x, out_hw, rounding="single")
        status, out = run_c(*clib_single, p, x, out_hw, depthwise=dw)
        assert status == MQ_OK
        assert_exact(out, ref, f"C single rounding, {family}/{name}")


# ---- randomized: C == numpy reference ------------------------------------------------------


def same_pads(size: int, k: int, stride: int, dil: int) -> tuple[int, int]:
    """TFLite SAME: the odd extra row/column goes at the bottom/right."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dil + 1 - size, 0)
    return total // 2, total - total // 2


def make_case(
    seed: int,
    depthwise=False,
    *,
    n=1,
    h=6,
    w=5,
    cin=3,
    cout=4,
    groups=1,
    ch_mult=1,
    k=(3, 3),
    stride=(1, 1),
    dil=(1, 1),
    pads=(0, 0, 0, 0),
    in_off=None,
    out_off=None,
    act=(-128, 127),
    shift=None,
    mult=None,
    bias=True,
    x_spread=None,
    w_max=127,
):
    """A conv case: pads = (top, left, bottom, right) or "same"; None means random."""
    rng = np.random.default_rng(seed)
    if pads == "same":
        (pt, pb), (pl, pr) = (
            same_pads(h, k[0], stride[0], dil[0]),
            same_pads(w, k[1], stride[1], dil[1]),
        )
    else:
        pt, pl, pb, pr = pads
    oh = (h + pt + pb - ((k[0] - 1) * dil[0] + 1)) // stride[0] + 1
    ow = (w + pl + pr - ((k[1] - 1) * dil[1] + 1)) // stride[1] + 1
    assert oh >= 1 and ow >= 1, "case has no output"
    in_off = int(rng.integers(-127, 129)) if in_off is None else in_off
    out_off = int(rng.integers(-128, 128)) if out_off is None else out_off
    if depthwise:
        cout = cin * ch_mult
        filt = rng.integers(-w_max, w_max + 1, size=(1, *k, cout))
        depth = k[0] * k[1]
    else:
        filt = rng.integers(-w_max, w_max + 1, size=(cout, *k, cin // groups))
        depth = k[0] * k[1] * cin // groups
    if x_spread is None:
        x = rng.integers(-128, 128, size=(n, h, w, cin))
    else:  # values near the zero point: small accumulators
        x = np.clip(-in_off + rng.integers(-x_spread, x_spread + 1, size=(n, h, w, cin)), -128, 127)
    if shift is None:  # aim the outputs at the int8 range (|acc| ~ 5500 * sqrt(depth))
        base = round(-6.5 - 0.5 * math.log2(depth))
        shift = base + rng.integers(-1, 2, size=cout)
    elif isinstance(shift, tuple):
        shift = rng.integers(shift[0], shift[1] + 1, size=cout)
    mult = rng.integers(2**30, 2**31, size=cout) if mult is None else mult
    if bias is True:
        bias = rng.integers(-(2**14), 2**14, size=cout).astype(np.int32)
    elif isinstance(bias, str):  # tiny multipliers still round some outputs to +-1
        bias = rng.integers(-(2**31) + 2**20, 2**31 - 2**20, size=cout).astype(np.int32)
    p = ConvParams(
        stride_h=stride[0],
        stride_w=stride[1],
        pad_top=pt,
        pad_left=pl,
        dilation_h=dil[0],
        dilation_w=dil[1],
        input_offset=in_off,
        output_offset=out_off,
        act_min=act[0],
        act_max=act[1],
        ch_mult=ch_mult if depthwise else 1,
        multiplier=np.broadcast_to(np.asarray(mult, np.int32), (cout,)).copy(),
        shift=np.broadcast_to(np.asarray(shift, np.int32), (cout,)).copy(),
        filter=filt.astype(np.int8),
        bias=bias,
    )
    return p, x.astype(np.int8), (oh, ow)


SMALL = dict(x_spread=2, w_max=1, bias=None, k=(1, 2), cin=2, act=(-128, 127))
CONV_CASES = {
    "basic_3x3_same": dict(h=5, w=6, cin=3, cout=4, pads="same"),
    "stride2_same_odd_total": dict(h=8, w=7, cin=2, cout=3, stride=(2, 2), pads="same"),
    "stride3_asym_pads": dict(h=10, w=9, cin=3, cout=2, k=(4, 2), stride=(3, 3), pads=(2, 0, 1, 1)),
    "dilation2": dict(h=9, w=8, cin=2, cout=3, dil=(2, 2), pads=(2, 1, 2, 1)),
    "dilation2_stride2_same": dict(
        h=11, w=10, cin=2, cout=2, stride=(2, 2), dil=(2, 2), pads="same"
    ),
    "groups2": dict(h=6, w=5, cin=4, cout=6, groups=2, pads="same"),
    "groups3_stride2": dict(h=7, w=7, cin=6, cout=3, groups=3, k=(2, 2), stride=(2, 2)),
    "groups4": dict(h=5, w=6, cin=8, cout=8, groups=4, k=(3, 1), pads=(1, 0, 1, 0)),
    "conv1d": dict(h=1, w=23, cin=4, cout=5, k=(1, 5), stride=(1, 2), pads=(0, 2, 0, 2)),
    "conv1d_dilation3": dict(h=1, w=20, cin=3, cout=2, k=(1, 3), dil=(1, 3)),
    "kernel1x1_fast_path": dict(n=2, h=4, w=5, cin=7, cout=6, k=(1, 1)),
    "kernel1x1_stride2": dict(h=7, w=6, cin=5, cout=3, k=(1, 1), stride=(2, 2)),
    "kernel1x1_padded": dict(h=3, w=4, cin=3, cout=2, k=(1, 1), pads=(1, 1, 1, 1)),
    "kernel_covers_input": dict(h=3, w=4, cin=2, cout=3, k=(3, 4)),
    "pad_larger_than_input": dict(h=2, w=2, cin=2, cout=2, pads=(2, 2, 2, 2)),
    "batch3_odd_channels": dict(n=3, h=4, w=3, cin=5, cout=7, pads="same"),
    "null_bias": dict(bias=None, pads="same"),
    "input_offset_minus127": dict(in_off=-127, out_off=-5, pads="same"),
    "input_offset_zero": dict(in_off=0, out_off=100, pads="same"),
    "input_offset_128": dict(in_off=128, out_off=-128, pads="same"),
    "relu6_narrow_act": dict(act=(-20, 40), pads="same"),
    "saturate_both_ends": dict(shift=-2, pads="same"),
    "multiplier_extremes": dict(mult=[2**30, 2**31 - 1, 2**30, 2**31 - 1], pads="same"),
    "shift_minus31": dict(shift=-31, out_off=3, cout=8, bias="huge"),
    "shift_minus20_to_minus31": dict(shift=(-31, -20), cout=8, bias="huge"),
    "positive_shift_1": dict(shift=1, cout=3, **SMALL),
    "positive_shift_3": dict(shift=3, cout=3, **SMALL),
    "positive_shift_mixed": dict(shift=(-2, 3), cout=6, **SMALL),
}
DW_CASES = {
    "dw_mult1_3x3_same": dict(h=6, w=7, cin=4, pads="same"),
    "dw_mult2": dict(h=5, w=5, cin=3, ch_mult=2, pads="same"),
    "dw_mult3_stride2": dict(h=8, w=7, cin=2, ch_mult=3, stride=(2, 2), pads="same"),
    "dw_stride3_asym_pads": dict(h=10, w=9, cin=3, k=(4, 2), stride=(3, 3), pads=(2, 0, 1, 1)),
    "dw_dilation2": dict(h=9, w=8, cin=2, ch_mult=2, dil=(2, 2), pads=(2, 2, 2, 2)),
    "dw_conv1d": dict(h=1, w=19, cin=3, k=(1, 5), stride=(1, 2), pads=(0, 2, 0, 2)),
    "dw_batch2_null_bias": dict(n=2, cin=5, bias=None, pads="same"),
    "dw_input_offset_minus127": dict(in_off=-127, cin=3, pads="same"),
    "dw_saturate_both_ends": dict(shift=0, cin=4, pads="same"),
    "dw_relu6_narrow_act": dict(act=(-128, -80), cin=4, pads="same"),
    "dw_shift_minus31": dict(shift=-31, cin=8, bias="huge"),
    "dw_positive_shift": dict(shift=(1, 3), cin=3, x_spread=2, w_max=1, bias=None, k=(2, 2)),
}


@pytest.mark.parametrize("name", CONV_CASES)
def test_conv_named(rt, name):
    ffi, lib, rounding = rt
    p, x, out_hw = make_case(len(name), **CONV_CASES[name])
    expected = conv2d(p, x, out_hw, rounding)
    status, out = run_c(ffi, lib, p, x, out_hw)
    assert status == MQ_OK
    assert_exact(out, expected, f"conv {name} ({rounding})")
    if "saturate" in name:
        assert expected.min() == -128 and expected.max() == 127
    elif "shift_minus" in name:  # huge biases: some outputs land on offset +-1
        assert len(np.unique(expected)) > 1
    elif "positive_shift" in name:  # the small accumulators keep outputs off the clamp
        assert np.any((expected > -128) & (expected < 127)) and len(np.unique(expected)) > 2


@pytest.mark.parametrize("name", DW_CASES)
def test_depthwise_named(rt, name):
    ffi, lib, rounding = rt
    p, x, out_hw = make_case(len(name), depthwise=True, **DW_CASES[name])
    expected = depthwise_conv2d(p, x, out_hw, rounding)
    status, out = run_c(ffi, lib, p, x, out_hw, depthwise=True)
    assert status == MQ_OK
    assert_exact(out, expected, f"depthwise {name} ({rounding})")
    if "saturate" in name:
        assert expected.min() == -128 and expected.max() == 127


def random_config(seed: int, depthwise: bool) -> dict:
    rng = np.random.default_rng(1000 + seed)
    k = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    if rng.random() < 0.2:  # 1-D
        k = (1, k[1])
    dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    span = ((k[0] - 1) * dil[0] + 1, (k[1] - 1) * dil[1] + 1)
    h = 1 if k[0] == 1 and rng.random() < 0.5 else int(rng.integers(span[0], span[0] + 8))
    w = int(rng.integers(max(1, span[1] - 2), span[1] + 8))
    pads = tuple(int(rng.integers(0, s)) for s in (span[0], span[1], span[0], span[1]))
    if h + pads[0] + pads[2] < span[0]:
        pads = (pads[0], pads[1], span[0] - h - pads[0], pads[3])
    if w + pads[1] + pads[3] < span[1]:
        pads = (pads[0], pads[1], pads[2], span[1] - w - pads[1])
    cfg = dict(
        n=int(rng.integers(1, 3)),
        h=h,
        w=w,
        k=k,
        dil=dil,
        pads=pads,
        stride=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
    )
    if depthwise:
        cfg.update(cin=int(rng.integers(1, 7)), ch_mult=int(rng.integers(1, 4)))
    else:
        groups = int(rng.choice([1, 1, 2, 3, 4]))
        cfg.update(
            groups=groups,
            cin=groups * int(rng.integers(1, 5)),
            cout=groups * int(rng.integers(1, 4)),
        )
    if rng.random() < 0.15:
        cfg["shift"] = (-31, 3)
    if rng.random() < 0.3:
        lo = int(rng.integers(-128, 60))
        cfg["act"] = (lo, int(rng.integers(lo, 128)))
    if rng.random() < 0.25:
        cfg["bias"] = None
    return cfg


@pytest.mark.parametrize("seed", range(40), ids=lambda s: f"seed{s}")
def test_conv_random(rt, seed):
    ffi, lib, rounding = rt
    cfg = random_config(seed, depthwise=False)
    p, x, out_hw = make_case(seed, **cfg)
    status, out = run_c(ffi, lib, p, x, out_hw)
    assert status == MQ_OK
    assert_exact(out, conv2d(p, x, out_hw, rounding), f"conv seed {seed} {cfg} ({rounding})")


@pytest.mark.parametrize("seed", range(40), ids=lambda s: f"seed{s}")
def test_depthwise_random(rt, seed):
    ffi, lib, rounding = rt
    cfg = random_config(seed, depthwise=True)
    p, x, out_hw = make_case(seed, depthwise=True, **cfg)
    status, out = run_c(ffi, lib, p, x, out_hw, depthwise=True)
    assert status == MQ_OK
    expected = depthwise_conv2d(p, x, out_hw, rounding)
    assert_exact(out, expected, f"depthwise seed {seed} {cfg} ({rounding})")


def test_conv_1x1_fast_path_equals_generic(clib):
    """A 1x2 kernel whose second column is zero and falls off the right edge runs the generic
    loops on exactly the products of the 1x1 fast path."""
    p, x, out_hw = make_case(7, n=2, h=5, w=6, cin=9, cout=4, k=(1, 1))
    status, fast = run_c(*clib, p, x, out_hw)
    assert status == MQ_OK
    wide = np.zeros((4, 1, 2, 9), np.int8)
    wide[:, :, 0, :] = p.filter[:, :, 0, :]
    q = replace(p, filter=wide)
    status, generic = run_c(*clib, q, x, out_hw)
    assert status == MQ_OK
    assert_exact(generic, fast, "1x1 generic vs fast path")


# ---- bad arguments --------------------------------------------------------------------------


def test_conv_bad_args(clib):
    p, x, out_hw = make_case(3, h=5, w=5, cin=4, cout=4, groups=2, pads="same")
    n = x.shape[0]
    bad = {
        "input_c_not_multiple_of_filter_c": {"input": (n, 5, 5, 3)},
        "output_c_not_filter_n": {"output": (n, *out_hw, 5)},
        "zero_height": {"input": (n, 0, 5, 4)},
        "batch_mismatch": {"output": (n + 1, *out_hw, 4)},
    }
    for what, dims in bad.items():
        status, _ = run_c(*clib, p, x, out_hw, dims=dims)
        assert status == MQ_ERR_ARG, what
    q = replace(p, stride_h=0)
    assert run_c(*clib, q, x, out_hw)[0] == MQ_ERR_ARG


def test_depthwise_bad_args(clib):
    p, x, out_hw = make_case(4, depthwise=True, cin=3, ch_mult=2, pads="same")
    q = replace(p, ch_mult=3)  # 3 * 3 != 6 output channels
    assert run_c(*clib, q, x, out_hw, depthwise=True)[0] == MQ_ERR_ARG
    n = x.shape[0]
    status, _ = run_c(*clib, p, x, out_hw, depthwise=True, dims={"output": (n, *out_hw, 5)})
    assert status == MQ_ERR_ARG
