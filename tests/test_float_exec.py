"""Float executor on imported synthetic ONNX models == onnxruntime, per op and attribute variant."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_builders import assert_close, conv, make_model, run_ort, single, weights

from microq.onnx_import import import_onnx
from microq.ref.float_exec import run_float, to_physical

X4 = (1, 3, 8, 8)
INF = np.float32(np.inf)


def _f(*v: float) -> np.ndarray:
    return np.array(v, np.float32)


def conv_then(op: str, opset: int = 13, consts=(), **attrs) -> onnx.ModelProto:
    """x -> Conv 3x3 pad 1 -> `op` (the op sees an NHWC activation)."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(op, ["c"] + [f"k{i}" for i in range(len(consts))], ["y"], name="op",
                         **attrs),
    ]
    inits = {"w": weights((4, 3, 3, 3)), "b": weights((4,), 2)}
    inits.update({f"k{i}": c for i, c in enumerate(consts)})
    return make_model(nodes, {"x": X4}, ["y"], inits, opset)


def torch_flatten(opset: int = 13) -> onnx.ModelProto:
    """Conv -> Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])) like torch.flatten."""
    if opset >= 13:
        unsq = helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"])
    else:
        unsq = helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0])
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", strides=[2, 2]),
        helper.make_node("Shape", ["c"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        unsq,
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["c", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
    ]
    inits = {"w": weights((4, 3, 3, 3)), "b": weights((4,), 2), "zero": np.array(0, np.int64),
             "minus1": np.array([-1], np.int64), "fw": weights((5, 36), 3),
             "fb": weights((5,), 4)}
    if opset >= 13:
        inits["ax0"] = np.array([0], np.int64)
    return make_model(nodes, {"x": X4}, ["y"], inits, opset)


def two_inputs(op: str, shape_b: tuple) -> onnx.ModelProto:
    node = helper.make_node(op, ["x", "x2"], ["y"], name="op")
    return make_model([node], {"x": X4, "x2": shape_b}, ["y"])


def silu() -> onnx.ModelProto:
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])]
    return make_model(nodes, {"x": X4}, ["y"])


def erf_gelu() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["x", "a"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["y"]),
    ]
    inits = {"sqrt2": _f(np.sqrt(2)), "one": _f(1), "half": _f(0.5)}
    return make_model(nodes, {"x": X4}, ["y"], inits)


def concat_convs() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "w2"], ["b"], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["a", "b"], ["y"], axis=1),
    ]
    return make_model(nodes, {"x": X4}, ["y"], {"w1": weights((2, 3, 3, 3)),
                                              "w2": weights((3, 3, 3, 3), 5)})


def small_net(opset: int) -> onnx.ModelProto:
    """Conv-BN-Relu-MaxPool-GlobalAvgPool-Flatten-Gemm-Softmax, the classic CNN tail."""
    bn = [weights((4,), 10) + 1, weights((4,), 11), weights((4,), 12),
          np.abs(weights((4,), 13)) + 0.5]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["gp"]),
        helper.make_node("Flatten", ["gp"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["z"], transB=1),
        helper.make_node("Softmax", ["z"], ["y"], axis=1),
    ]
    inits = dict(zip(["g", "be", "m", "v"], bn))
    inits.update({"w": weights((4, 3, 3, 3)), "b": weights((4,), 2), "fw": weights((3, 4), 3),
                  "fb": weights((3,), 4)})
    return make_model(nodes, {"x": X4}, ["y"], inits, opset)


BN = [_f(1.5, 0.5, 2, 1), _f(0.1, -0.2, 0.3, 0), _f(0.5, 0, -1, 2), _f(1, 2, 0.5, 4)]

