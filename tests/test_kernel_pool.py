"""max / average pooling: C kernel == numpy reference == CMSIS-NN golden outputs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from cabi import Abi, out8
from cmsis_cases import assert_exact, family_dir, list_cases, load_case
from microq.qir import PoolParams
from microq.ref.pool import avg_pool, max_pool

MQ_OK, MQ_ERR_ARG = 0, 1
REF = {"max": max_pool, "avg": avg_pool}


@pytest.fixture(params=["double", "single"])
def rt(request):
    """(ffi, lib): pooling has no requantization, so both builds must give the same bytes."""
    return request.getfixturevalue("clib" if request.param == "double" else "clib_single")


def run_c(ffi, lib, kind: str, p: PoolParams, x: np.ndarray, out_hw, dims=None):
    """Call mq_max_pool_s8 / mq_avg_pool_s8; returns (status, int8 [N, OH, OW, C])."""
    n, h, w, c = x.shape
    abi = Abi((ffi, lib))
    out = out8((n, *out_hw, c))
    d = dims or {}
    fn = lib.mq_max_pool_s8 if kind == "max" else lib.mq_avg_pool_s8
    status = fn(abi.struct(p), abi.dims(d.get("input", (n, h, w, c))), abi.i8(x),
                abi.dims(d.get("filter", (1, p.kernel_h, p.kernel_w, 1))),
                abi.dims(d.get("output", out.shape)), abi.i8(out))
    return status, out


# ---- conformance: CMSIS-NN golden vectors --------------------------------------------------

FAMILY = {"max": "maxpool", "avg": "avgpool"}


def cmsis_pool(kind: str, name: str):
    """(PoolParams, input, out_hw, expected) of one avgpool/ or maxpool/ case (TFLite: no
    offsets, padding never counted; BATCH_SIZE is the batch, INPUT_N is not reliable)."""
    a, cfg = load_case(FAMILY[kind], name)
    n, h, w, c = cfg["BATCH_SIZE"], cfg["INPUT_H"], cfg["INPUT_W"], cfg["INPUT_C"]
    p = PoolParams(
        kernel_h=cfg["FILTER_H"],
        kernel_w=cfg["FILTER_W"],
        stride_h=cfg["STRIDE_H"],
        stride_w=cfg["STRIDE_W"],
        pad_top=cfg["PADDING_H"],
        pad_left=cfg["PADDING_W"],
        pad_bottom=0,
        pad_right=0,
        count_include_pad=0,
        input_offset=0,
        output_offset=0,
        act_min=cfg["ACTIVATION_MIN"],
        act_max=cfg["ACTIVATION_MAX"],
    )
    out_hw = (cfg["OUTPUT_H"], cfg["OUTPUT_W"])
    x = a["input_tensor"].reshape(n, h, w, c)
    return p, x, out_hw, a["output"].reshape(n, *out_hw, c)


@pytest.mark.parametrize("kind,count", [("max", 8), ("avg", 6)])
def test_conformance_cases_present(kind, count):
    family_dir(FAMILY[kind])
    assert len(list_cases(FAMILY[kind])) == count


@pytest.mark.parametrize(
    "kind,name", [(k, n) for k in ("max", "avg") for n in list_cases(FAMILY[k])]
)
def test_pool_cmsis_conformance(rt, kind, name):
    p, x, out_hw, expected = cmsis_pool(kind, name)
    assert_exact(REF[kind](p, x, out_hw), expected, f"numpy ref, {FAMILY[kind]}/{name}")
    for repeat in range(2):  # as CMSIS-NN's test: the same output buffer twice
        status, out = run_c(*rt, kind, p, x, out_hw)
        assert status == MQ_OK
        assert_exact(out, expected, f"C, {FAMILY[kind]}/{name}, run {repeat}")


# ---- randomized: C == numpy reference ------------------------------------------------------


def make_case(
    seed: int,
    *,
    n=1,
    h=6,
    w=7,
    c=5,
    k=(3, 3),
    stride=(2, 2),
    pads=(0, 0, 0, 0),
    include_pad=0,
    in_off=None,
    out_off=None,
    act=(-128, 127),
):
    """A pooling case; pads = (top, left, bottom, right); None offsets are random."""
    rng = np.random.default_rng(seed)
    pt, pl, pb, pr = pads
    oh = (h + pt + pb - k[0]) // stride[0] + 1
    ow = (w + pl + pr - k[1]) // stride[1] + 1
    assert oh >= 1 and ow >= 1, "case has no output"
    p = PoolParams(
        kernel_h=k[0],
        kernel_w=k[1],
        stride_h=stride[0],
        stride_w=stride[1],
        pad_top=pt,
        pad_left=pl,
        pad_bottom=pb,
        pad_right=pr,
        count_include_pad=include_pad,
        input_offset=int(rng.integers(-127, 129)) if in_off is None else in_off,
        output_offset=int(rng.integers(-128, 128)) if out_off is None else out_off,
        act_min=act[0],
        act_max=act[1],
    )
    return p, rng.integers(-128, 128, size=(n, h, w, c)).astype(np.int8), (oh, ow)


POOL_CASES = {
    "k3_s2_valid": dict(h=7, w=9, c=4, k=(3, 3), stride=(2, 2)),
    "k2_s2_even": dict(h=8, w=6, c=3, k=(2, 2), stride=(2, 2), in_off=0, out_off=0),
    "k3_s1_pads_all_sides": dict(h=5, w=6, c=3, k=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1)),
    "k3_s2_same_odd_total": dict(h=8, w=8, c=2, k=(3, 3), stride=(2, 2), pads=(0, 0, 1, 1)),
    "asym_pads_stride3": dict(h=10, w=9, c=2, k=(4, 3), stride=(3, 3), pads=(2, 0, 3, 2)),
    "kernel_larger_than_stride": dict(h=9, w=9, c=3, k=(5, 4), stride=(2, 1), pads=(2, 1, 2, 2)),
    "global": dict(n=2, h=5, w=7, c=6, k=(5, 7), stride=(1, 1)),
    "global_1x1": dict(h=1, w=1, c=20, k=(1, 1), stride=(1, 1)),
    "many_channels_blocks": dict(h=4, w=4, c=37, k=(2, 2), stride=(2, 2), pads=(1, 1, 1, 1)),
    "pool1d": dict(h=1, w=17, c=3, k=(1, 4), stride=(1, 3), pads=(0, 2, 0, 1)),
    "offsets_zp_minus128": dict(in_off=128, out_off=-128, pads=(1, 1, 1, 1)),
    "offsets_mismatched": dict(in_off=-100, out_off=57, pads=(1, 0, 0, 1)),
    "relu6_act": dict(act=(-3, 6), in_off=0, out_off=0, pads=(1, 1, 1, 1)),
    "batch3": dict(n=3, h=5, w=4, c=2, k=(2, 3), stride=(1, 2), pads=(0, 1, 1, 1)),
}


@pytest.mark.parametrize(
    "kind,include_pad", [("max", 0), ("avg", 0), ("avg", 1)], ids=["max", "avg", "avg_incl_pad"]
)
@pytest.mark.parametrize("name", POOL_CASES)
def test_pool_named(rt, name, kind, include_pad):
    p, x, out_hw = make_case(len(name), include_pad=include_pad, **POOL_CASES[name])
    expected = REF[kind](p, x, out_hw)
    status, out = run_c(*rt, kind, p, x, out_hw)
    assert status == MQ_OK
    assert_exact(out, expected, f"{kind} pool {name}")


def test_count_include_pad_changes_padded_windows():
    """The divisor convention matters exactly where a window overlaps the padding."""
    p, x, out_hw = make_case(
        1, h=4, w=4, c=1, k=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1), in_off=0, out_off=0
    )
    x[:] = 90
    tflite = avg_pool(p, x, out_hw)
    onnx = avg_pool(replace(p, count_include_pad=1), x, out_hw)
    assert np.all(tflite == 90)
    assert onnx[0, 0, 0, 0] == 40  # 4 taps of 90 over 9: 360 / 9
    assert onnx[0, 1, 1, 0] == 90 and onnx[0, 0, 1, 0] == 60  # 540 / 9


@pytest.mark.parametrize("seed", range(40), ids=lambda s: f"seed{s}")
def test_pool_random(rt, seed):
    rng = np.random.default_rng(3000 + seed)
    k = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    cfg = dict(
        n=int(rng.integers(1, 3)),
        h=int(rng.integers(k[0], k[0] + 8)),
        w=int(rng.integers(k[1], k[1] + 8)),
        c=int(rng.integers(1, 20)),
        k=k,
        stride=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
        pads=tuple(int(rng.integers(0, s)) for s in (k[0], k[1], k[0], k[1])),
        include_pad=int(rng.integers(0, 2)),
    )
    if rng.random() < 0.3:
        lo = int(rng.integers(-128, 60))
        cfg["act"] = (lo, int(rng.integers(lo, 128)))
    p, x, out_hw = make_case(seed, **cfg)
    for kind in ("max", "avg"):
        status, out = run_c(*rt, kind, p, x, out_hw)
        assert status == MQ_OK
        assert_exact(out, REF[kind](p, x, out_hw), f"{kind} pool seed {seed} {cfg}")


def test_pool_bad_args(clib):
    """As CMSIS-NN's negative tests (negative batch), plus windows with no in-image tap."""
    p, x, out_hw = make_case(9, h=4, w=4, c=2, k=(2, 2), stride=(2, 2))
    for kind in ("max", "avg"):
        assert run_c(*clib, kind, p, x, out_hw, dims={"input": (-1, 4, 4, 2)})[0] == MQ_ERR_ARG
        assert run_c(*clib, kind, p, x, out_hw, dims={"output": (1, 2, 2, 3)})[0] == MQ_ERR_ARG
        assert run_c(*clib, kind, replace(p, stride_w=0), x, out_hw)[0] == MQ_ERR_ARG
        # pad_top == kernel_h: the first output row would see only padding
        assert run_c(*clib, kind, replace(p, pad_top=2), x, out_hw)[0] == MQ_ERR_ARG
        # a third output column would start past the input
        assert run_c(*clib, kind, p, x, (2, 3))[0] == MQ_ERR_ARG


