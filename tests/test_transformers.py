"""Transformers end to end: import of the attention patterns, and two tiny trained models.

Models (tests/models/transformers, made by tools/train_transformers.py with torch 2.13.0+cpu, seed 0):
- vit_digits: ViT on scikit-learn digits (16 patches, 2 blocks, 2 heads); calibrated on 200
  training samples, tested on the 360 held-out ones;
- kws_transformer: 1 block, 2 heads, on sww01's 45 labelled spectrograms; with 45 samples it is
  calibrated and tested on the data it was trained on (train = test).
Claims: the importer matches onnxruntime in float for every exporter variant; the C equals the
integer reference bit for bit, on the host and on the emulated Cortex-M4; int8 accuracy is within
1.5 points of float; `compare` reports the attention internals (scores, softmax, LayerNorm) with
their SQNR.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from microq import api, ir
from microq.onnx_import import convert_with_problems, import_onnx
from microq.ref.float_exec import layer_norm, run_float, to_physical
from microq.ref.int_exec import run_int
from microq.compare import run_onnxruntime
from conftest import IN_CI
from onnx_builders import assert_close, make_model, run_ort, weights

MODELS = Path(__file__).resolve().parent / "models" / "transformers"
VIT = MODELS / "vit_digits.onnx"
KWS = MODELS / "kws_transformer.onnx"
CASES = {  # name: (model, calibration data, test data)
    "vit_digits": (VIT, MODELS / "vit_digits_calib.npz", MODELS / "vit_digits_test.npz"),
    "kws_transformer": (KWS, MODELS / "kws_transformer_data.npz",
                        MODELS / "kws_transformer_data.npz"),
}


def _float_matches_onnxruntime(path_or_model, x: np.ndarray, tol: float = 1e-4) -> ir.Graph:
    graph = import_onnx(path_or_model)
    feeds = {graph.inputs[0]: to_physical(graph, graph.inputs[0], x)}
    got = run_float(graph, feeds)[graph.outputs[0]]
    if isinstance(path_or_model, Path):
        ref = run_onnxruntime(path_or_model, {graph.inputs[0]: x})[graph.outputs[0]]
    else:
        ref = run_ort(path_or_model, {graph.inputs[0]: x})[0]
    assert_close(got, ref, tol, "float IR vs onnxruntime")
    return graph


# --- import: the exported models ---------------------------------------------------------------
EXPORTS = {  # file: the activation kind its GELU must import as
    "vit_digits.onnx": "gelu",  # TorchScript opset 17: LayerNormalization, Erf GELU
    "vit_digits.opset13.onnx": "gelu",  # decomposed LayerNorm (ReduceMean, Sub, Pow, Sqrt, Div)
    "vit_digits.dynamo.onnx": "gelu",  # dynamo opset 18: Split, x * (0.5 * (1 + erf))
    "vit_digits.opset20.dynamo.onnx": "gelu",  # the Gelu op
    "kws_transformer.onnx": "gelu_tanh",  # the tanh approximation, decomposed
}


@pytest.mark.parametrize("name", list(EXPORTS))
def test_exported_model_imports_and_matches_onnxruntime(name):
    x = np.load(MODELS / ("kws_transformer_data.npz" if name.startswith("kws") else
                          "vit_digits_test.npz"))["input"][:16]
    graph = _float_matches_onnxruntime(MODELS / name, x)
    ops = Counter(n.op for n in graph.nodes)
    blocks = 1 if name.startswith("kws") else 2
    assert ops["LayerNorm"] == 2 * blocks + 1, ops
    assert ops["MatMul"] == 2 * blocks and ops["Softmax"] == blocks, ops
    assert ops["Mul"] == 0, f"the 1/sqrt(d) scale was not folded into the MatMul: {ops}"
    scores = [n for n in graph.nodes if n.op == "MatMul" and n.attrs.alpha != 1.0]
    assert len(scores) == blocks and all(abs(n.attrs.alpha - 0.25) < 1e-6 for n in scores)
    kinds = {n.attrs.kind for n in graph.nodes if n.op == "Activation"}
    assert kinds == {EXPORTS[name]}, kinds
    assert ops["AvgPool"] == 1, "the mean over tokens is one pool"


# --- import: hand-built patterns ---------------------------------------------------------------
def _decomposed_ln(square: str, divide: str, affine: bool) -> tuple[list, dict]:
    n = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1]),
         helper.make_node("Sub", ["x", "m"], ["d"])]
    n.append(helper.make_node("Pow", ["d", "two"], ["sq"]) if square == "pow" else
             helper.make_node("Mul", ["d", "d"], ["sq"]))
    n += [helper.make_node("ReduceMean", ["sq"], ["v"], axes=[2]),
          helper.make_node("Add", ["v", "eps"], ["ve"]),
          helper.make_node("Sqrt", ["ve"], ["s"])]
    if divide == "div":
        n.append(helper.make_node("Div", ["d", "s"], ["z" if affine else "y"]))
    else:
        n += [helper.make_node("Reciprocal", ["s"], ["r"]),
              helper.make_node("Mul", ["r", "d"], ["z" if affine else "y"])]
    inits = {"two": np.array(2.0, np.float32), "eps": np.array(1e-5, np.float32)}
    if affine:
        n += [helper.make_node("Mul", ["z", "g"], ["zg"]),
              helper.make_node("Add", ["zg", "b"], ["y"])]
        inits.update(g=weights((12,), 1) + 1, b=weights((12,), 2))
    return n, inits


@pytest.mark.parametrize("square,divide,affine", [
    ("pow", "div", True), ("mul", "reciprocal", False), ("mul", "div", True)],
    ids=["pow_div_affine", "mul_reciprocal_plain", "mul_div_affine"])
def test_decomposed_layernorm_becomes_one_node(square, divide, affine):
    nodes, inits = _decomposed_ln(square, divide, affine)
    model = make_model(nodes, {"x": (1, 5, 12)}, ["y"], inits)
    graph = _float_matches_onnxruntime(model, weights((4, 5, 12), 3, 2.0) + 1.0)
    assert [n.op for n in graph.nodes] == ["LayerNorm"]
    assert len(graph.nodes[0].source) == len(nodes)


def _tanh_gelu(cube: str, order: str) -> tuple[list, dict]:
    n = [helper.make_node("Pow", ["x", "three"], ["c"])] if cube == "pow" else [
        helper.make_node("Mul", ["x", "x"], ["x2"]), helper.make_node("Mul", ["x", "x2"], ["c"])]
    n += [helper.make_node("Mul", ["kappa", "c"], ["kc"]),
          helper.make_node("Add", ["x", "kc"], ["s"]),
          helper.make_node("Mul", ["s", "beta"], ["u"]),
          helper.make_node("Tanh", ["u"], ["t"]),
          helper.make_node("Add", ["t", "one"], ["a"])]
    if order == "half_first":
        n += [helper.make_node("Mul", ["x", "half"], ["h"]),
              helper.make_node("Mul", ["h", "a"], ["y"])]
    else:
        n += [helper.make_node("Mul", ["x", "a"], ["xa"]),
              helper.make_node("Mul", ["xa", "half"], ["y"])]
    consts = {"three": 3.0, "kappa": 0.044715, "beta": float(np.sqrt(2 / np.pi)), "one": 1.0,
              "half": 0.5}
    return n, {k: np.array(v, np.float32) for k, v in consts.items()}


@pytest.mark.parametrize("cube,order", [("pow", "half_first"), ("mul", "half_last")])
def test_tanh_gelu_becomes_one_activation(cube, order):
    nodes, inits = _tanh_gelu(cube, order)
    model = make_model(nodes, {"x": (1, 3, 10)}, ["y"], inits)
    graph = _float_matches_onnxruntime(model, weights((4, 3, 10), 4, 2.0))
    assert [(n.op, n.attrs.kind) for n in graph.nodes] == [("Activation", "gelu_tanh")]


def test_heads_split_slice_gather_and_scaled_matmul():
    """qkv [N, T, 3 * 2 * 4]: Split into q, k, v; heads by Reshape + Transpose; scores scaled by
    Div; softmax; A.V; plus a strided Slice and a Gather of one token."""
    t, h, dh = 5, 2, 4
    n = [helper.make_node("Split", ["x", "sizes"], ["q", "k", "v"], axis=2)]
    for z in "qkv":
        n.append(helper.make_node("Reshape", [z, "heads"], [f"{z}4"]))
    n += [helper.make_node("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),
          helper.make_node("Transpose", ["k4"], ["kt"], perm=[0, 2, 3, 1]),
          helper.make_node("Transpose", ["v4"], ["vh"], perm=[0, 2, 1, 3]),
          helper.make_node("MatMul", ["qh", "kt"], ["s"]),
          helper.make_node("Div", ["s", "sqrt_d"], ["ss"]),
          helper.make_node("Softmax", ["ss"], ["p"], axis=-1),
          helper.make_node("MatMul", ["p", "vh"], ["o"]),
          helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["strided"]),
          helper.make_node("Gather", ["x", "one"], ["token"], axis=1),
          helper.make_node("ReduceMean", ["o"], ["mean"], axes=[2], keepdims=0)]
    inits = {"sizes": np.array([8, 8, 8], np.int64), "heads": np.array([1, t, h, dh], np.int64),
             "sqrt_d": np.array(2.0, np.float32), "st": np.array([1, 3], np.int64),
             "en": np.array([100, 20], np.int64), "ax": np.array([1, 2], np.int64),
             "sp": np.array([2, 3], np.int64), "one": np.array(1, np.int64)}
    outs = ["o", "strided", "token", "mean"]
    model = make_model(n, {"x": (1, t, 3 * h * dh)}, outs, inits, opset=13, batch=1)
    x = weights((1, t, 3 * h * dh), 5, 1.5)
    graph = import_onnx(model)
    got = run_float(graph, {"x": x})
    for name, ref in zip(outs, run_ort(model, {"x": x})):
        assert_close(got[name], ref, 1e-5, name)
    mm = [n for n in graph.nodes if n.op == "MatMul"]
    assert [m.attrs.alpha for m in mm] == [0.5, 1.0]
    assert all(m.attrs.transpose_b for m in mm), "b operands are moved to [.., N, K] once"


@pytest.mark.parametrize("axis", [-1, 1], ids=["last_axis", "trailing_axes"])
def test_layernormalization_op(axis):
    shape = (1, 3, 7)
    width = int(np.prod(shape[axis:]))
    g = weights(shape[axis:], 6) + 1
    node = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=axis,
                            epsilon=1e-3)
    model = make_model([node], {"x": shape}, ["y"], {"g": g, "b": weights(shape[axis:], 7)},
                       opset=17)
    graph = _float_matches_onnxruntime(model, weights((4,) + shape[1:], 8, 3.0))
    ln = [n for n in graph.nodes if n.op == "LayerNorm"]
    assert len(ln) == 1 and graph.tensors[ln[0].inputs[1]].shape == (width,)


def test_layernorm_of_a_constant_row_is_beta():
    x = np.full((2, 3, 5), 0.7, np.float32)
    beta = np.arange(5, dtype=np.float32)
    y = layer_norm([x, np.ones(5, np.float32), beta], ir.LayerNormAttrs(1e-5))
    assert np.all(np.isfinite(y)) and np.array_equal(y, np.broadcast_to(beta, x.shape))


def test_unsupported_attention_variants_are_reported():
    n = [helper.make_node("Gather", ["x", "idx"], ["y"], axis=1)]
    model = make_model(n, {"x": (1, 6, 4)}, ["y"], {"idx": np.array([0, 2], np.int64)})
    _, problems = convert_with_problems(model)
    assert [(op, "non-consecutive" in why) for _, op, why in problems] == [("Gather", True)]


# --- end to end: compile, run the C, compare ---------------------------------------------------
@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    cache = {}

    def get(key, rounding="double"):
        if (key, rounding) not in cache:
            model, calib, _ = CASES[key]
            out = tmp_path_factory.mktemp(f"{key}_{rounding}") / key
            api.compile_model(model, calib, out, name=key.split("_")[0], rounding=rounding)
            cache[key, rounding] = out
        return cache[key, rounding]

    return get


@pytest.mark.parametrize("rounding", ["double", "single"])
@pytest.mark.parametrize("key", list(CASES))
def test_c_equals_integer_reference(compiled, key, rounding):
    out = compiled(key, rounding)
    x = np.load(CASES[key][2])["input"][:24]
    m = api.load(out)
    q = m.quantize_input("input", x)
    got = m.run_int8({"input": q})
    qg = api.load_qgraph(out)
    for i in range(len(x)):
        ref = run_int(qg, {"input": q[i : i + 1]}, rounding)
        for name in qg.outputs:
            c = got[name][i : i + 1].reshape(ref[name].shape)
            if not np.array_equal(c, ref[name]):
                bad = tuple(int(j) for j in np.argwhere(c != ref[name])[0])
                pytest.fail(f"{key} sample {i} output {name}: C != reference first at {bad}")


@pytest.mark.parametrize("key", list(CASES))
def test_int8_accuracy_within_1_5_points_of_float(compiled, key):
    model, _, test = CASES[key]
    z = np.load(test)
    ref = run_onnxruntime(model, {"input": z["input"]})["logits"]
    got = api.run(compiled(key), {"input": z["input"]})["logits"]
    acc_f = float(np.mean(ref.argmax(1) == z["label"]))
    acc_q = float(np.mean(got.argmax(1) == z["label"]))
    assert acc_f > 0.9, f"float accuracy {acc_f:.3f}: the stored model is broken"
    assert acc_q >= acc_f - 0.015, f"{key}: int8 {acc_q:.4f} vs float {acc_f:.4f}"


@pytest.mark.parametrize("key", list(CASES))
def test_compare_reports_attention_internals(compiled, key):
    model, _, test = CASES[key]
    rep = api.compare(model, compiled(key), test)
    layers = rep.to_json()["layers"]
    by_kernel: dict[str, list[float]] = {}
    for layer in layers:
        by_kernel.setdefault(layer["kernel"], []).append(layer["sqnr_db"])
    blocks = 1 if key.startswith("kws") else 2
    assert len(by_kernel.get("batch_matmul", [])) == 2 * blocks, by_kernel.keys()  # scores, A.V
    assert len(by_kernel.get("softmax", [])) == blocks
    assert len(by_kernel.get("layernorm", [])) == 2 * blocks + 1
    for kernel in ("batch_matmul", "softmax", "layernorm", "fully_connected"):
        assert min(by_kernel[kernel]) > 15, f"{kernel} SQNR {by_kernel[kernel]}"


@pytest.mark.parametrize("key", list(CASES))
def test_emulated_cortex_m4_equals_host(compiled, key):
    from microq.runtime import mcu

    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        msg = f"{', '.join(missing)} not installed: apt-get install -y {mcu.ARM_PACKAGES}"
        if IN_CI:
            pytest.fail(msg + " (under CI=true this is a failure)")
        pytest.skip(msg)
    out = compiled(key)
    m = api.load(out)
    q = {"input": m.quantize_input("input", np.load(CASES[key][2])["input"][:4])}
    want = m.run_int8(q)["logits"]
    got = mcu.run_int8(out, "cortex-m4", q)["logits"]
    if not np.array_equal(got, want):
        bad = tuple(int(j) for j in np.argwhere(got != want)[0])
        pytest.fail(f"{key}: Cortex-M4 != host first at {bad}")
