"""ONNX's own function bodies (what the `*_expanded` node tests and function-inlining exporters
produce) import as the op they define: constant CastLike/Sum folded, elementwise bodies matched
to the activation they compute, the Softmax and LayerNormalization bodies to one node each."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx_builders import make_model

from microq.onnx_import import import_onnx
from microq.ref.float_exec import run_float, to_physical


def _const(name: str, v: float) -> list:
    """Constant v, CastLike'd to x: the bodies' way of writing a literal."""
    return [helper.make_node("Constant", [], [name + "_c"],
                             value=helper.make_tensor(name + "_t", TensorProto.FLOAT, [], [v])),
            helper.make_node("CastLike", [name + "_c", "x"], [name])]


def _body(kind: str) -> list:
    n = []
    if kind == "relu":
        n += _const("zero", 0.0) + [helper.make_node("Max", ["x", "zero"], ["y"])]
    elif kind == "leaky_relu":
        n += _const("alpha", 0.1) + _const("zero", 0.0)
        n += [helper.make_node("Less", ["x", "zero"], ["neg"]),
              helper.make_node("Mul", ["alpha", "x"], ["ax"]),
              helper.make_node("Where", ["neg", "ax", "x"], ["y"])]
    elif kind == "elu":
        n += _const("alpha", 0.7) + _const("zero", 0.0) + _const("one", 1.0)
        n += [helper.make_node("Less", ["x", "zero"], ["neg"]),
              helper.make_node("Exp", ["x"], ["e"]),
              helper.make_node("Sub", ["e", "one"], ["em1"]),
              helper.make_node("Mul", ["alpha", "em1"], ["aem1"]),
              helper.make_node("Where", ["neg", "aem1", "x"], ["y"])]
    elif kind == "hard_sigmoid":
        n += _const("alpha", 0.25) + _const("beta", 0.4) + _const("zero", 0.0) + _const("one", 1.0)
        n += [helper.make_node("Mul", ["x", "alpha"], ["ax"]),
              helper.make_node("Add", ["ax", "beta"], ["axb"]),
              helper.make_node("Min", ["axb", "one"], ["m"]),
              helper.make_node("Max", ["m", "zero"], ["y"])]
    elif kind == "softplus":
        n += _const("one", 1.0)
        n += [helper.make_node("Exp", ["x"], ["e"]),
              helper.make_node("Add", ["e", "one"], ["e1"]),
              helper.make_node("Log", ["e1"], ["y"])]
    elif kind == "gelu":
        n += _const("half", 0.5) + _const("one", 1.0) + _const("two", 2.0)
        n += [helper.make_node("Sqrt", ["two"], ["s2"]),
              helper.make_node("Div", ["x", "s2"], ["xs"]),
              helper.make_node("Erf", ["xs"], ["erf"]),
              helper.make_node("Sum", ["one", "erf"], ["phi"]),
              helper.make_node("Mul", ["half", "x"], ["hx"]),
              helper.make_node("Mul", ["hx", "phi"], ["y"])]
    elif kind == "hard_swish":
        n += [helper.make_node("HardSigmoid", ["x"], ["hs"], alpha=1 / 6, beta=0.5),
              helper.make_node("Mul", ["x", "hs"], ["y"])]
    return n


@pytest.mark.parametrize("kind", ["relu", "leaky_relu", "elu", "hard_sigmoid", "softplus",
                                  "gelu", "hard_swish"])
def test_elementwise_function_body_becomes_one_activation(kind):
    m = make_model(_body(kind), {"x": (1, 4, 6)}, ["y"], opset=18)
    g = import_onnx(m)
    acts = [n for n in g.nodes if n.op == "Activation"]
    assert len(g.nodes) == 1 and len(acts) == 1, [(n.op, n.attrs) for n in g.nodes]
    assert acts[0].attrs.kind == kind, acts[0].attrs
    x = np.linspace(-6, 6, 5 * 24, dtype=np.float32).reshape(5, 4, 6)
    got = run_float(g, {"x": to_physical(g, "x", x)})["y"]
    ref = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_affine_only_bodies_are_left_alone():
    """x * 0.5 + 1 is no activation: it stays two nodes (a conv could fold them)."""
    n = _const("half", 0.5) + _const("one", 1.0)
    n += [helper.make_node("Mul", ["x", "half"], ["h"]), helper.make_node("Add", ["h", "one"], ["y"])]
    g = import_onnx(make_model(n, {"x": (1, 4)}, ["y"]))
    assert [n.op for n in g.nodes] == ["Mul", "Add"]


def test_softmax_function_body_becomes_softmax():
    n = [helper.make_node("ReduceMax", ["x"], ["mx"], axes=[1], keepdims=1),
         helper.make_node("Sub", ["x", "mx"], ["d"]),
         helper.make_node("Exp", ["d"], ["e"]),
         helper.make_node("ReduceSum", ["e", "ax"], ["s"], keepdims=1),
         helper.make_node("Div", ["e", "s"], ["y"])]
    m = make_model(n, {"x": (1, 5, 3)}, ["y"], {"ax": np.array([1], np.int64)}, opset=13)
    g = import_onnx(m)
    assert [n.op for n in g.nodes if n.op not in ("Transpose", "Reshape")] == ["Softmax"]
    x = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)
    got = run_float(g, {"x": to_physical(g, "x", x)})["y"]
    ref = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_layernorm_function_body_becomes_layernorm():
    """ONNX's body: var = E[x*x] - E[x]^2, (x - E[x]) / Sqrt(var + eps) * scale + bias."""
    n = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1]),
         helper.make_node("Mul", ["x", "x"], ["sq"]),
         helper.make_node("ReduceMean", ["sq"], ["msq"], axes=[-1]),
         helper.make_node("Mul", ["m", "m"], ["m2"]),
         helper.make_node("Sub", ["msq", "m2"], ["var"]),
         helper.make_node("Add", ["var", "eps"], ["ve"]),
         helper.make_node("Sqrt", ["ve"], ["std"]),
         helper.make_node("Sub", ["x", "m"], ["dev"]),
         helper.make_node("Div", ["dev", "std"], ["nrm"]),
         helper.make_node("Mul", ["nrm", "scale"], ["sc"]),
         helper.make_node("Add", ["sc", "bias"], ["y"])]
    rng = np.random.default_rng(1)
    inits = {"eps": np.array(1e-3, np.float32),
             "scale": rng.normal(size=(1, 6)).astype(np.float32),
             "bias": rng.normal(size=(1, 6)).astype(np.float32)}
    m = make_model(n, {"x": (1, 6)}, ["y"], inits, opset=13)
    g = import_onnx(m)
    assert [n.op for n in g.nodes] == ["LayerNorm"]
    x = rng.normal(size=(7, 6)).astype(np.float32)
    got = run_float(g, {"x": to_physical(g, "x", x)})["y"]
    ref = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4)


