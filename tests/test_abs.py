"""ONNX Abs in int8 (kernel tests: test_kernel_abs.py): a model with Abs compiles, its C runs bit
for bit as the integer reference and stays >= 30 dB from onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from microq import api
from microq.compare import run_onnxruntime
from microq.ref.int_exec import run_int


def _abs_model() -> onnx.ModelProto:
    f = onnx.TensorProto.FLOAT
    w = np.linspace(-1.0, 1.0, 4 * 3 * 3 * 3, dtype=np.float32).reshape(4, 3, 3, 3)
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Abs", ["c"], ["a"]),
             helper.make_node("Sub", ["a", "k"], ["output"])]
    graph = helper.make_graph(
        nodes, "abs", [helper.make_tensor_value_info("input", f, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("output", f, None)],
        [onnx.numpy_helper.from_array(w, "w"),
         onnx.numpy_helper.from_array(np.array([0.5], np.float32), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_abs_model_compiles_bit_exact_and_accurate(tmp_path):
    path = tmp_path / "abs.onnx"
    onnx.save(_abs_model(), path)
    x = np.random.default_rng(3).normal(0, 1, (32, 3, 6, 6)).astype(np.float32)
    res = api.compile_model(path, {"input": x[:16]}, tmp_path / "net", name="net")
    assert [n.kernel for n in res.qgraph.nodes][:3] == ["conv2d", "abs", "sub"]  # then NCHW
    host = api.load(tmp_path / "net")
    q = {"input": host.quantize_input("input", x)}
    got = host.run_int8(q)["output"]
    qg = api.load_qgraph(tmp_path / "net")
    for i in range(len(x)):
        want = run_int(qg, {"input": q["input"][i : i + 1]})["output"]
        assert np.array_equal(got[i : i + 1].reshape(want.shape), want), i
    y = host.dequantize_output("output", got)
    f = run_onnxruntime(path, {"input": x})["output"]
    sqnr = 10 * np.log10(np.sum(f**2) / np.sum((f - y.reshape(f.shape)) ** 2))
    assert sqnr >= 30.0, f"Abs model: {sqnr:.1f} dB"