@pytest.mark.parametrize("include_pad", [0, 1], ids=["exclude_pad", "include_pad"])
def test_avg_divisor_matches_onnxruntime(include_pad):
    """The reference's divisor equals onnxruntime's AveragePool (float, NCHW) on integer data:
    round_half_away(ORT output) == reference with zero offsets."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    n, h, w, c, k, s, pads = 2, 7, 8, 3, (3, 4), (2, 3), (1, 2, 2, 3)  # top, left, bottom, right
    p, x, out_hw = make_case(
        11,
        n=n,
        h=h,
        w=w,
        c=c,
        k=k,
        stride=s,
        pads=pads,
        include_pad=include_pad,
        in_off=0,
        out_off=0,
    )
    node = helper.make_node(
        "AveragePool",
        ["x"],
        ["y"],
        kernel_shape=list(k),
        strides=list(s),
        pads=[pads[0], pads[1], pads[2], pads[3]],
        count_include_pad=include_pad,
    )
    graph = helper.make_graph(
        [node],
        "avg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, c, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": x.transpose(0, 3, 1, 2).astype(np.float32)})[0].transpose(0, 2, 3, 1)
    rounded = np.sign(y) * np.floor(np.abs(y) + 0.5)  # exact: y is a small integer ratio
    assert_exact(avg_pool(p, x, out_hw), rounded.astype(np.int8), "avg pool vs onnxruntime")
