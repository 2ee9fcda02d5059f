"""Attention with constant masks and ONNX Attention (issue 8): causal / boolean / additive 0 /
-inf masks as both torch exporters emit them (tests/models/attention/masked) and ONNX Attention
from the dynamo exporter at opset 23 plus hand-built 3-D GQA / 4-D masked graphs
(tests/models/attention/opset23), all from tools/export_attention_fixtures.py --masked. Each
compiles with the mask as a masked softmax (masked keys get probability exactly 0), the C equals
the integer reference bit for bit, int8 tracks onnxruntime, the float IR equals onnxruntime, and
the emulated Cortex-M4 equals the host. Calibration: the first 48 samples; measurement: the 16
held out. What cannot be compiled is refused in one true line."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import IN_CI
from onnx import TensorProto, helper, numpy_helper

from microq import api
from microq.errors import MicroqError
from microq.onnx_import import import_onnx
from microq.ref.int_exec import run_int
from microq.compare import run_onnxruntime

ROOT = Path(__file__).resolve().parent / "models" / "attention"
FILES = sorted(f"{p.parent.name}/{p.name}" for sub in ("masked", "opset23")
               for p in (ROOT / sub).glob("*.onnx"))
CALIB = 48
# int8 vs onnxruntime on the held-out samples, measured (dB), both exporters alike: masked/
# sdpa_causal 34.5, sdpa_boolmask 37.5, sdpa_addmask 38.4, masked_fill 37.0, mha_causal 32.3,
# encoder_causal 32.2; opset23/ sdpa_causal 34.5, sdpa_boolmask 37.5, sdpa_gqa 36.1,
# sdpa_gqa.dynamo24 (opset 24) 36.1, mha_causal 32.3, encoder_causal 32.2, attention_3d_gqa 32.4,
# attention_4d_mask 33.5.
GOAL_DB = 30.0
M4_FILES = ["masked/encoder_causal.torchscript.onnx", "masked/sdpa_boolmask.dynamo.onnx",
            "opset23/sdpa_gqa.dynamo.onnx", "opset23/attention_3d_gqa.onnx"]


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    err = float(np.sum((ref - np.asarray(got, np.float64).reshape(ref.shape)) ** 2))
    return math.inf if err == 0 else 10 * math.log10(float(np.sum(ref**2)) / err)


def _samples(fname: str) -> np.ndarray:
    return np.load(ROOT / fname.split("/")[0] / f"{Path(fname).name.split('.')[0]}.npz")["input"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    cache = {}

    def get(fname: str):
        if fname not in cache:
            x = _samples(fname)
            out = tmp_path_factory.mktemp(fname.replace("/", "_").replace(".", "_")) / "net"
            api.compile_model(ROOT / fname, {"input": x[:CALIB]}, out, name="net")
            cache[fname] = (out, x[CALIB:])
        return cache[fname]

    return get


def test_fixture_forms_per_exporter():
    """What each exporter emits: TorchScript and dynamo opset 18 spell the mask out (Add of a
    constant or Where before a Softmax), dynamo opset 23 emits ONNX Attention."""
    names = {f.split("/")[0]: set() for f in FILES}
    for f in FILES:
        names[f.split("/")[0]].add(f.split("/")[1])
    masked = {f.split(".")[0] for f in names["masked"]}
    assert len(masked) == 6
    for n in masked:
        assert {f"{n}.torchscript.onnx", f"{n}.dynamo.onnx"} <= names["masked"]
    for f in FILES:
        ops = {n.op_type for n in onnx.load(str(ROOT / f)).graph.node}
        assert ("Attention" in ops) == f.startswith("opset23/"), f


@pytest.mark.parametrize("fname", FILES)
def test_masked_attention_c_equals_reference_and_tracks_float(compiled, fname):
    out, x = compiled(fname)
    m, qg = api.load(out), api.load_qgraph(out)
    kernels = [n.kernel for n in qg.nodes]
    assert "softmax_masked" in kernels and "softmax" not in kernels, kernels
    q = m.quantize_input("input", x)
    got = m.run_int8({"input": q})["output"]
    rounding = m.meta.get("rounding", "double")
    for i in range(len(x)):
        ref = run_int(qg, {"input": q[i : i + 1]}, rounding)["output"]
        c = got[i : i + 1].reshape(ref.shape)
        if not np.array_equal(c, ref):
            bad = tuple(int(j) for j in np.argwhere(c != ref)[0])
            pytest.fail(f"{fname} sample {i}: C != integer reference first at {bad}")
    db = sqnr_db(run_onnxruntime(ROOT / fname, {"input": x})["output"],
                 m.dequantize_output("output", got))
    assert db >= GOAL_DB, f"{fname}: int8 vs onnxruntime {db:.1f} dB < {GOAL_DB} dB"


@pytest.mark.parametrize("fname", FILES)
def test_masked_attention_float_ir_equals_onnxruntime(fname):
    from microq.ref.float_exec import run_float, to_physical

    x = _samples(fname)[CALIB:]
    g = import_onnx(ROOT / fname)
    assert "MaskedSoftmax" in [n.op for n in g.nodes]
    y = run_float(g, {"input": to_physical(g, "input", x)})["output"]
    ref = run_onnxruntime(ROOT / fname, {"input": x})["output"]
    np.testing.assert_allclose(y.reshape(ref.shape), ref, atol=2e-5)


@pytest.mark.parametrize("name", ["sdpa_causal", "sdpa_boolmask", "mha_causal",
                                  "encoder_causal"])
def test_every_exporter_form_compiles_to_the_same_int8(compiled, name):
    """One torch model, three exported forms (TorchScript's -inf Add, dynamo opset 18's
    -3.4e38 Add, dynamo opset 23's ONNX Attention): the same int8 outputs bit for bit, so the
    Attention lowering is the exporters' own decomposition."""
    forms = [f"masked/{name}.torchscript.onnx", f"masked/{name}.dynamo.onnx",
             f"opset23/{name}.dynamo.onnx"]
    got = []
    for f in forms:
        out, x = compiled(f)
        m = api.load(out)
        got.append(m.run_int8({"input": m.quantize_input("input", x)})["output"])
    for f, g in zip(forms[1:], got[1:]):
        assert np.array_equal(g.reshape(got[0].shape), got[0]), f"{f} != {forms[0]}"


@pytest.mark.parametrize("fname", ["masked/sdpa_causal.dynamo.onnx",
                                   "masked/mha_causal.torchscript.onnx"])
def test_qdq_round_trip_of_a_masked_model_gives_the_same_int8(compiled, fname, tmp_path):
    """microq quantize (QDQ ONNX out) then compile: the mask survives as the same masked
    softmax and the outputs are the direct compile's bit for bit."""
    out, x = compiled(fname)
    qdq = api.quantize_to_qdq(ROOT / fname, {"input": _samples(fname)[:CALIB]},
                              tmp_path / "m.int8.onnx")
    api.compile_model(qdq, None, tmp_path / "from_qdq", name="net")
    a, b = api.load(out), api.load(tmp_path / "from_qdq")
    masks = [[n.params.mask for n in api.load_qgraph(d).nodes if n.kernel == "softmax_masked"]
             for d in (out, tmp_path / "from_qdq")]
    assert len(masks[0]) == len(masks[1]) == 1 and np.array_equal(masks[0][0], masks[1][0])
    q = a.quantize_input("input", x)
    assert np.array_equal(b.quantize_input("input", x), q)
    assert np.array_equal(a.run_int8({"input": q})["output"], b.run_int8({"input": q})["output"])


def test_qdq_export_of_onnx_attention_is_refused_not_inexact(tmp_path):
    """Attention's scores and probabilities are no tensors of the ONNX graph: a QDQ file could
    not carry their parameters (re-importing gave +-1 differences), so microq quantize says so
    and writes nothing."""
    fname = "opset23/attention_3d_gqa.onnx"
    with pytest.raises(MicroqError, match=r"node 'attention' \(Attention\): a QDQ model cannot "
                                          r"carry the int8 parameters"):
        api.quantize_to_qdq(ROOT / fname, {"input": _samples(fname)[:CALIB]},
                            tmp_path / "m.int8.onnx")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fname", M4_FILES)
def test_masked_attention_cortex_m4_equals_host(compiled, fname):
    from microq.runtime import mcu

    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        msg = f"{', '.join(missing)} not installed: apt-get install -y {mcu.ARM_PACKAGES}"
        if IN_CI:
            pytest.fail(msg + " (under CI=true this is a failure)")
        pytest.skip(msg)
    out, x = compiled(fname)
    m = api.load(out)
    q = {"input": m.quantize_input("input", x[:4])}
    want = m.run_int8(q)["output"]
    got = mcu.run_int8(out, "cortex-m4", q)["output"]
    if not np.array_equal(got, want):
        bad = tuple(int(j) for j in np.argwhere(got != want)[0])
        pytest.fail(f"{fname}: Cortex-M4 != host first at {bad}")


# --- hand-built graphs: the mask semantics and the refusals --------------------------------

T, C = 6, 8


def _attention_model(path, attrs=None, mask=None, extra_inputs=(), outputs=("y",),
                     mask_input=False, opset=23):
    """input [N, T, C] -> MatMul q, k, v -> Attention (3-D, 2 heads) -> output."""
    rng = np.random.default_rng(11)
    inits = [numpy_helper.from_array(rng.standard_normal((C, C)).astype(np.float32) / 3, f"W{z}")
             for z in "qkv"]
    nodes = [helper.make_node("MatMul", ["input", f"W{z}"], [z], name=f"p{z}") for z in "qkv"]
    ins = ["q", "k", "v"]
    graph_inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", T, C])]
    if mask is not None:
        if mask_input:
            nodes.append(helper.make_node("Mul", ["input", "input"], ["sq"], name="sq"))
            nodes.append(helper.make_node("MatMul", ["sq", "Wsq"], ["m"], name="mask_of_x"))
            inits.append(numpy_helper.from_array(np.ones((C, T), np.float32), "Wsq"))
        else:
            inits.append(numpy_helper.from_array(mask, "m"))
        ins.append("m")
    ins += list(extra_inputs)
    for e in extra_inputs:
        if e == "nonpad":
            inits.append(numpy_helper.from_array(np.array([T], np.int64), e))
        elif e:
            inits.append(numpy_helper.from_array(np.zeros((1, 2, 2, C // 2), np.float32), e))
    outs = list(outputs)
    nodes.append(helper.make_node("Attention", ins, outs, name="attn", q_num_heads=2,
                                  kv_num_heads=2, **(attrs or {})))
    nodes.append(helper.make_node("Identity", ["y"], ["output"], name="out"))
    g_outs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", T, C])]
    if len(outs) > 3 and outs[3]:
        g_outs.append(helper.make_tensor_value_info(outs[3], TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, "g", graph_inputs, g_outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    onnx.save(m, str(path))


def _x(n=16):
    return np.random.default_rng(4).standard_normal((n, T, C)).astype(np.float32)


def test_fully_masked_query_row_gives_a_zero_output_row(tmp_path):
    """The all-masked-row rule (ONNX Attention's, torch SDPA's): a query whose keys are all
    masked attends to nothing, its output row is exactly 0 (not NaN, not uniform)."""
    keep = np.tril(np.ones((T, T), bool))
    keep[2] = False
    _attention_model(tmp_path / "m.onnx", mask=keep)
    api.compile_model(tmp_path / "m.onnx", {"input": _x()}, tmp_path / "out", name="net")
    m = api.load(tmp_path / "out")
    y = m.dequantize_output("output", m.run_int8({"input": m.quantize_input("input", _x())})
                            ["output"]).reshape(-1, T, C)
    assert (y[:, 2] == 0).all() and (np.abs(y[:, [0, 1, 3]]).sum(axis=-1) > 0).all()


def test_masked_key_gets_exactly_zero_probability(tmp_path):
    """Masked keys' int8 probabilities are exactly 0 (-128), so what a masked token holds
    cannot reach any other token's output (a saturated 'most negative' logit would leak)."""
    keep = np.ones((T, T), bool)
    keep[:, 0] = False  # nobody may look at token 0
    _attention_model(tmp_path / "m.onnx", mask=keep)
    x = _x()
    api.compile_model(tmp_path / "m.onnx", {"input": x}, tmp_path / "out", name="net")
    m, qg = api.load(tmp_path / "out"), api.load_qgraph(tmp_path / "out")
    sm = next(n for n in qg.nodes if n.kernel == "softmax_masked")
    assert (sm.params.mask[:, 0] == 0).all() and (sm.params.mask[:, 1:] == 1).all()
    seen = {}
    q = m.quantize_input("input", x)
    run_int(qg, {"input": q[:1]}, m.meta.get("rounding", "double"),
            on_tensor=lambda name, v: seen.__setitem__(name, v))
    p = seen[sm.outputs[0]].reshape(-1, T).astype(np.int64)
    assert (p[:, 0] == -128).all()
    assert (np.abs((p[:, 1:] + 128).sum(axis=1) - 256) <= T).all()  # the kept keys sum to 1
    q2 = q.copy()
    q2[:, 0] = np.random.default_rng(9).integers(-128, 128, q2[:, 0].shape)  # token 0 changes
    a = m.run_int8({"input": q})["output"].reshape(-1, T, C)
    b = m.run_int8({"input": q2})["output"].reshape(-1, T, C)
    assert np.array_equal(a[:, 1:], b[:, 1:]), "a masked token changed another token's output"
    assert not np.array_equal(a[:, 0], b[:, 0])


@pytest.mark.parametrize("case, kwargs, message", [
    ("past_key", {"extra_inputs": ("", "pk", "pv")},
     r"node 'attn' \(Attention\): past_key / past_value \(a KV cache"),
    ("softcap", {"attrs": {"softcap": 30.0}}, r"softcap=30 .* not supported in int8"),
    ("nonconst_mask", {"mask": np.zeros((T, T), np.float32), "mask_input": True},
     r"a non-constant attn_mask is not supported"),
    ("alibi_bias", {"mask": (-np.abs(np.arange(T) - np.arange(T)[:, None]) * 0.5)
                    .astype(np.float32)},
     r"float attn_mask 'm' holds values other than 0 and -inf \(e.g. -0.5\)"),
    ("qk_output_used", {"outputs": ("y", "", "", "qk")}, r"output 3 \(qk_matmul_output\) is used"),
    ("nonpad_kv_seqlen", {"extra_inputs": ("", "", "", "nonpad"), "opset": 24},
     r"nonpad_kv_seqlen \(per-sample key lengths, opset 24\) is not supported"),
])
def test_attention_refusals_say_why(tmp_path, case, kwargs, message):
    _attention_model(tmp_path / "m.onnx", **kwargs)
    with pytest.raises(MicroqError, match=message):
        api.compile_model(tmp_path / "m.onnx", {"input": _x()}, tmp_path / "out", name="net")
    assert not (tmp_path / "out").exists()


def test_attention_mask_of_sample_dependent_batch_is_refused(tmp_path):
    """A constant mask with a batch axis (exported at batch 2) whose samples differ."""
    keep = np.ones((2, 1, T, T), bool)
    keep[1, 0, :, 0] = False
    _attention_model(tmp_path / "m.onnx", mask=keep)
    with pytest.raises(MicroqError, match=r"differs between the samples"):
        api.compile_model(tmp_path / "m.onnx", {"input": _x()}, tmp_path / "out", name="net")


def test_bias_plus_mask_before_softmax_is_refused_with_a_true_message(tmp_path):
    """Add(scores, M) with M holding -inf and a non-zero bias (ALiBi + causal): refused."""
    from test_probe_regressions import _masked_softmax_model

    bias = np.random.default_rng(1).uniform(-2, 2, (4, 4))
    _masked_softmax_model(tmp_path / "m.onnx", np.tril(np.ones((4, 4), bool)), np.array(-np.inf),
                          zero=bias)
    calib = {"input": np.random.default_rng(0).standard_normal((8, 4, 6)).astype(np.float32)}
    with pytest.raises(MicroqError, match=r"node 'add_mask' adds the constant '.*' which holds "
                                          r"masked \(-inf\) entries and a bias"):
        api.compile_model(tmp_path / "m.onnx", calib, tmp_path / "out", name="net")
    assert not (tmp_path / "out").exists()


def test_cross_attention_with_shorter_queries_tracks_onnxruntime(tmp_path):
    """Sq = 4 queries (the first tokens) over Skv = 6 keys, 3-D, MQA (2 q heads, 1 kv head),
    causal (query i sees keys j <= i: no past keys, so no offset): float IR == onnxruntime;
    int8 >= 30 dB (calibrated on the measured samples: gaussian inputs beyond a held-out
    calibration range would measure clipping, not the lowering; measured 31.9 dB)."""
    from microq.ref.float_exec import run_float, to_physical

    rng = np.random.default_rng(12)
    d = C // 2
    inits = [numpy_helper.from_array((rng.standard_normal(shape) / 3).astype(np.float32), n)
             for n, shape in (("Wq", (C, C)), ("Wk", (C, d)), ("Wv", (C, d)))]
    inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
              (("s0", [0]), ("s1", [4]), ("ax", [1]))]
    nodes = [helper.make_node("Slice", ["input", "s0", "s1", "ax"], ["xq"], name="first4"),
             helper.make_node("MatMul", ["xq", "Wq"], ["q"], name="pq"),
             helper.make_node("MatMul", ["input", "Wk"], ["k"], name="pk"),
             helper.make_node("MatMul", ["input", "Wv"], ["v"], name="pv"),
             helper.make_node("Attention", ["q", "k", "v"], ["output"], name="attn",
                              q_num_heads=2, kv_num_heads=1, is_causal=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, ["N", T, C])], [helper.make_tensor_value_info(
            "output", TensorProto.FLOAT, ["N", 4, C])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 23)])
    m.ir_version = 10
    onnx.save(m, str(tmp_path / "m.onnx"))
    x = _x(32)
    ref = run_onnxruntime(tmp_path / "m.onnx", {"input": x})["output"]
    ir = import_onnx(tmp_path / "m.onnx")
    y = run_float(ir, {"input": to_physical(ir, "input", x)})["output"]
    np.testing.assert_allclose(y.reshape(ref.shape), ref, atol=2e-5)
    api.compile_model(tmp_path / "m.onnx", {"input": x}, tmp_path / "out", name="net")
    mm = api.load(tmp_path / "out")
    got = mm.dequantize_output("output", mm.run_int8({"input": mm.quantize_input(
        "input", x)})["output"])
    db = sqnr_db(ref, got)
    assert db >= GOAL_DB, f"{db:.1f} dB"


def test_mask_before_a_softmax_over_another_axis_is_refused(tmp_path):
    """The mask fuses only into a Softmax over its last axis; otherwise a true refusal."""
    rng = np.random.default_rng(3)
    keep = np.tril(np.ones((4, 4), bool))
    inits = [numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "W"),
             numpy_helper.from_array(np.where(keep, 0, -np.inf).astype(np.float32), "mask")]
    nodes = [helper.make_node("MatMul", ["input", "W"], ["s"], name="scores"),
             helper.make_node("Add", ["s", "mask"], ["sm"], name="add_mask"),
             helper.make_node("Softmax", ["sm"], ["output"], axis=1, name="softmax")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, ["N", 4, 6])], [helper.make_tensor_value_info(
            "output", TensorProto.FLOAT, ["N", 4, 4])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
              str(tmp_path / "m.onnx"))
    calib = {"input": rng.standard_normal((8, 4, 6)).astype(np.float32)}
    with pytest.raises(MicroqError, match=r"node 'add_mask' adds the constant attention mask "
                                          r"'mask' \(-inf entries\) but its result is not only"):
        api.compile_model(tmp_path / "m.onnx", calib, tmp_path / "out", name="net")


def test_inf_mask_constant_that_does_not_reach_a_softmax_is_refused_as_a_mask(tmp_path):
    """A 0 / -inf mask constant combined with a mask given as a graph input (Add(m, causal),
    then Add(scores, .) before the Softmax, as ONNX's Attention function bodies do): refused
    saying the -inf constant is a mask microq compiles only right before a Softmax; it said
    'contains NaN or Inf; fix the model's weights', which is not the advice for a mask."""
    rng = np.random.default_rng(4)
    causal = np.where(np.tril(np.ones((4, 4), bool)), 0, -np.inf).astype(np.float32)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "W"),
             numpy_helper.from_array(causal, "causal")]
    nodes = [helper.make_node("MatMul", ["input", "W"], ["s"], name="scores"),
             helper.make_node("Add", ["m", "causal"], ["mc"], name="combine_masks"),
             helper.make_node("Add", ["s", "mc"], ["sm"], name="add_mask"),
             helper.make_node("Softmax", ["sm"], ["output"], axis=-1, name="softmax")]
    vi = helper.make_tensor_value_info
    g = helper.make_graph(nodes, "g", [vi("input", TensorProto.FLOAT, ["N", 4, 6]),
                                       vi("m", TensorProto.FLOAT, ["N", 4, 4])],
                          [vi("output", TensorProto.FLOAT, ["N", 4, 4])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
              str(tmp_path / "m.onnx"))
    calib = {"input": rng.standard_normal((8, 4, 6)).astype(np.float32),
             "m": np.zeros((8, 4, 4), np.float32)}
    with pytest.raises(MicroqError) as e:
        api.compile_model(tmp_path / "m.onnx", calib, tmp_path / "out", name="net")
    msg = str(e.value)
    assert "-inf" in msg and "Softmax" in msg and "fix the model's weights" not in msg, msg
    assert not (tmp_path / "out").exists()