CASES = {
    # Conv variants
    "conv_pad1": lambda: conv(X4, (4, 3, 3, 3), pads=[1, 1, 1, 1]),
    "conv_asym_pads": lambda: conv(X4, (4, 3, 3, 3), pads=[0, 1, 2, 1]),
    "conv_same_upper_s2": lambda: conv((1, 3, 9, 9), (4, 3, 3, 3), auto_pad="SAME_UPPER",
                                       strides=[2, 2]),
    "conv_same_lower_s2": lambda: conv((1, 3, 8, 8), (4, 3, 4, 4), auto_pad="SAME_LOWER",
                                       strides=[2, 2]),
    "conv_valid_s3": lambda: conv((1, 3, 11, 10), (4, 3, 3, 2), auto_pad="VALID", strides=[3, 3]),
    "conv_dilation2": lambda: conv((1, 3, 10, 10), (4, 3, 3, 3), dilations=[2, 2],
                                   pads=[2, 2, 2, 2]),
    "conv_groups2": lambda: conv((1, 4, 8, 8), (6, 2, 3, 3), group=2, pads=[1, 1, 1, 1]),
    "conv_depthwise": lambda: conv((1, 4, 8, 8), (4, 1, 3, 3), group=4, pads=[1, 1, 1, 1]),
    "conv_depthwise_mult2": lambda: conv((1, 4, 8, 8), (8, 1, 3, 3), group=4, strides=[2, 2]),
    "conv_no_bias": lambda: conv(X4, (5, 3, 1, 1), bias=False),
    "conv1d": lambda: conv((1, 3, 20), (5, 3, 3), pads=[1, 2], strides=[2]),
    "conv1d_dilation2_dw": lambda: conv((1, 4, 20), (4, 1, 3), group=4, dilations=[2]),
    # Pools
    "maxpool_s2_pad1": lambda: single("MaxPool", X4, kernel_shape=[3, 3], strides=[2, 2],
                                      pads=[1, 1, 1, 1]),
    "maxpool_ceil": lambda: single("MaxPool", (1, 3, 9, 9), kernel_shape=[2, 2], strides=[2, 2],
                                   ceil_mode=1),
    "avgpool_exclude_pad": lambda: single("AveragePool", X4, kernel_shape=[3, 3],
                                          pads=[1, 1, 1, 1]),
    "avgpool_include_pad": lambda: single("AveragePool", X4, kernel_shape=[3, 3],
                                          pads=[1, 1, 1, 1], count_include_pad=1),
    "avgpool_ceil": lambda: single("AveragePool", (1, 3, 9, 9), kernel_shape=[3, 3],
                                   strides=[2, 2], ceil_mode=1),
    "avgpool_ceil_include_pad": lambda: single("AveragePool", (1, 3, 10, 10), kernel_shape=[3, 3],
                                               strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                                               count_include_pad=1),
    "avgpool1d": lambda: single("AveragePool", (1, 3, 12), kernel_shape=[3], strides=[2]),
    "global_avgpool": lambda: single("GlobalAveragePool", X4),
    "global_maxpool": lambda: single("GlobalMaxPool", X4),
    "reducemean_keepdims": lambda: single("ReduceMean", X4, axes=[2, 3]),
    "reducemean_no_keepdims_op18": lambda: single("ReduceMean", X4, [np.array([2, 3])], 18,
                                                  keepdims=0),
    # Activations
    "relu": lambda: single("Relu", X4),
    "clip_relu6": lambda: single("Clip", X4, [_f(0), _f(6)]),
    "clip_arbitrary": lambda: single("Clip", X4, [_f(-0.5), _f(0.7)]),
    "clip_max_only": lambda: single("Clip", X4, [None, _f(0.3)]),
    "leaky_relu": lambda: single("LeakyRelu", X4, alpha=0.1),
    "sigmoid": lambda: single("Sigmoid", X4),
    "tanh": lambda: single("Tanh", X4),
    "hard_sigmoid": lambda: single("HardSigmoid", X4, alpha=0.3, beta=0.4),
    "hard_swish": lambda: single("HardSwish", X4, opset=14),
    "elu": lambda: single("Elu", X4, alpha=0.7),
    "softplus": lambda: single("Softplus", X4),
    "gelu_op20": lambda: single("Gelu", X4, opset=20),
    "gelu_tanh_op20": lambda: single("Gelu", X4, opset=20, approximate="tanh"),
    "silu_pattern": silu,
    "erf_gelu_pattern": erf_gelu,
    # Binary ops and broadcasting
    "add_two_activations": lambda: two_inputs("Add", X4),
    "mul_broadcast_activation": lambda: two_inputs("Mul", (1, 3, 1, 1)),
    "add_per_channel_const": lambda: single("Add", X4, [weights((3, 1, 1))]),
    "mul_per_channel_const": lambda: single("Mul", X4, [weights((3, 1, 1))]),
    "sub_scalar_const": lambda: single("Sub", X4, [_f(0.25)]),
    "sub_const_minus_activation": lambda: make_model(
        [helper.make_node("Sub", ["k", "x"], ["y"])], {"x": X4}, ["y"], {"k": weights((8,), 5)}),
    "div_const": lambda: single("Div", X4, [weights((1, 3, 1, 8))]),
    "conv_add_row_const": lambda: conv_then("Add", consts=[weights((8,), 9)]),
    # Layout-sensitive ops
    "flatten_after_conv": lambda: conv_then("Flatten"),
    "torch_flatten_subgraph": torch_flatten,
    "torch_flatten_subgraph_op11": lambda: torch_flatten(11),
    "softmax_axis1_4d": lambda: conv_then("Softmax", axis=1),
    "softmax_axis2_4d": lambda: conv_then("Softmax", axis=2),
    "softmax_axis1_4d_op11": lambda: conv_then("Softmax", 11, axis=1),
    "concat_channels": concat_convs,
    "transpose_to_nhwc": lambda: conv_then("Transpose", perm=[0, 2, 3, 1]),
    "transpose_hw": lambda: conv_then("Transpose", perm=[0, 1, 3, 2]),
    "pad_const_4d": lambda: conv_then("Pad", 13, [np.array([0, 0, 1, 2, 0, 1, 2, 0])],
                                      mode="constant"),
    "pad_op11_attr": lambda: single("Pad", X4, [np.array([0, 0, 1, 1, 0, 0, 1, 1])], 11),
    "squeeze_after_pool": lambda: single("ReduceMean", X4, axes=[2, 3], keepdims=1),
    "reshape_0_and_minus1": lambda: conv_then("Reshape", consts=[np.array([0, 0, -1])]),
    "unsqueeze_op11": lambda: single("Unsqueeze", (1, 5), axes=[2], opset=11),
    # Fully connected and batch norm
    "gemm_alpha_beta": lambda: single("Gemm", (1, 6), [weights((4, 6)), weights((4,), 3)],
                                      alpha=0.5, beta=2.0, transB=1),
    "gemm_transb0": lambda: single("Gemm", (1, 6), [weights((6, 4)), weights((1, 4), 3)]),
    "matmul_3d": lambda: single("MatMul", (1, 5, 6), [weights((6, 4))]),
    "batchnorm_standalone_4d": lambda: single("BatchNormalization", (1, 4, 5, 5), BN),
    "batchnorm_2d": lambda: single("BatchNormalization", (1, 4), BN),
    "identity_dropout": lambda: conv_then("Dropout"),
    "small_net_op11": lambda: small_net(11),
    "small_net_op13": lambda: small_net(13),
    "small_net_op21": lambda: small_net(21),
}


