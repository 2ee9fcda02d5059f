"""16x8 C kernels (c_runtime/src/mq_s16.c) == the numpy reference (ref/s16.py) bit for bit on
randomized shapes and parameters; the reference itself equals TFLite Micro (test_s16.py).

Each case draws full-range int16 inputs and per-channel multipliers spread around the scale
that keeps outputs inside int16, plus edge channels (multiplier >= 0x7FFF0000, shift 7: the
int32 wrap of TFLite's 64-bit MBQM) so saturation, clamping and wrap-around are all exercised.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from microq.qir import (AddParams, ConvParams, FCParams, MulParams, PoolParams, RequantizeParams,
                        Sigmoid16Params)
from microq.quant import s16 as scheme16
from microq.ref import s16 as ref
from microq.ref.arith import quantize_multiplier
from microq.ref.elementwise import MQ_MAX_DIMS, broadcast_struct

MODES = [("double", "clib"), ("single", "clib_single")]


@pytest.fixture(params=MODES, ids=[m for m, _ in MODES])
def mode(request):
    rounding, fixture = request.param
    return rounding, request.getfixturevalue(fixture)


def _buf(ffi, ctype, a):
    return ffi.from_buffer(f"{ctype}[]", a)


def _quant(ffi, mult, shift, keep):
    m = np.ascontiguousarray(mult, np.int32)
    s = np.ascontiguousarray(shift, np.int32)
    keep += [m, s]
    return ffi.new("mq_per_channel_quant *", {"multiplier": _buf(ffi, "int32_t", m),
                                               "shift": _buf(ffi, "int32_t", s)})


def _dims(ffi, shape):
    n, h, w, c = shape
    return ffi.new("mq_dims *", {"n": n, "h": h, "w": w, "c": c})


def _channel_quant(rng, acc_scale: float, n: int):
    """Multipliers mapping an accumulator of typical size acc_scale to ~1e4, jittered; channel 0
    is the largest multiplier with shift 7 (wraps int32), channel 1 a tiny one."""
    mult, shift = np.zeros(n, np.int32), np.zeros(n, np.int32)
    for c in range(n):
        m, s = quantize_multiplier(float(rng.uniform(0.3, 3.0)) * 1e4 / max(acc_scale, 1.0))
        mult[c], shift[c] = m, min(s, 7)
    if n > 2:
        mult[0], shift[0] = 0x7FFFFFFF, 7
        mult[1], shift[1] = int(rng.integers(1 << 30, 1 << 31)), -31
    return mult, shift


def _act_range(rng):
    if rng.random() < 0.3:
        lo = int(rng.integers(-32768, 0))
        return lo, int(rng.integers(lo + 1, 32768))
    return -32768, 32767


def _conv_case(rng, depthwise: bool):
    n = int(rng.integers(1, 3))
    h, w = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw, dh, dw = (int(rng.integers(1, 3)) for _ in range(4))
    if depthwise:
        cin, mult = int(rng.integers(1, 5)), int(rng.integers(1, 3))
        cout, groups = cin * mult, 1
        filt = rng.integers(-127, 128, (1, kh, kw, cout), dtype=np.int8)
    else:
        groups = int(rng.choice([1, 1, 2]))
        fc = int(rng.integers(1, 5))
        cin, cout, mult = fc * groups, groups * int(rng.integers(1, 4)), 1
        filt = rng.integers(-127, 128, (cout, kh, kw, fc), dtype=np.int8)
    pt, pl = int(rng.integers(0, kh)), int(rng.integers(0, kw))
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    oh = max(1, (h + pt + int(rng.integers(0, kh)) - eh) // sh + 1)
    ow = max(1, (w + pl + int(rng.integers(0, kw)) - ew) // sw + 1)
    x = rng.integers(-32768, 32768, (n, h, w, cin), dtype=np.int16)
    taps = kh * kw * (1 if depthwise else filt.shape[3])
    m, s = _channel_quant(rng, 32768 * 64 * np.sqrt(taps), cout)
    bias = rng.integers(-(1 << 40), 1 << 40, cout, dtype=np.int64) if rng.random() < 0.8 else None
    lo, hi = _act_range(rng)
    p = ConvParams(sh, sw, pt, pl, dh, dw, 0, 0, lo, hi, mult, m, s, filt, bias)
    return p, x, (oh, ow)


def _c_conv(clib, p, x, out_hw, depthwise):
    ffi, lib = clib
    keep = []
    out = np.full((x.shape[0], *out_hw, p.multiplier.size), 12345, np.int16)
    fields = {k: getattr(p, k) for k in ("stride_h", "stride_w", "pad_top", "pad_left",
                                         "dilation_h", "dilation_w", "input_offset",
                                         "output_offset", "act_min", "act_max", "ch_mult")}
    bias = ffi.NULL if p.bias is None else _buf(ffi, "int64_t", np.ascontiguousarray(p.bias))
    fn = lib.mq_depthwise_conv2d_s16 if depthwise else lib.mq_conv2d_s16
    status = fn(ffi.new("mq_conv_params *", fields), _quant(ffi, p.multiplier, p.shift, keep),
                _dims(ffi, x.shape), _buf(ffi, "int16_t", np.ascontiguousarray(x)),
                _dims(ffi, p.filter.shape), _buf(ffi, "int8_t", np.ascontiguousarray(p.filter)),
                bias, _dims(ffi, out.shape), _buf(ffi, "int16_t", out))
    assert status == lib.MQ_OK
    return out


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv2d", "depthwise"])
def test_conv_s16_c_equals_reference(clib, depthwise):
    rng = np.random.default_rng(1600 + depthwise)
    wrapped = 0
    for _ in range(40):
        p, x, out_hw = _conv_case(rng, depthwise)
        fn = ref.depthwise_conv2d_s16 if depthwise else ref.conv2d_s16
        want = fn(p, x, out_hw)
        got = _c_conv(clib, p, x, out_hw, depthwise)
        assert np.array_equal(got, want)
        wrapped += int(np.any(want[..., 0] != np.clip(want[..., 0], -1, 1)))
    assert wrapped > 0  # the wrap channel produced values


def test_fully_connected_s16_c_equals_reference(clib):
    ffi, lib = clib
    rng = np.random.default_rng(1616)
    for _ in range(40):
        rows, k = int(rng.integers(1, 5)), int(rng.integers(1, 700))
        n_out = int(rng.integers(1, 20))
        x = rng.integers(-32768, 32768, (rows, k), dtype=np.int16)
        w = rng.integers(-127, 128, (n_out, k), dtype=np.int8)
        m, s = _channel_quant(rng, 32768 * 64 * np.sqrt(k), n_out)
        bias = rng.integers(-(1 << 40), 1 << 40, n_out, dtype=np.int64) \
            if rng.random() < 0.8 else None
        lo, hi = _act_range(rng)
        p = FCParams(0, 0, 0, lo, hi, m, s, w, bias)
        want = ref.fully_connected_s16(p, x)
        out = np.full((rows, n_out), 777, np.int16)
        keep = []
        b = ffi.NULL if bias is None else _buf(ffi, "int64_t", bias)
        fields = {"input_offset": 0, "filter_offset": 0, "output_offset": 0, "act_min": lo,
                  "act_max": hi}
        status = lib.mq_fully_connected_s16(
            ffi.new("mq_fc_params *", fields), _quant(ffi, m, s, keep),
            _dims(ffi, (rows, 1, 1, k)), _buf(ffi, "int16_t", x), _dims(ffi, (n_out, 1, 1, k)),
            _buf(ffi, "int8_t", w), b, _dims(ffi, (rows, 1, 1, n_out)), _buf(ffi, "int16_t", out))
        assert status == lib.MQ_OK
        assert np.array_equal(out, want)


def test_mbqm64_c_equals_reference(clib):
    ffi, lib = clib
    rng = np.random.default_rng(64)
    acc = np.concatenate([rng.integers(-(1 << 47) + 1, 1 << 47, 3000),
                          [0, 1, -1, (1 << 47) - 1, -(1 << 47) + 1]])
    mult = rng.integers(0, 1 << 31, acc.size)
    mult[:20] = 0x7FFFFFFF
    mult[20:40] = 0x7FFF0000 - rng.integers(0, 3, 20)
    shift = rng.integers(-31, 8, acc.size)
    want = ref.mbqm64(acc, mult, shift)
    got = np.array([lib.mq_mbqm64(int(a), int(m), int(s)) for a, m, s in zip(acc, mult, shift)])
    assert np.array_equal(got, want)
    assert (np.abs(want) > (1 << 30)).any()  # wrapped/large results included


def _shape_pair(rng):
    rank = int(rng.integers(1, 5))
    out = [int(rng.integers(1, 5)) for _ in range(rank)]
    a = [d if rng.random() < 0.7 else 1 for d in out]
    b = [d if rng.random() < 0.7 else 1 for d in out]
    return tuple(a), tuple(b[int(rng.integers(0, rank)):])


def _c_binary(clib, kind, p, a, b):
    ffi, lib = clib
    bc = broadcast_struct(a.shape, b.shape)
    out = np.full(tuple(bc["out_shape"][MQ_MAX_DIMS - bc["rank"]:]), 99, np.int16)
    struct = "mq_mul_params *" if kind == "mul" else "mq_add_params *"
    status = getattr(lib, f"mq_{kind}_s16")(
        ffi.new(struct, asdict(p)), ffi.new("mq_broadcast *", bc),
        _buf(ffi, "int16_t", np.ascontiguousarray(a)),
        _buf(ffi, "int16_t", np.ascontiguousarray(b)),
        _buf(ffi, "int16_t", out))
    assert status == lib.MQ_OK
    return out


@pytest.mark.parametrize("kind", ["add", "sub", "mul"])
def test_binary_s16_c_equals_reference(mode, kind):
    rounding, clib = mode
    rng = np.random.default_rng(1700 + len(kind) + (kind == "sub"))
    for _ in range(40):
        sa, sb = _shape_pair(rng)
        a = rng.integers(-32768, 32768, sa, dtype=np.int16)
        b = rng.integers(-32768, 32768, sb, dtype=np.int16)
        s1, s2 = (float(np.exp(rng.uniform(-12, -2))) for _ in range(2))
        lo, hi = _act_range(rng)
        if kind == "mul":
            s_out = s1 * s2 * float(np.exp(rng.uniform(0, 12)))
            p = scheme16.mul_params_s16(s1, 0, s2, 0, s_out, 0, lo, hi)
            want = ref.mul_s16(p, a, b, rounding)
        else:
            s_out = max(s1, s2) * float(np.exp(rng.uniform(-3, 2)))
            p = scheme16.add_params_s16(s1, 0, s2, 0, s_out, 0, lo, hi)
            want = ref.add_s16(p, a, b, kind == "sub", rounding)
        assert np.array_equal(_c_binary(clib, kind, p, a, b), want)


def test_softmax_s16_c_equals_reference(mode):
    rounding, (ffi, lib) = mode
    rng = np.random.default_rng(1800)
    for _ in range(30):
        rows, size = int(rng.integers(1, 5)), int(rng.integers(1, 300))
        spread = int(rng.choice([50, 3000, 32767]))
        x = rng.integers(-spread, spread + 1, (rows, size)).astype(np.int16)
        s_in = float(np.exp(rng.uniform(-11, -4)))
        p = scheme16.softmax_params_s16(s_in, float(rng.choice([1.0, 0.5, 2.0])), 1 / 32768)
        want = ref.softmax_s16(p, x, rounding)
        keep = [np.ascontiguousarray(p.exp_lut), np.ascontiguousarray(p.one_over_one_plus_x_lut)]
        cp = ffi.new("mq_softmax_s16_params *", {
            "input_multiplier": p.input_multiplier, "input_left_shift": p.input_left_shift,
            "exp_lut": _buf(ffi, "int16_t", keep[0]),
            "one_over_one_plus_x_lut": _buf(ffi, "int16_t", keep[1])})
        out = np.full_like(x, 5)
        assert lib.mq_softmax_s16(cp, rows, size, _buf(ffi, "int16_t", x),
                                  _buf(ffi, "int16_t", out)) == lib.MQ_OK
        assert np.array_equal(out, want)
        # in place gives the same
        y = x.copy()
        assert lib.mq_softmax_s16(cp, rows, size, _buf(ffi, "int16_t", y),
                                  _buf(ffi, "int16_t", y)) == lib.MQ_OK
        assert np.array_equal(y, want)


@pytest.mark.parametrize("fn", ["logistic", "tanh"])
def test_sigmoid_s16_c_equals_reference_on_every_input(clib, fn):
    ffi, lib = clib
    x = np.arange(-32768, 32768, dtype=np.int16)  # exhaustive over int16
    scales = [2.0 ** -12, 2.0 ** -11, 1e-4, 3.1e-4, 1.7e-3, 2e-5]
    for s_in in scales:
        p = scheme16.sigmoid_params_s16(s_in, 2.0 ** -15, fn == "tanh")
        want = getattr(ref, f"{fn}_s16")(p, x)
        out = np.zeros_like(x)
        cp = ffi.new("mq_sigmoid_s16_params *", asdict(p))
        assert getattr(lib, f"mq_{fn}_s16")(cp, x.size, _buf(ffi, "int16_t", x),
                                           _buf(ffi, "int16_t", out)) == lib.MQ_OK
        assert np.array_equal(out, want), f"{fn} input scale {s_in}"
        assert len(np.unique(want)) > 500  # the scale spreads the inputs over the table


@pytest.mark.parametrize("direction", ["s8_s16", "s16_s8", "s16_s16"])
def test_requantize_s16_c_equals_reference(mode, direction):
    rounding, (ffi, lib) = mode
    rng = np.random.default_rng(1900 + len(direction))
    in16, out16 = direction.startswith("s16"), direction.endswith("s16")
    for _ in range(20):
        n = int(rng.integers(1, 500))
        if in16:
            x = rng.integers(-32768, 32768, n).astype(np.int16)
        else:
            x = rng.integers(-128, 128, n).astype(np.int8)
        s_in = float(np.exp(rng.uniform(-10, -2)))
        s_out = s_in * float(np.exp(rng.uniform(-6, 6) if in16 == out16 else
                                    (rng.uniform(-9, -4) if out16 else rng.uniform(3, 9))))
        zp_in = 0 if in16 else int(rng.integers(-128, 128))
        zp_out = 0 if out16 else int(rng.integers(-128, 128))
        p = scheme16.requantize_params_s16(s_in, zp_in, in16, s_out, zp_out, out16)
        want = ref.requantize_s16(p, x, np.int16 if out16 else np.int8, rounding)
        out = np.zeros(n, np.int16 if out16 else np.int8)
        ctype_in, ctype_out = ("int16_t" if in16 else "int8_t"), ("int16_t" if out16 else "int8_t")
        status = getattr(lib, f"mq_requantize_{direction}")(
            ffi.new("mq_requantize_params *", asdict(p)), n, _buf(ffi, ctype_in, x),
            _buf(ffi, ctype_out, out))
        assert status == lib.MQ_OK
        assert np.array_equal(out, want)


def test_s16_kernels_refuse_bad_params(clib):
    ffi, lib = clib
    x = np.zeros(4, np.int16)
    bad = ffi.new("mq_sigmoid_s16_params *", {"input_multiplier": 40000, "input_left_shift": 0})
    assert lib.mq_logistic_s16(bad, 4, _buf(ffi, "int16_t", x), _buf(ffi, "int16_t", x)) \
        == lib.MQ_ERR_ARG
    p = asdict(MulParams(0, 0, 0, 1 << 30, 1, -32768, 32767))  # a left shift overflows
    bc = ffi.new("mq_broadcast *", broadcast_struct((4,), (4,)))
    assert lib.mq_mul_s16(ffi.new("mq_mul_params *", p), bc, _buf(ffi, "int16_t", x),
                          _buf(ffi, "int16_t", x), _buf(ffi, "int16_t", x)) == lib.MQ_ERR_ARG
    a = asdict(AddParams(3, 1 << 30, -1, 0, 1 << 30, -1, 15, 0, 1 << 30, -1, -32768, 32767))
    assert lib.mq_add_s16(ffi.new("mq_add_params *", a), bc, _buf(ffi, "int16_t", x),
                          _buf(ffi, "int16_t", x), _buf(ffi, "int16_t", x)) == lib.MQ_ERR_ARG
    r = asdict(RequantizeParams(0, 0, 1 << 30, 15, -32768, 32767))
    assert lib.mq_requantize_s16_s16(ffi.new("mq_requantize_params *", r), 4,
                                     _buf(ffi, "int16_t", x), _buf(ffi, "int16_t", x)) \
        == lib.MQ_ERR_ARG
    assert Sigmoid16Params(0, 0) == scheme16.sigmoid_params_s16(2.0 ** -12, 2.0 ** -15)


@pytest.mark.parametrize("out16", [True, False], ids=["s16_out", "s8_out"])
def test_layernorm_s16_c_equals_reference(mode, out16):
    rounding, (ffi, lib) = mode
    rng = np.random.default_rng(2000 + out16)
    for _ in range(20):
        rows, c = int(rng.integers(1, 5)), int(rng.integers(1, 300))
        spread = int(rng.choice([3, 300, 32767]))
        x = rng.integers(-spread, spread + 1, (rows, c)).astype(np.int16)
        if rng.random() < 0.2:
            x[0] = x[0, 0]  # a constant row
        s_in = float(np.exp(rng.uniform(-10, -3)))
        gamma = rng.normal(0, 1, c)
        beta = rng.normal(0, 0.5, c)
        s_out = 6.0 / (32767 if out16 else 127)
        zp = 0 if out16 else int(rng.integers(-20, 20))
        lo, hi = (-32768, 32767) if out16 else (-128, 127)
        p = scheme16.layernorm_params_s16(s_in, gamma, beta, float(rng.choice([0, 1e-5, 1e-2])),
                                          s_out, zp, lo, hi, rounding)
        want = ref.layernorm_s16(p, x, np.int16 if out16 else np.int8, rounding)
        keep = []
        b = np.ascontiguousarray(p.bias, np.int32)
        out = np.zeros((rows, c), np.int16 if out16 else np.int8)
        cp = ffi.new("mq_layernorm_params *", {"eps": p.eps, "output_offset": p.output_offset,
                                               "act_min": p.act_min, "act_max": p.act_max})
        fn = lib.mq_layernorm_s16 if out16 else lib.mq_layernorm_s16_s8
        status = fn(cp, _quant(ffi, p.multiplier, p.shift, keep), _buf(ffi, "int32_t", b),
                    rows, c, _buf(ffi, "int16_t", x),
                    _buf(ffi, "int16_t" if out16 else "int8_t", out))
        assert status == lib.MQ_OK
        assert np.array_equal(out, want)


def test_layernorm_s16_is_close_to_float():
    # the int16 LayerNorm's error is the output rounding, not the arithmetic
    rng = np.random.default_rng(7)
    xf = rng.normal(0, 1, (8, 64))
    xf[:, 3] *= 20  # an outlier channel
    s_in = float(np.abs(xf).max()) / 32767
    x = np.round(xf / s_in).astype(np.int16)
    gamma, beta = rng.normal(1, 0.2, 64), rng.normal(0, 0.2, 64)
    s_out = 16.0 / 32767  # the outlier channel normalizes to ~7.5 * gamma
    p = scheme16.layernorm_params_s16(s_in, gamma, beta, 1e-5, s_out, 0, -32768, 32767)
    got = ref.layernorm_s16(p, x).astype(np.float64) * s_out
    xd = x * s_in
    norm = (xd - xd.mean(1, keepdims=True)) / np.sqrt(xd.var(1, keepdims=True) + 1e-5)
    want = norm * gamma + beta
    sqnr = 10 * np.log10((want ** 2).sum() / ((got - want) ** 2).sum())
    assert sqnr > 60, sqnr


def test_lut_s16_c_equals_reference_on_every_input(clib):
    ffi, lib = clib
    rng = np.random.default_rng(2100)
    x = np.arange(-32768, 32768, dtype=np.int16)
    table = rng.integers(-32768, 32768, 513).astype(np.int16)  # any table, steep slopes
    want = ref.lut_lookup(table, x).astype(np.int16)
    out = np.zeros_like(x)
    assert lib.mq_lut_s16(_buf(ffi, "int16_t", table), x.size, _buf(ffi, "int16_t", x),
                          _buf(ffi, "int16_t", out)) == lib.MQ_OK
    assert np.array_equal(out, want)


@pytest.mark.parametrize("kind", ["gelu", "silu", "relu", "elu"])
def test_lut_s16_table_is_close_to_float(kind):
    from microq import ir
    from microq.ref import activations

    attrs = ir.ActAttrs(kind, alpha=1.0) if kind == "elu" else ir.ActAttrs(kind)
    s_in, s_out = 6.0 / 32767, 6.0 / 32767
    table = scheme16.lut_table_s16(lambda v: activations.apply(attrs, v), s_in, s_out)
    x = np.arange(-32768, 32768, dtype=np.int16)
    got = ref.lut_lookup(table, x) * s_out
    want = np.clip(activations.apply(attrs, x * s_in), -32768 * s_out, 32767 * s_out)
    err = got - want
    sqnr = 10 * np.log10((want ** 2).sum() / (err ** 2).sum())
    assert sqnr > 60, f"{kind}: {sqnr:.1f} dB"  # int8 LUTs reach ~40 dB


@pytest.mark.parametrize("average", [False, True], ids=["max", "avg"])
def test_pool_s16_c_equals_reference(clib, average):
    ffi, lib = clib
    rng = np.random.default_rng(2200 + average)
    for _ in range(40):
        n, h, w, c = (int(rng.integers(1, 3)), int(rng.integers(1, 9)), int(rng.integers(1, 9)),
                      int(rng.integers(1, 5)))
        kh, kw = int(rng.integers(1, min(h, 3) + 1)), int(rng.integers(1, min(w, 3) + 1))
        sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        pt, pl = int(rng.integers(0, kh)), int(rng.integers(0, kw))
        pb, pr = int(rng.integers(0, kh)), int(rng.integers(0, kw))
        oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
        include = int(average and rng.random() < 0.5)
        lo, hi = _act_range(rng)
        p = PoolParams(kh, kw, sh, sw, pt, pl, pb, pr, include, 0, 0, lo, hi)
        x = rng.integers(-32768, 32768, (n, h, w, c)).astype(np.int16)
        want = (ref.avg_pool_s16 if average else ref.max_pool_s16)(p, x, (oh, ow))
        out = np.zeros((n, oh, ow, c), np.int16)
        fn = lib.mq_avg_pool_s16 if average else lib.mq_max_pool_s16
        from microq.codegen.layers import POOL_FIELDS

        fields = {k: getattr(p, k) for k in POOL_FIELDS}
        status = fn(ffi.new("mq_pool_params *", fields), _dims(ffi, x.shape),
                    _buf(ffi, "int16_t", x), _dims(ffi, (1, kh, kw, 1)), _dims(ffi, out.shape),
                    _buf(ffi, "int16_t", out))
        assert status == lib.MQ_OK
        assert np.array_equal(out, want)
