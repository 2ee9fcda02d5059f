"""ONNX Abs in int8 (mq_abs_s8): C == reference on randomized parameters, and a model with Abs
compiles, runs bit-exact against the integer reference and stays >= 30 dB from onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from cabi import Abi, out8
from onnx import helper

from microq import api
from microq.compare import run_onnxruntime
from microq.qir import RequantizeParams
from microq.ref import elementwise as ref
from microq.ref.int_exec import run_int


def _c_abs(clib, p: RequantizeParams, x: np.ndarray) -> np.ndarray:
    abi = Abi(clib)
    out = out8(x.shape)
    status = abi.lib.mq_abs_s8(abi.struct(p), x.size, abi.i8(x), abi.i8(out))
    assert status == abi.lib.MQ_OK
    return out


@pytest.mark.parametrize("rounding,fixture", [("double", "clib"), ("single", "clib_single")])
def test_abs_kernel_equals_reference(request, rounding, fixture):
    clib = request.getfixturevalue(fixture)
    rng = np.random.default_rng(14)
    for _ in range(40):
        lo, hi = sorted(int(v) for v in rng.integers(-128, 128, 2))
        p = RequantizeParams(input_offset=int(rng.integers(-127, 128)),
                             output_offset=int(rng.integers(-128, 128)),
                             multiplier=int(rng.integers(2**30, 2**31 - 1)),
                             shift=int(rng.integers(-10, 3)), act_min=lo, act_max=hi)
        x = rng.integers(-128, 128, int(rng.integers(1, 300))).astype(np.int8)
        want = ref.abs_(p, x, rounding)
        assert np.array_equal(_c_abs(clib, p, x), want), p


def test_abs_kernel_refuses_bad_params(clib):
    abi = Abi(clib)
    x = np.zeros(4, np.int8)
    p = RequantizeParams(0, 0, 2**30, 23, -128, 127)  # shift above 22 could overflow
    assert abi.lib.mq_abs_s8(abi.struct(p), x.size, abi.i8(x), abi.i8(x)) == abi.lib.MQ_ERR_ARG


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