@pytest.mark.parametrize("case", list(CASES))
def test_float_exec_matches_onnxruntime(case: str) -> None:
    model = CASES[case]()
    graph = import_onnx(model)
    rng = np.random.default_rng(42)
    feeds = {}
    for inp in model.graph.input:
        if inp.name in {i.name for i in model.graph.initializer}:
            continue
        shape = (2,) + graph.logical_shapes[inp.name][1:]
        feeds[inp.name] = rng.standard_normal(shape).astype(np.float32) * 2
    ref = run_ort(model, feeds)
    got = run_float(graph, {k: to_physical(graph, k, v) for k, v in feeds.items()})
    for name, r in zip(graph.outputs, ref):
        assert_close(got[name], r, what=f"{case} output {name}")


def test_on_tensor_sees_every_activation() -> None:
    graph = import_onnx(small_net(13))
    seen = []
    x = np.zeros((3, 8, 8, 3), np.float32)
    run_float(graph, {"x": x}, on_tensor=lambda name, v: seen.append((name, v.shape[0])))
    assert [s[0] for s in seen] == [n.outputs[0] for n in graph.nodes]
    assert all(batch == 3 for _, batch in seen)


def test_to_physical_applies_input_perm() -> None:
    graph = import_onnx(conv(X4, (4, 3, 3, 3)))
    x = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    assert graph.input_perm["x"] == (0, 2, 3, 1)
    assert np.array_equal(to_physical(graph, "x", x), x.transpose(0, 2, 3, 1))