@pytest.mark.parametrize("form", ["less", "greater", "zero_first"])
def test_prelu_function_body_becomes_prelu(form):
    """PRelu's body Where(Less(x, 0), Mul(slope, x), x) with a per-channel constant slope (and
    the Greater / swapped-operand forms) -> one PRelu node; it was refused as 'op Less is not
    supported'. Float IR == onnxruntime."""
    slope = np.linspace(-0.5, 0.5, 4, dtype=np.float32).reshape(4, 1, 1)
    n = _const("zero", 0.0)
    if form == "less":
        n += [helper.make_node("Less", ["x", "zero"], ["neg"])]
    elif form == "zero_first":
        n += [helper.make_node("Greater", ["zero", "x"], ["neg"])]
    else:
        n += [helper.make_node("Greater", ["x", "zero"], ["pos"])]
    n += [helper.make_node("Mul", ["slope", "x"], ["sx"])]
    n += [helper.make_node("Where", ["pos", "x", "sx"] if form == "greater"
                           else ["neg", "sx", "x"], ["y"])]
    m = make_model(n, {"x": (1, 4, 5, 5)}, ["y"], {"slope": slope}, opset=16)
    g = import_onnx(m)
    ops = [node.op for node in g.nodes]
    assert ops.count("PRelu") == 1 and set(ops) <= {"PRelu", "Transpose"}, ops  # NCHW output
    x = np.random.default_rng(5).normal(size=(6, 4, 5, 5)).astype(np.float32)
    got = run_float(g, {"x": to_physical(g, "x", x)})["y"]
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"x": x[i : i + 1]})[0] for i in range(len(x))])
    np.testing.assert_allclose(got.reshape(ref.shape), ref, atol=1e-6)
