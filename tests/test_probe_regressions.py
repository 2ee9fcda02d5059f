"""Regressions found by re-testing issue 8's idioms with new torch models (the `probe` helper)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from microq import api
from microq.errors import MicroqError


def _masked_softmax_model(path, keep: np.ndarray, fill: np.ndarray,
                          zero: np.ndarray | None = None) -> None:
    """input [N, 4, 6] -> MatMul [6, 4] -> Add(Where(keep, 0, fill)) -> Softmax(-1): the graph
    both torch exporters emit for F.scaled_dot_product_attention(is_causal=True) scores (the
    mask is a constant-folded Where of Constant nodes, as in the TorchScript export)."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "W")

    def const(name, a):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(a, name))

    nodes = [const("keep", keep), const("zero", np.zeros((), np.float32) if zero is None else
                   np.asarray(zero, np.float32)),
             const("fill", fill.astype(np.float32)),
             helper.make_node("Where", ["keep", "zero", "fill"], ["mask"], name="where"),
             helper.make_node("MatMul", ["input", "W"], ["s"], name="scores"),
             helper.make_node("Add", ["s", "mask"], ["sm"], name="add_mask"),
             helper.make_node("Softmax", ["sm"], ["output"], axis=-1, name="softmax")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                     ["N", 4, 6])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                                         ["N", 4, 4])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))


KEEP = np.tril(np.ones((4, 4), bool))


@pytest.mark.parametrize("fill", [-np.inf, np.finfo(np.float32).min, -1e9],
                         ids=["torchscript_minus_inf", "dynamo_float_min", "user_minus_1e9"])
def test_causal_attention_mask_before_softmax_compiles_to_exact_zero_probabilities(tmp_path,
                                                                                    fill):
    """dynamo's causal mask (-3.4e38) once compiled to 16.6 dB (the Add's int8 scale 1.3e36
    swamped the scores), then was refused; now the mask is a masked softmax: masked entries are
    exactly 0, the kept ones track onnxruntime (measured 44-45 dB), C == reference."""
    from microq.ref.int_exec import run_int
    try:  # main moved it to microq.compare
        from microq.compare import run_onnxruntime
    except ImportError:  # pragma: no cover - before that move
        from microq.report import run_onnxruntime

    _masked_softmax_model(tmp_path / "m.onnx", KEEP, np.array(fill))
    x = np.random.default_rng(0).standard_normal((8, 4, 6)).astype(np.float32)
    api.compile_model(tmp_path / "m.onnx", {"input": x}, tmp_path / "out", name="net")
    m, qg = api.load(tmp_path / "out"), api.load_qgraph(tmp_path / "out")
    assert [n.kernel for n in qg.nodes][-1] == "softmax_masked"
    q = m.quantize_input("input", x)
    got = m.run_int8({"input": q})["output"].reshape(8, 4, 4)
    assert np.array_equal(got[0], run_int(qg, {"input": q[:1]})["output"].reshape(4, 4))
    y = m.dequantize_output("output", got)
    assert (y[:, ~KEEP] == 0).all()
    ref = run_onnxruntime(tmp_path / "m.onnx", {"input": x})["output"]
    db = 10 * np.log10((ref**2).sum() / ((ref - y) ** 2).sum())
    assert db >= 30, f"{db:.1f} dB"


def test_small_constant_bias_before_softmax_still_compiles(tmp_path):
    """A relative-position bias (small finite values) added before a Softmax is ordinary data."""
    bias = np.random.default_rng(1).uniform(-2, 2, (4, 4))
    _masked_softmax_model(tmp_path / "m.onnx", np.zeros((4, 4), bool), bias)
    calib = {"input": np.random.default_rng(0).standard_normal((8, 4, 6)).astype(np.float32)}
    api.compile_model(tmp_path / "m.onnx", calib, tmp_path / "out", name="net")
    assert (tmp_path / "out" / "net.c").exists()
