"""Regressions from the end-to-end audit: layouts of graph outputs, compare, invalid models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_builders import make_model, run_ort, single, weights

from microq import api
from microq.errors import MicroqError, UnsupportedModelError
from microq.onnx_import import format_table, import_onnx, inspect_onnx
from microq.ref.float_exec import run_float, to_physical
from microq.api import compare
from microq.compare import run_onnxruntime
from microq.report import Stats

TRANSFORMERS = Path(__file__).resolve().parent / "models" / "transformers"
X_SHAPE = (1, 3, 6, 5)


def _conv_node(out: str = "y1") -> onnx.NodeProto:
    return helper.make_node("Conv", ["x", "w", "b"], [out], name="conv", pads=[1, 1, 1, 1])


def _conv_inits() -> dict[str, np.ndarray]:
    return {"w": weights((4, 3, 3, 3)), "b": weights((4,), seed=7)}


# name: (nodes after the conv, graph outputs). The conv output y1 is read by another node.
OUTPUT_READERS = {
    "transpose_of_output": ([helper.make_node("Transpose", ["y1"], ["y2"], perm=[0, 3, 1, 2])],
                            ["y1", "y2"]),
    "outputs_reversed": ([helper.make_node("Transpose", ["y1"], ["y2"], perm=[0, 3, 1, 2])],
                         ["y2", "y1"]),
    "transpose_to_nhwc": ([helper.make_node("Transpose", ["y1"], ["y2"], perm=[0, 2, 3, 1])],
                          ["y1", "y2"]),
    "transpose_of_relu_output": ([helper.make_node("Relu", ["y1"], ["r"]),
                                  helper.make_node("Transpose", ["r"], ["y2"], perm=[0, 3, 1, 2])],
                                 ["r", "y2"]),
    "identity_of_output": ([helper.make_node("Identity", ["y1"], ["y2"])], ["y1", "y2"]),
    "flatten_of_output": ([helper.make_node("Flatten", ["y1"], ["y2"])], ["y1", "y2"]),
}


def _reader_model(case: str) -> onnx.ModelProto:
    nodes, outs = OUTPUT_READERS[case]
    return make_model([_conv_node()] + nodes, {"x": X_SHAPE}, outs, _conv_inits())


def _x(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n,) + X_SHAPE[1:]).astype(np.float32)


def _first_mismatch(got: np.ndarray, ref: np.ndarray, tol: float) -> str:
    bad = np.argwhere(~np.isclose(got, ref, rtol=tol, atol=tol))
    return "" if not len(bad) else f"first mismatch at {tuple(bad[0])}"


@pytest.mark.parametrize("case", list(OUTPUT_READERS))
def test_reader_of_graph_output_sees_logical_layout_float(case: str) -> None:
    model = _reader_model(case)
    graph = import_onnx(model)
    x = _x(3)
    refs = dict(zip(graph.outputs, run_ort(model, {"x": x})))
    got = run_float(graph, {"x": to_physical(graph, "x", x)})
    for k, ref in refs.items():
        assert got[k].shape == ref.shape, f"{k}: {got[k].shape} != onnxruntime {ref.shape}"
        assert np.allclose(got[k], ref, atol=1e-4), f"{k}: {_first_mismatch(got[k], ref, 1e-4)}"


@pytest.mark.parametrize("case", ["transpose_of_output", "transpose_of_relu_output"])
def test_reader_of_graph_output_compiled_matches_onnxruntime(case: str, tmp_path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_reader_model(case), path)
    res = api.compile_model(path, {"x": _x(32)}, tmp_path / "out")
    x = _x(8, seed=1)
    ref = run_onnxruntime(path, {"x": x})
    got = api.run(tmp_path / "out", {"x": x})
    assert set(got) == set(ref) == set(res.qgraph.outputs)
    header = (tmp_path / "out" / "net.h").read_text()
    for i, k in enumerate(ref):
        assert got[k].shape == ref[k].shape, f"{k}: {got[k].shape} != onnxruntime {ref[k].shape}"
        s = Stats()
        s.add(ref[k], got[k])
        assert s.sqnr_db > 30, f"{k}: SQNR {s.sqnr_db:.1f} dB"
        dims = ", ".join(map(str, (1,) + ref[k].shape[1:]))
        assert f'"{k}": int8 [{dims}]' in header, f"net.h does not declare {k} as [{dims}]"


# --- compare ---------------------------------------------------------------------------------
def test_stats_rejects_a_shape_mismatch() -> None:
    s = Stats()
    with pytest.raises(MicroqError, match=r"shape \(1, 2, 3\).*\(1, 3, 2\)"):
        s.add(np.zeros((1, 2, 3)), np.zeros((1, 3, 2)))
    s.add(np.ones((2, 2)), np.ones((2, 2)))
    assert s.n == 4 and s.max_abs == 0.0


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    path = d / "m.onnx"
    onnx.save(_reader_model("transpose_of_output"), path)
    api.compile_model(path, {"x": _x(32)}, d / "out")
    np.savez(d / "data.npz", x=_x(6, seed=2))
    return d


def test_compare_reports_every_output_with_its_shape(compiled) -> None:
    rep = compare(compiled / "m.onnx", compiled / "out", compiled / "data.npz")
    assert set(rep.outputs) == {"y1", "y2"}
    for k, s in rep.outputs.items():
        assert s.sqnr_db > 30, f"{k}: SQNR {s.sqnr_db:.1f} dB"
    assert rep.layers and all(np.isfinite(r.isolated.sqnr_db) or r.isolated.err2 == 0
                              for r in rep.layers)


def _other_model(tmp_path, name: str, shape: tuple) -> str:
    m = single("Relu", shape)
    m.graph.input[0].name = name
    m.graph.node[0].input[0] = name
    p = tmp_path / f"{name}.onnx"
    onnx.save(m, p)
    return p


@pytest.mark.parametrize("case", ["missing", "truncated", "other_input_name", "other_shape",
                                  "data_keys"])
def test_compare_gives_one_line_errors(case: str, compiled, tmp_path) -> None:
    model, data = compiled / "m.onnx", compiled / "data.npz"
    expect = {"missing": "file not found", "truncated": "not a valid ONNX model",
              "other_input_name": "do not match the inputs of",
              "other_shape": "do not match the inputs of", "data_keys": "no array named 'x'"}
    if case == "missing":
        model = tmp_path / "nope.onnx"
    elif case == "truncated":
        model = tmp_path / "t.onnx"
        model.write_bytes((compiled / "m.onnx").read_bytes()[:100])
    elif case == "other_input_name":
        model = _other_model(tmp_path, "input_1", X_SHAPE)
    elif case == "other_shape":
        model = _other_model(tmp_path, "x", (1, 3, 5, 6))
    else:
        data = tmp_path / "d.npz"
        np.savez(data, input=_x(2))
    with pytest.raises(MicroqError) as e:
        compare(model, compiled / "out", data)
    assert expect[case] in str(e.value) and "\n" not in str(e.value), str(e.value)


def _conv_classifier(path) -> None:
    """Conv, ReLU, global pool, Gemm (qdq.export cannot yet write a model whose conv output is
    itself a graph output)."""
    nodes = [_conv_node(), helper.make_node("Relu", ["y1"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1)]
    inits = dict(_conv_inits(), fw=weights((5, 4), seed=3), fb=weights((5,), seed=4))
    model = make_model(nodes, {"x": X_SHAPE}, ["logits"], inits)
    model.graph.output[0].CopyFrom(
        helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 5]))
    onnx.save(model, path)


def test_compare_of_a_qdq_model_reports_layers(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    _conv_classifier(path)
    qdq = api.quantize_to_qdq(path, {"x": _x(32)}, tmp_path / "m.qdq.onnx")
    api.compile_model(qdq, None, tmp_path / "out")
    np.savez(tmp_path / "d.npz", x=_x(4, seed=3))
    rep = compare(qdq, tmp_path / "out", tmp_path / "d.npz")
    assert set(rep.outputs) == {"logits"} and len(rep.layers) >= 3
    assert all(s.sqnr_db > 30 for s in rep.outputs.values())


# --- invalid or unsupported models: a reason naming the node, never a traceback ---------------
def _reshape_bad() -> onnx.ModelProto:
    node = helper.make_node("Reshape", ["x", "s"], ["y"], name="bad_reshape")
    return make_model([node], {"x": (1, 10)}, ["y"], {"s": np.array([1, 7], np.int64)})


INVALID = {
    "avgpool_kernel_too_big": (lambda: single("AveragePool", (1, 3, 6, 6), kernel_shape=[9, 9]),
                               "kernel 9x9 does not fit the padded input 6x6"),
    "maxpool_kernel_too_big": (lambda: single("MaxPool", (1, 3, 4, 4), kernel_shape=[5, 2]),
                               "kernel 5x2 does not fit the padded input 4x4"),
    "conv_kernel_too_big": (lambda: single("Conv", (1, 2, 3, 3), [weights((4, 2, 5, 5))]),
                            "kernel 5x5 does not fit the padded input 3x3"),
    "reshape_element_count": (_reshape_bad, "Reshape of 10 elements [1, 10] to shape [1, 7]"),
    "concat_axis0": (lambda: single("Concat", (1, 4), [weights((1, 4))], axis=0),
                     "Concat along the batch axis (axis 0) mixes the samples"),
    "softmax_axis0": (lambda: single("Softmax", (1, 10), axis=0),
                      "Softmax along the batch axis"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_model_is_rejected_with_a_reason(case: str, tmp_path) -> None:
    build, reason = INVALID[case]
    model = build()
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(model)
    assert reason in str(e.value), str(e.value)
    assert e.value.__class__ is UnsupportedModelError
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    shape = tuple(d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim)
    with pytest.raises(MicroqError, match="1 unsupported node"):
        api.compile_model(path, {"x": np.zeros((2,) + shape[1:], np.float32)}, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_softmax_axis0_before_opset13_is_still_supported() -> None:
    model = single("Softmax", (1, 2, 5), opset=11, axis=0)
    graph = import_onnx(model)
    x = np.random.default_rng(4).standard_normal((3, 2, 5)).astype(np.float32)
    ref = run_ort(model, {"x": x})[0]
    got = run_float(graph, {"x": x})["y"]
    assert got.shape == ref.shape and np.allclose(got, ref, atol=1e-6), \
        _first_mismatch(got, ref, 1e-6)


# --- inspect ---------------------------------------------------------------------------------
def _attention_scores() -> onnx.ModelProto:
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["x", "xt"], ["y"], name="scores")]
    return make_model(nodes, {"x": (1, 4, 8)}, ["y"])


def test_inspect_counts_activation_matmul_macs_like_compile(tmp_path) -> None:
    path = tmp_path / "att.onnx"
    onnx.save(_attention_scores(), path)
    rep = inspect_onnx(path)
    (row,) = [r for r in rep.rows if r.op == "MatMul"]
    assert row.macs == 4 * 4 * 8
    x = np.random.default_rng(5).standard_normal((16, 4, 8)).astype(np.float32)
    res = api.compile_model(path, {"x": x}, tmp_path / "out")
    assert rep.total_macs == sum(layer.get("macs", 0) for layer in res.meta["layers"])


def test_inspect_vit_macs_equal_compile_summary(tmp_path) -> None:
    path, calib = TRANSFORMERS / "vit_digits.onnx", TRANSFORMERS / "vit_digits_calib.npz"
    rep = inspect_onnx(path)
    res = api.compile_model(path, calib, tmp_path / "out")
    assert rep.total_macs == res.summary_json()["macs"]


def test_inspect_qdq_model_lists_no_qdq_nodes(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    _conv_classifier(path)
    qdq = api.quantize_to_qdq(path, {"x": _x(16)}, tmp_path / "m.qdq.onnx")
    rep = api.inspect(qdq).report
    assert rep.quantized and not rep.unsupported, rep.unsupported
    assert [r.op for r in rep.rows if r.op == "Conv2D"] == ["Conv2D"]
    assert "already quantized" in format_table(rep)
    assert not inspect_onnx(path).quantized


def test_inspect_tflite_says_what_is_wrong(tmp_path) -> None:
    """inspect reads .tflite models now (issue 10); a broken one is a clear one-line error."""
    p = tmp_path / "m.tflite"
    p.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(32))
    with pytest.raises(MicroqError, match="m.tflite: 0 subgraphs"):
        api.inspect(p)
