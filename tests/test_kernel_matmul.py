"""Batched int8 matmul: C == numpy reference (both rounding modes) == CMSIS-NN golden outputs,
randomized over attention shapes; plus an attention-shaped graph (layernorm, slice, matmul,
softmax) through codegen and the host build, equal to the integer executor bit for bit."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest
from cabi import Abi, out8
from cmsis_cases import assert_exact, family_dir, list_cases, load_case

from microq import qir
from microq.quant import scheme
from microq.ref.matmul import batch_matmul

MQ_OK, MQ_ERR_ARG = 0, 1
MODES = [("double", "clib"), ("single", "clib_single")]


@pytest.fixture(params=MODES, ids=[m for m, _ in MODES])
def mode(request):
    rounding, fixture = request.param
    return rounding, request.getfixturevalue(fixture)


def dims4(shape) -> tuple[int, int, int, int]:
    return tuple([1] * (4 - len(shape)) + [int(d) for d in shape])


def c_matmul(clib, p: qir.BatchMatMulParams, lhs, rhs, out_shape=None, dims=None):
    """Call mq_batch_matmul_s8; returns (status, int8 output of out_shape)."""
    abi = Abi(clib)
    a, b = np.asarray(lhs), np.asarray(rhs)
    if out_shape is None:
        m, n = a.shape[-2], (b.shape[-2] if p.rhs_transposed else b.shape[-1])
        out_shape = (*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), m, n)
    out = out8(out_shape)
    d = {"lhs": dims4(a.shape), "rhs": dims4(b.shape), "out": dims4(out.shape), **(dims or {})}
    status = abi.lib.mq_batch_matmul_s8(abi.struct(p), abi.dims(d["lhs"]), abi.i8(a),
                                        abi.dims(d["rhs"]), abi.i8(b), abi.dims(d["out"]),
                                        abi.i8(out))
    return status, out


# ---- conformance: CMSIS-NN golden vectors --------------------------------------------------


def cmsis_bmm(name: str):
    """(params, lhs [B,H,M,K], rhs as passed, expected) of one batch_matmul/ case: CMSIS-NN
    takes lhs as [.., M, K] and rhs as [.., N, K] (see the conformance README)."""
    a, cfg = load_case("batch_matmul", name)
    lb, lh, lr, lc = (cfg[f"LHS_{k}"] for k in ("BATCH", "HEIGHT", "ROWS", "COLS"))
    rb, rh, rr, rc = (cfg[f"RHS_{k}"] for k in ("BATCH", "HEIGHT", "ROWS", "COLS"))
    if cfg["ADJ_X"]:
        lhs = a["lhs_transposed_tensor"].reshape(lb, lh, lc, lr)
    else:
        lhs = a["lhs_input_tensor"].reshape(lb, lh, lr, lc)
    if cfg["ADJ_Y"]:
        rhs = a["rhs_input_tensor"].reshape(rb, rh, rr, rc)
    else:
        rhs = a["rhs_transposed_tensor"].reshape(rb, rh, rc, rr)
    p = qir.BatchMatMulParams(
        rhs_transposed=1,
        lhs_offset=cfg["LHS_OFFSET"],
        rhs_offset=cfg["RHS_OFFSET"],
        output_offset=cfg["OUTPUT_OFFSET"],
        output_multiplier=cfg["OUTPUT_MULTIPLIER"],
        output_shift=cfg["OUTPUT_SHIFT"],
        act_min=cfg["ACTIVATION_MIN"],
        act_max=cfg["ACTIVATION_MAX"],
    )
    out_shape = tuple(cfg[f"OUTPUT_{k}"] for k in ("BATCH", "HEIGHT", "ROWS", "COLS"))
    return p, lhs, rhs, a["output_ref"].reshape(out_shape)


def test_conformance_cases_present():
    family_dir("batch_matmul")
    assert len(list_cases("batch_matmul")) == 5


@pytest.mark.parametrize("name", list_cases("batch_matmul"))
def test_batch_matmul_cmsis_conformance(clib, clib_single, name):
    p, lhs, rhs, expected = cmsis_bmm(name)
    assert_exact(batch_matmul(p, lhs, rhs), expected, f"numpy ref, {name}")
    status, out = c_matmul(clib, p, lhs, rhs)
    assert status == MQ_OK
    assert_exact(out, expected, f"C, {name}")
    # the same data with rhs re-laid [.., K, N]: the non-transposed path
    status, out = c_matmul(clib, replace(p, rhs_transposed=0), lhs, np.swapaxes(rhs, -1, -2))
    assert status == MQ_OK
    assert_exact(out, expected, f"C rhs [K, N], {name}")
    status, out = c_matmul(clib_single, p, lhs, rhs)
    assert status == MQ_OK
    assert_exact(out, batch_matmul(p, lhs, rhs, "single"), f"C single, {name}")


# ---- randomized: C == numpy reference ------------------------------------------------------


def make_case(
    seed: int,
    *,
    lhs_batch=(1, 1),
    rhs_batch=(1, 1),
    m=7,
    k=16,
    n=7,
    rhs_transposed=1,
    shift=None,
    act=(-128, 127),
    spread=None,
    out_off=None,
):
    """Random operands [*batch, M, K] and [*batch, K, N] (or [.., N, K]) and params aimed at
    the int8 output range; `spread` keeps values near the zero points (small accumulators)."""
    rng = np.random.default_rng(seed)
    zl, zr = (int(v) for v in rng.integers(-128, 128, 2))

    def operand(shape, zp):
        if spread is None:
            return rng.integers(-128, 128, shape).astype(np.int8)
        return np.clip(zp + rng.integers(-spread, spread + 1, shape), -128, 127).astype(np.int8)

    lhs = operand((*lhs_batch, m, k), zl)
    rhs = operand((*rhs_batch, *((n, k) if rhs_transposed else (k, n))), zr)
    if shift is None:  # |acc| ~ 2^14 * sqrt(K): bring it to ~2^6
        shift = round(-7.5 - 0.5 * np.log2(k)) + int(rng.integers(-1, 2))
    p = qir.BatchMatMulParams(
        rhs_transposed=rhs_transposed,
        lhs_offset=-zl,
        rhs_offset=-zr,
        output_offset=int(rng.integers(-128, 128)) if out_off is None else out_off,
        output_multiplier=int(rng.integers(2**30, 2**31)),
        output_shift=int(shift),
        act_min=act[0],
        act_max=act[1],
    )
    return p, lhs, rhs


MATMUL_CASES = {
    "seq1_heads1": dict(lhs_batch=(1, 1), rhs_batch=(1, 1), m=1, n=1, k=8),
    "seq7_heads2_qkT": dict(lhs_batch=(1, 2), rhs_batch=(1, 2), m=7, n=7, k=8),
    "seq64_heads4_qkT": dict(lhs_batch=(1, 4), rhs_batch=(1, 4), m=64, n=64, k=16),
    "seq64_heads4_av": dict(
        lhs_batch=(1, 4), rhs_batch=(1, 4), m=64, n=16, k=64, rhs_transposed=0
    ),
    "seq7_heads1_av": dict(m=7, n=5, k=7, rhs_transposed=0),
    "seq1_heads4_av": dict(lhs_batch=(1, 4), rhs_batch=(1, 4), m=1, n=8, k=1, rhs_transposed=0),
    "broadcast_rhs_heads": dict(lhs_batch=(2, 3), rhs_batch=(1, 1), m=5, n=4, k=9),
    "broadcast_cross": dict(lhs_batch=(2, 1), rhs_batch=(1, 3), m=3, n=6, k=11, rhs_transposed=0),
    "rank2_operands": dict(lhs_batch=(), rhs_batch=(), m=9, n=13, k=17),
    "rank3_vs_rank2": dict(lhs_batch=(3,), rhs_batch=(), m=4, n=6, k=5, rhs_transposed=0),
    "depth1": dict(m=3, n=4, k=1, shift=-3),
    "deep_2048": dict(m=2, n=3, k=2048, spread=60, shift=-9),
    "saturate_both_ends": dict(m=6, n=6, k=16, shift=-2),
    "relu_narrow_act": dict(act=(0, 6), spread=30, shift=-10, out_off=3),
    "positive_shift_small_values": dict(m=4, n=4, k=4, shift=3, spread=2),
    "shift_minus31": dict(m=4, n=4, k=16, shift=-31),
}


@pytest.mark.parametrize("name", MATMUL_CASES)
def test_batch_matmul_named(mode, name):
    rounding, clib = mode
    p, lhs, rhs = make_case(len(name), **MATMUL_CASES[name])
    expected = batch_matmul(p, lhs, rhs, rounding)
    status, out = c_matmul(clib, p, lhs, rhs)
    assert status == MQ_OK
    assert_exact(out, expected, f"batch_matmul {name} ({rounding})")
    if "saturate" in name:
        assert expected.min() == -128 and expected.max() == 127
    elif name not in ("seq1_heads1", "shift_minus31"):
        assert len(np.unique(expected)) > 2, "degenerate case: outputs nearly constant"


@pytest.mark.parametrize("seed", range(30), ids=lambda s: f"seed{s}")
def test_batch_matmul_random(mode, seed):
    rounding, clib = mode
    rng = np.random.default_rng(500 + seed)
    seq = int(rng.choice([1, 7, 64, int(rng.integers(2, 20))]))
    heads = int(rng.choice([1, 2, 4]))
    depth = int(rng.integers(1, 33))
    qk = bool(rng.integers(0, 2))  # Q.K^T: [h, seq, d] x [h, seq, d]^T; A.V: [h, seq, seq] x ..
    batch = int(rng.integers(1, 3))
    lb = (batch, heads)
    rb = (int(rng.choice([1, batch])), int(rng.choice([1, heads])))
    if qk:
        cfg = dict(m=seq, k=depth, n=seq, rhs_transposed=1)
    else:
        cfg = dict(m=seq, k=seq, n=depth, rhs_transposed=0)
    if rng.random() < 0.2:
        cfg["shift"] = int(rng.integers(-31, 0))
    p, lhs, rhs = make_case(seed, lhs_batch=lb, rhs_batch=rb, **cfg)
    status, out = c_matmul(clib, p, lhs, rhs)
    assert status == MQ_OK
    assert_exact(out, batch_matmul(p, lhs, rhs, rounding), f"seed {seed} {cfg} ({rounding})")


def test_batch_matmul_worst_case_accumulator(mode):
    """The accumulator bound is tight: K = 32768 terms of (127 + 128)^2 sum to
    2130739200 < 2^31, which the kernel must hold without wrapping."""
    rounding, clib = mode
    k = 32768
    lhs = np.full((1, k), 127, np.int8)
    rhs = np.full((1, k), 127, np.int8)
    p = qir.BatchMatMulParams(1, 128, 128, 0, 2**30, -30, -128, 127)  # x 2^-31: ~1
    expected = batch_matmul(p, lhs, rhs, rounding)
    assert int(expected[0, 0]) == 1  # 2130739200 / 2^31 = 0.992 -> 1
    status, out = c_matmul(clib, p, lhs, rhs)
    assert status == MQ_OK
    assert_exact(out, expected, f"worst-case accumulator ({rounding})")


def test_batch_matmul_bad_args(clib):
    p, lhs, rhs = make_case(3, lhs_batch=(2, 2), rhs_batch=(2, 2), m=3, k=4, n=5)
    bad = {
        "depth_mismatch": {"rhs": (2, 2, 5, 3)},
        "rows_mismatch": {"out": (2, 2, 4, 5)},
        "cols_mismatch": {"out": (2, 2, 3, 6)},
        "batch_not_broadcastable": {"lhs": (3, 2, 3, 4), "out": (2, 2, 3, 5)},
        "heads_not_broadcastable": {"rhs": (2, 3, 5, 4)},
        "zero_rows": {"lhs": (2, 2, 0, 4), "out": (2, 2, 0, 5)},
        "too_deep": {"lhs": (1, 1, 1, 32769), "rhs": (1, 1, 1, 32769), "out": (1, 1, 1, 1)},
    }
    for what, dims in bad.items():
        assert c_matmul(clib, p, lhs, rhs, dims=dims)[0] == MQ_ERR_ARG, what
    for field, value in (("lhs_offset", 129), ("rhs_offset", -128), ("act_min", 5)):
        q = replace(p, **{field: value}, **({"act_max": 0} if field == "act_min" else {}))
        assert c_matmul(clib, q, lhs, rhs)[0] == MQ_ERR_ARG, field


def test_batch_matmul_params_match_float():
    """scheme.batch_matmul_params: the int result is float matmul of the dequantized operands,
    quantized, within one output step."""
    rng = np.random.default_rng(11)
    sl, zl, sr, zr = 0.02, 5, 0.03, -7
    lhs = rng.integers(-128, 128, (2, 7, 16)).astype(np.int8)
    rhs = rng.integers(-128, 128, (2, 7, 16)).astype(np.int8)
    fl = sl * (lhs.astype(np.float64) - zl)
    fr = sr * (rhs.astype(np.float64) - zr)
    f = fl @ np.swapaxes(fr, -1, -2)
    s_out, zp_out = float(np.abs(f).max() / 127), 0
    p = scheme.batch_matmul_params(sl, zl, sr, zr, s_out, zp_out, rhs_transposed=True)
    assert p.output_shift <= 0 and p.rhs_transposed == 1
    q = batch_matmul(p, lhs, rhs)
    err = np.abs(q.astype(np.float64) - (f / s_out + zp_out))
    assert err.max() <= 0.5 + 1e-6, f"max error {err.max():.4f} output steps"
    with pytest.raises(Exception, match="too small"):
        scheme.batch_matmul_params(1.0, 0, 1.0, 0, 0.5, 0)


# ---- an attention-shaped graph through codegen ----------------------------------------------


def attention_graph() -> qir.QGraph:
    """x [1, 7, 24] -> layernorm -> slice into q, k, v [1, 7, 8] -> heads [1, 2, 7, 4] ->
    scores = q.k^T -> softmax -> A.v -> gather head 1 -> [1, 7, 4]."""
    rng = np.random.default_rng(5)
    g = qir.QGraph("attn", {}, [], [], [])

    def tensor(name, shape, scale, zp):
        g.tensors[name] = qir.QTensor(name, tuple(shape), qir.QParams(scale, zp))
        return name

    def node(kernel, inputs, out, shape, params, q=None):
        q = q or g.tensors[inputs[0]].q
        tensor(out, shape, q.scale, q.zero_point)
        g.nodes.append(qir.QNode(f"{kernel}_{len(g.nodes)}", kernel, inputs, [out], params))
        return out

    g.inputs.append(tensor("x", (1, 7, 24), 0.05, 3))
    ln_q = qir.QParams(0.03, -2)
    lnp = scheme.layernorm_params(
        0.05, 3, rng.uniform(0.5, 1.5, 24), rng.uniform(-0.5, 0.5, 24), 1e-5, 0.03, -2
    )
    h = node("layernorm", ["x"], "h", (1, 7, 24), lnp, ln_q)
    heads = {}
    for i, part in enumerate("qkv"):
        sp = scheme.slice_params((1, 7, 24), [8 * i], [8 * i + 8], [2])
        t = node("slice", [h], part, (1, 7, 8), sp)
        t = node("reshape", [t], f"{part}_r", (1, 7, 2, 4), qir.ReshapeParams((1, 7, 2, 4)))
        heads[part] = node(
            "transpose", [t], f"{part}_h", (1, 2, 7, 4), qir.TransposeParams((0, 2, 1, 3))
        )
    s_scores = qir.QParams(0.01, 4)
    qk = scheme.batch_matmul_params(0.03, -2, 0.03, -2, 0.01, 4, rhs_transposed=True)
    s = node("batch_matmul", [heads["q"], heads["k"]], "scores", (1, 2, 7, 7), qk, s_scores)
    sm = scheme.softmax_params(0.01, beta=0.5)
    a = node("softmax", [s], "attn", (1, 2, 7, 7), sm, qir.QParams(1 / 256, -128))
    av = scheme.batch_matmul_params(1 / 256, -128, 0.03, -2, 0.025, 1)
    o = node("batch_matmul", [a, heads["v"]], "ctx", (1, 2, 7, 4), av, qir.QParams(0.025, 1))
    head1 = scheme.gather_params((1, 2, 7, 4), 1, -1)
    g.outputs.append(node("slice", [o], "y", (1, 7, 4), head1))
    return g


def test_attention_graph_host_equals_int_exec(tmp_path):
    from microq.codegen import emit
    from microq.ref.int_exec import run_int
    from microq.runtime.host import HostModel

    g = attention_graph()
    summary = emit(g, tmp_path / "attn", "attn", command="test")
    present = {p.name for p in (tmp_path / "attn").iterdir()}
    assert {"mq_matmul.c", "mq_layernorm.c", "mq_slice.c", "mq_softmax.c"} <= present
    macs = {layer.kernel: 0 for layer in summary.layers}
    for layer in summary.layers:
        macs[layer.kernel] += layer.macs
    assert macs["batch_matmul"] == 2 * 7 * 7 * 4 + 2 * 7 * 4 * 7
    assert macs["layernorm"] == 7 * 24

    gcc = shutil.which("gcc")
    assert gcc, "gcc is required"
    strict = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c"]
    srcs = sorted(str(p) for p in (tmp_path / "attn").glob("*.c"))
    cmd = [gcc, *strict, "-I", str(tmp_path / "attn"), *srcs]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr

    model = HostModel.load(tmp_path / "attn")
    rng = np.random.default_rng(9)
    xs = rng.integers(-128, 128, (6, 7, 24)).astype(np.int8)
    xs[0] = 17  # constant rows: LayerNorm gives beta
    got = model.run_int8({"x": xs})["y"]
    seen = {}
    for i in range(len(xs)):
        want = run_int(g, {"x": xs[i : i + 1]}, on_tensor=seen.__setitem__)["y"]
        assert_exact(got[i : i + 1], want, f"attention graph sample {i}")
        assert len(np.unique(seen["scores"])) > 1 or i == 0  # a non-degenerate path
    assert len(np.unique(got[1:])) > 4
