"""The importer tracks the model's batch axis through the graph (issue 8): ops on any other axis
are ordinary wherever it sits, only what mixes samples is refused, and the graph outputs keep
their ONNX shapes. Plus the Conv1D regressions found with it (ReLU fusion, QDQ export)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx_builders import make_model, weights

from microq import api
from microq.onnx_import import convert_with_problems, import_onnx
from microq.ref.float_exec import run_float, to_physical


def _float_matches_ort(model: onnx.ModelProto, x: np.ndarray):
    """The float IR on a batch of len(x) samples == onnxruntime run sample by sample."""
    g = import_onnx(model)
    got = run_float(g, {g.inputs[0]: to_physical(g, g.inputs[0], x)})[g.outputs[0]]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {g.inputs[0]: x[i : i + 1]})[0] for i in range(len(x))])
    assert got.size == ref.size
    np.testing.assert_allclose(got.reshape(ref.shape), ref, atol=1e-5)
    return g


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("how", ["gather", "split", "slice"])
def test_qkv_axis_after_permute_is_not_the_batch(how):
    """timm: [B,T,3,H,D].permute(2,0,3,1,4) puts q/k/v on axis 0 and the batch on axis 1."""
    t = [helper.make_node("Transpose", ["x"], ["p"], perm=[2, 0, 3, 1, 4])]
    inits = {}
    if how == "gather":
        outs = []
        for i in range(3):
            inits[f"i{i}"] = np.array(i, np.int64)
            t.append(helper.make_node("Gather", ["p", f"i{i}"], [f"g{i}"], axis=0))
            outs.append(f"g{i}")
    elif how == "split":
        inits["sizes"] = np.array([1, 1, 1], np.int64)
        inits["ax"] = np.array([0], np.int64)
        t.append(helper.make_node("Split", ["p", "sizes"], ["s0", "s1", "s2"], axis=0))
        outs = []
        for i in range(3):
            t.append(helper.make_node("Squeeze", [f"s{i}", "ax"], [f"g{i}"]))
            outs.append(f"g{i}")
    else:
        outs = []
        for i in range(3):
            inits[f"b{i}"], inits[f"e{i}"] = np.array([i], np.int64), np.array([i + 1], np.int64)
            inits["ax"] = np.array([0], np.int64)
            t.append(helper.make_node("Slice", ["p", f"b{i}", f"e{i}", "ax"], [f"s{i}"]))
            t.append(helper.make_node("Squeeze", [f"s{i}", "ax"], [f"g{i}"]))
            outs.append(f"g{i}")
    t += [helper.make_node("Transpose", ["g1"], ["kt"], perm=[0, 1, 3, 2]),
          helper.make_node("MatMul", ["g0", "kt"], ["a"]),
          helper.make_node("Softmax", ["a"], ["sm"], axis=-1),
          helper.make_node("MatMul", ["sm", "g2"], ["y"])]
    m = make_model(t, {"x": (1, 5, 3, 2, 4)}, ["y"], inits, opset=13)
    g = _float_matches_ort(m, _x((6, 5, 3, 2, 4)))
    assert g.logical_shapes["y"] == (1, 2, 5, 4)


def test_softmax_and_concat_on_axis_0_of_a_transposed_tensor():
    """After Transpose(1,0,2) axis 0 is the tokens: Softmax/Concat over it are ordinary."""
    n = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
         helper.make_node("Softmax", ["t"], ["s"], axis=0),
         helper.make_node("Concat", ["s", "t"], ["c"], axis=0),
         helper.make_node("Transpose", ["c"], ["y"], perm=[1, 0, 2])]
    m = make_model(n, {"x": (1, 4, 3)}, ["y"])
    g = _float_matches_ort(m, _x((5, 4, 3)))
    assert g.logical_shapes["y"] == (1, 8, 3)


@pytest.mark.parametrize("op, axis", [("Softmax", 0), ("Concat", 0), ("ReduceMean", 1)])
def test_ops_along_the_batch_axis_are_refused_as_mixing_samples(op, axis):
    """The batch moved to axis `axis` (Transpose); an op along it mixes samples: say so."""
    n = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2] if axis else [0, 1, 2])]
    if op == "Concat":
        n.append(helper.make_node("Concat", ["t", "t"], ["y"], axis=axis))
    elif op == "ReduceMean":
        n.append(helper.make_node("ReduceMean", ["t"], ["y"], axes=[axis]))
    else:
        n.append(helper.make_node("Softmax", ["t"], ["y"], axis=axis))
    m = make_model(n, {"x": (1, 4, 3)}, ["y"])
    _, problems = convert_with_problems(m)
    assert len(problems) == 1, problems
    assert problems[0][1] == op
    assert f"along the batch axis (axis {axis}) mixes the samples" in problems[0][2]


def test_batch_merged_into_heads_then_restored():
    """nn.MultiheadAttention: [T,1,E] -> [T, B*H, D] merges the batch with the heads; Gemm on
    [T, E] rows; the batch comes back as axis 1 of [T, 1, E]."""
    w = weights((8, 8))
    n = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),  # [T,1,8]
         helper.make_node("Reshape", ["t", "s1"], ["h"]),  # [T, 2, 4]: B*H
         helper.make_node("Transpose", ["h"], ["ht"], perm=[1, 0, 2]),  # [2, T, 4]
         helper.make_node("Softmax", ["ht"], ["sm"], axis=-1),
         helper.make_node("Transpose", ["sm"], ["back"], perm=[1, 0, 2]),  # [T, 2, 4]
         helper.make_node("Reshape", ["back", "s2"], ["rows"]),  # [T, 8]
         helper.make_node("Gemm", ["rows", "w"], ["fc"], transB=1),
         helper.make_node("Reshape", ["fc", "s3"], ["r"]),  # [T, 1, 8]
         helper.make_node("Transpose", ["r"], ["y"], perm=[1, 0, 2])]
    inits = {"s1": np.array([6, 2, 4], np.int64), "s2": np.array([6, 8], np.int64),
             "s3": np.array([6, 1, 8], np.int64), "w": w}
    m = make_model(n, {"x": (1, 6, 8)}, ["y"], inits)
    g = _float_matches_ort(m, _x((7, 6, 8)))
    assert g.logical_shapes["y"] == (1, 6, 8)


def test_output_without_batch_axis_keeps_its_shape_and_gets_a_leading_1():
    """Squeeze of the batch of [1,3,4]: the output is [3,4]; it was declared 'invalid' when the
    loader overwrote dim 0 of every graph output with 1."""
    n = [helper.make_node("Squeeze", ["x", "ax"], ["y"])]
    m = make_model(n, {"x": (1, 3, 4)}, ["y"], {"ax": np.array([0], np.int64)}, opset=13)
    graph, problems = convert_with_problems(m)
    assert problems == []
    assert graph.logical_shapes["y"] == (1, 3, 4)  # (N, 3, 4) for N samples
    _float_matches_ort(m, _x((5, 3, 4)))


def _conv1d_chain(relu: bool) -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="pw", pads=[1, 1])]
    mid = "c1"
    if relu:
        nodes.append(helper.make_node("Relu", ["c1"], ["r1"], name="relu"))
        mid = "r1"
    nodes.append(helper.make_node("Conv", [mid, "w2", "b2"], ["y"], name="dw", group=8,
                                  pads=[1, 1]))
    inits = {"w1": weights((8, 4, 3)), "b1": weights((8,), 2), "w2": weights((8, 1, 3), 3),
             "b2": weights((8,), 4)}
    return onnx.shape_inference.infer_shapes(make_model(nodes, {"x": (1, 4, 16)}, ["y"], inits))


def test_relu_after_conv1d_is_fused_into_the_conv():
    g = import_onnx(_conv1d_chain(relu=True))
    assert [n.op for n in g.nodes].count("Activation") == 0
    convs = [n for n in g.nodes if n.op == "Conv2D"]
    assert convs[0].attrs.act_min == 0.0 and "relu" in convs[0].source
    _float_matches_ort(_conv1d_chain(relu=True), _x((5, 4, 16)))


@pytest.mark.parametrize("relu", [True, False])
def test_quantize_exports_two_consecutive_conv1d(tmp_path, relu):
    """`microq quantize` failed with "tensor 'c1__2d' is not in the ONNX graph": the QDQ model
    must validate and onnxruntime on it must track the compiled C within one output step."""
    model = tmp_path / "m.onnx"
    onnx.save(_conv1d_chain(relu), model)
    x = _x((16, 4, 16), 1)
    api.quantize_to_qdq(model, {"x": x}, tmp_path / "m.int8.onnx")
    api.compile_model(model, {"x": x}, tmp_path / "c")
    c = api.run(tmp_path / "c", {"x": x})["y"]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(tmp_path / "m.int8.onnx"), so)
    r = np.concatenate([sess.run(None, {"x": x[i : i + 1]})[0] for i in range(len(x))])
    step = api.load_qgraph(tmp_path / "c").tensors["y"].q.scale
    assert r.shape == c.shape
    assert np.abs(r - c).max() <= step * 1.001, np.abs(r - c).max() / step


def _only_problem(m: onnx.ModelProto) -> tuple[str, str]:
    _, problems = convert_with_problems(m)
    assert len(problems) == 1, problems
    return problems[0][1], problems[0][2]


def test_reshape_to_a_shape_holding_the_exported_batch_says_so():
    """A dynamic batch (fixed to 1) reshaped to a constant [4, 2, 3] that holds the batch of 2
    the model was traced with: not 'the model is invalid'."""
    n = [helper.make_node("Reshape", ["x", "s"], ["y"])]
    m = make_model(n, {"x": (1, 3, 4)}, ["y"], {"s": np.array([4, 2, 3], np.int64)})
    op, why = _only_problem(m)
    assert op == "Reshape" and "batch size the model was exported with" in why, why
    assert "invalid" not in why


@pytest.mark.parametrize("op", ["Slice", "Gather"])
def test_slice_and_gather_along_the_batch_axis_select_samples(op):
    if op == "Slice":
        n = [helper.make_node("Slice", ["x", "b", "e", "a"], ["y"])]
        inits = {"b": np.array([0], np.int64), "e": np.array([2], np.int64),
                 "a": np.array([0], np.int64)}
    else:
        n = [helper.make_node("Gather", ["x", "i"], ["y"], axis=0)]
        inits = {"i": np.array([0, 1], np.int64)}
    got_op, why = _only_problem(make_model(n, {"x": (1, 3, 4)}, ["y"], inits))
    assert got_op == op and "along the batch axis (axis 0) selects samples" in why, why


def test_split_along_the_batch_axis_says_it_divides_the_batch_not_invalid():
    """A dynamic batch split [2, 4] along axis 0: groups of samples (a split never mixes them),
    not 'the model is invalid'."""
    n = [helper.make_node("Split", ["x", "s"], ["a", "b"], axis=0)]
    m = make_model(n, {"x": (1, 4)}, ["a", "b"], {"s": np.array([2, 4], np.int64)})
    op, why = _only_problem(m)
    assert op == "Split" and "divides the batch into groups of samples" in why, why
    assert "mixes" not in why and "invalid" not in why, why


def test_layernorm_over_an_axis_holding_the_merged_batch_is_refused():
    """Flatten(axis=0) merges the batch into axis 1; normalizing over it mixes samples."""
    n = [helper.make_node("Flatten", ["x"], ["f"], axis=0),
         helper.make_node("LayerNormalization", ["f", "g"], ["y"], axis=-1)]
    m = make_model(n, {"x": (1, 3, 4)}, ["y"], {"g": np.ones(12, np.float32)}, opset=17)
    op, why = _only_problem(m)
    assert op == "LayerNormalization"
    assert "axis 1, into which a Reshape merged the batch" in why, why


def test_gather_of_sample_0_drops_the_batch():
    """x[0] on a batch-1 model is the usual squeeze idiom: it compiles."""
    n = [helper.make_node("Gather", ["x", "i"], ["g"], axis=0),
         helper.make_node("Relu", ["g"], ["y"])]
    m = make_model(n, {"x": (1, 3, 4)}, ["y"], {"i": np.array(0, np.int64)})
    g = _float_matches_ort(m, _x((1, 3, 4)))
    assert g.logical_shapes["y"] == (1, 3, 4)


def test_static_dim0_above_1_is_data_reshape_and_slice_keep_it():
    """Exported with a static dim 0 of 2 (no dynamic axes): the batch rule reads it as data
    (as onnx2c), so Reshape [2, 12] and a Slice over axis 0 are ordinary ops on the tensor as
    given; one sample is the whole [2, 3, 4] tensor and the output is [2, 8]."""
    n = [helper.make_node("Reshape", ["x", "s"], ["r"]),
         helper.make_node("Slice", ["r", "b", "e", "a"], ["y"])]
    inits = {"s": np.array([2, 12], np.int64), "b": np.array([0, 2], np.int64),
             "e": np.array([2, 10], np.int64), "a": np.array([0, 1], np.int64)}
    m = make_model(n, {"x": (2, 3, 4)}, ["y"], inits, batch=2)
    g = import_onnx(m)
    assert g.logical_shapes["x"] == (2, 3, 4) and g.logical_shapes["y"] == (2, 8)
    x = _x((5, 2, 3, 4))  # five samples, each a whole [2, 3, 4] tensor
    got = run_float(g, {"x": to_physical(g, "x", x)})["y"]
    sess = ort.InferenceSession(m.SerializeToString())
    ref = np.stack([sess.run(None, {"x": xi})[0] for xi in x])
    assert got.shape == (5, 2, 8)
    np.testing.assert_allclose(got, ref, atol=1e-6)
