"""Regressions found by re-testing issue 8's idioms with new torch models (the `probe` helper)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from microq import api
from microq.errors import MicroqError


def _masked_softmax_model(path, keep: np.ndarray, fill: np.ndarray) -> None:
    """input [N, 4, 6] -> MatMul [6, 4] -> Add(Where(keep, 0, fill)) -> Softmax(-1): the graph
    both torch exporters emit for F.scaled_dot_product_attention(is_causal=True) scores (the
    mask is a constant-folded Where of Constant nodes, as in the TorchScript export)."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "W")

    def const(name, a):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(a, name))

    nodes = [const("keep", keep), const("zero", np.zeros((), np.float32)),
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


@pytest.mark.parametrize("fill", [-np.inf, np.finfo(np.float32).min],
                         ids=["torchscript_minus_inf", "dynamo_float_min"])
def test_causal_attention_mask_before_softmax_is_refused_not_silently_inaccurate(tmp_path, fill):
    """dynamo's causal mask (-3.4e38) compiled to 16.6 dB (the Add's int8 scale 1.3e36 swamped
    the scores); TorchScript's (-inf) was refused as "fix the model's weights"."""
    _masked_softmax_model(tmp_path / "m.onnx", KEEP, np.array(fill))
    calib = {"input": np.random.default_rng(0).standard_normal((8, 4, 6)).astype(np.float32)}
    with pytest.raises(MicroqError, match=r"node 'add_mask' adds the constant attention mask "
                                          r"'.*'.*masked softmax is not supported"):
        api.compile_model(tmp_path / "m.onnx", calib, tmp_path / "out", name="net")
    assert not (tmp_path / "out").exists()


def test_small_constant_bias_before_softmax_still_compiles(tmp_path):
    """A relative-position bias (small finite values) added before a Softmax is ordinary data."""
    bias = np.random.default_rng(1).uniform(-2, 2, (4, 4))
    _masked_softmax_model(tmp_path / "m.onnx", np.zeros((4, 4), bool), bias)
    calib = {"input": np.random.default_rng(0).standard_normal((8, 4, 6)).astype(np.float32)}
    api.compile_model(tmp_path / "m.onnx", calib, tmp_path / "out", name="net")
    assert (tmp_path / "out" / "net.c").exists()
