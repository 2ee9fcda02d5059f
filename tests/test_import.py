"""ONNX importer: the MLPerf Tiny models, fusions, layout decisions, error paths and inspect."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import MODELS, require
from onnx import helper
from onnx_builders import assert_close, conv, make_model, run_ort, single, weights

from microq.errors import MicroqError, UnsupportedModelError
from microq.onnx_import import format_table, import_onnx, inspect_onnx, load_onnx, to_json
from microq.ref.float_exec import run_float, to_physical

ONNX_DIR = MODELS / "onnx"
DATA = MODELS / "data"


def _ic01() -> np.ndarray:
    return np.load(DATA / "ic01_real_images.npz")["images_u8_nhwc"].astype(np.float32)


def _vww01() -> np.ndarray:
    return np.load(DATA / "vww01_real_images.npz")["images_u8_nhwc"].astype(np.float32) / 255


# name: (file, real inputs in NHWC or logical layout, random input range)
MLPERF = {
    "ic01": ("ic01_resnet8_fp32.onnx", lambda: _ic01().transpose(0, 3, 1, 2), (0, 255)),
    "vww01": ("vww01_mobilenetv1_025_fp32.onnx", lambda: _vww01().transpose(0, 3, 1, 2), (0, 1)),
    "kws01": ("kws01_dscnn_fp32.onnx",
              lambda: np.load(DATA / "kws01_repo_sample.npz")["x_float_nchw"], (-123, 25.7)),
    "ad01": ("ad01_fc_autoencoder_fp32.onnx",
             lambda: np.load(DATA / "ad01_toycar_normal_id01_00000000.npz")["windows"][::8],
             (-84.8, 14.9)),
    "sww01": ("sww01_dscnn_streaming_fp32.onnx",
              lambda: np.load(DATA / "sww01_calibration_samples.npz")["specs"].transpose(
                  0, 3, 1, 2),
              (0, 0.944)),
}


@pytest.mark.parametrize("name", list(MLPERF))
def test_mlperf_model_matches_onnxruntime(name: str) -> None:
    file, real, (lo, hi) = MLPERF[name]
    path = require(ONNX_DIR / file, f"MLPerf Tiny model {file}")
    require(DATA, "MLPerf Tiny data")
    model = onnx.load(path)
    graph = import_onnx(path)
    (inp,), (out,) = graph.inputs, graph.outputs
    assert graph.logical_shapes[inp] == tuple(
        d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    rng = np.random.default_rng(0)
    rand = rng.uniform(lo, hi, (3,) + graph.logical_shapes[inp][1:])
    for what, x in (("real", real()), ("random", rand)):
        x = np.asarray(x, np.float32)
        ref = run_ort(model, {inp: x})[0]
        got = run_float(graph, {inp: to_physical(graph, inp, x)})[out]
        assert_close(got, ref, what=f"{name} {what}")


def test_sww01_batchnorm_is_folded() -> None:
    path = require(ONNX_DIR / "sww01_dscnn_streaming_fp32.onnx", "sww01 model")
    graph = import_onnx(path)
    bn_names = [n.name for n in onnx.load(path).graph.node if n.op_type == "BatchNormalization"]
    assert len(bn_names) == 4
    ops = [n.op for n in graph.nodes]
    assert ops.count("Conv2D") == 8, ops
    # every BN went into a conv that also carries the following ReLU as its clamp
    for bn in bn_names:
        (owner,) = [n for n in graph.nodes if bn in n.source]
        assert owner.op == "Conv2D" and owner.attrs.act_min == 0.0, owner


def test_mlperf_graphs_use_ir_vocabulary_and_onnx_names() -> None:
    path = require(ONNX_DIR / "ic01_resnet8_fp32.onnx", "ic01 model")
    graph = import_onnx(path)
    onnx_tensors = {o for n in onnx.load(path).graph.node for o in n.output}
    assert graph.outputs == ["Identity"] and graph.inputs == ["input_1"]
    assert graph.input_perm == {"input_1": (0, 2, 3, 1)}
    assert len({n.name for n in graph.nodes}) == len(graph.nodes)
    for n in graph.nodes:
        assert n.op in {"Conv2D", "FullyConnected", "AvgPool", "Add", "Reshape", "Softmax"}
        assert n.outputs[0] in onnx_tensors, f"{n.name} output {n.outputs[0]} lost its ONNX name"
    assert [n.op for n in graph.nodes].count("Activation") == 0  # all ReLUs fused


def test_conv_bn_relu_fuses_into_one_conv() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["y"], name="relu"),
    ]
    inits = {"w": weights((4, 3, 3, 3)), "g": weights((4,), 1) + 2, "b": weights((4,), 2),
             "m": weights((4,), 3), "v": np.abs(weights((4,), 4)) + 0.1}
    graph = import_onnx(make_model(nodes, {"x": (1, 3, 6, 6)}, ["y"], inits))
    node, to_nchw = graph.nodes  # the graph output is NCHW again
    assert node.op == "Conv2D" and node.attrs.act_min == 0.0 and node.attrs.act_max == np.inf
    assert node.source == ["conv", "bn", "relu"]
    assert to_nchw.op == "Transpose" and to_nchw.outputs == ["y"]
    assert set(graph.tensors) == {"x", "y", node.outputs[0], node.inputs[1], node.inputs[2]}


def test_matmul_add_becomes_fc_with_bias_and_relu6() -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "b"], ["a"], name="add"),
        helper.make_node("Clip", ["a", "lo", "hi"], ["y"], name="clip"),
    ]
    inits = {"w": weights((6, 4)), "b": weights((4,), 2), "lo": np.float32(0), "hi": np.float32(6)}
    graph = import_onnx(make_model(nodes, {"x": (1, 6)}, ["y"], inits))
    (node,) = graph.nodes
    assert node.op == "FullyConnected" and (node.attrs.act_min, node.attrs.act_max) == (0.0, 6.0)
    assert np.array_equal(graph.tensors[node.inputs[2]].const, inits["b"])


def test_standalone_batchnorm_is_depthwise_1x1() -> None:
    bn = [np.ones(3, np.float32) * 2, np.zeros(3, np.float32), np.ones(3, np.float32),
          np.ones(3, np.float32)]
    graph = import_onnx(single("BatchNormalization", (1, 3, 4, 4), bn, epsilon=0.0))
    node = graph.nodes[0]
    assert node.op == "Conv2D" and node.attrs.groups == 3
    assert np.array_equal(graph.tensors[node.inputs[1]].const.reshape(3), np.full(3, 2.0))


def test_flatten_after_conv_transposes_to_nchw() -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Flatten", ["c"], ["y"])]
    graph = import_onnx(make_model(nodes, {"x": (1, 2, 4, 4)}, ["y"], {"w": weights((3, 2, 1, 1))}))
    ops = [(n.op, getattr(n.attrs, "perm", None)) for n in graph.nodes]
    assert ("Transpose", (0, 3, 1, 2)) in ops, ops


def test_noop_transpose_becomes_reshape() -> None:
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
             helper.make_node("Flatten", ["p"], ["y"])]
    graph = import_onnx(make_model(nodes, {"x": (1, 5, 4, 4)}, ["y"]))
    assert [n.op for n in graph.nodes] == ["AvgPool", "Reshape"]
    assert graph.tensors["y"].shape == (1, 5)


def test_conv1d_is_conv2d_between_free_reshapes() -> None:
    graph = import_onnx(conv((1, 3, 20), (5, 3, 3), pads=[1, 1]))
    assert graph.input_perm == {"x": (0, 2, 1)}
    assert [n.op for n in graph.nodes] == ["Reshape", "Conv2D", "Reshape", "Transpose"]
    assert graph.tensors["y"].shape == (1, 5, 20)  # graph outputs are logical


def test_local_functions_are_inlined() -> None:
    body = [helper.make_node("Conv", ["a", "w"], ["c"]), helper.make_node("Relu", ["c"], ["o"])]
    fn = helper.make_function("pkg", "Block", ["a", "w"], ["o"], body,
                              [helper.make_opsetid("", 18)])
    node = helper.make_node("Block", ["x", "w"], ["y"], domain="pkg", name="block")
    model = make_model([node], {"x": (1, 3, 5, 5)}, ["y"], {"w": weights((2, 3, 3, 3))}, 18)
    model.functions.append(fn)
    model.opset_import.append(helper.make_opsetid("pkg", 1))
    graph = import_onnx(model)
    assert [n.op for n in graph.nodes] == ["Conv2D", "Transpose"]
    x = np.random.default_rng(3).standard_normal((2, 3, 5, 5)).astype(np.float32)
    got = run_float(graph, {"x": to_physical(graph, "x", x)})["y"]
    assert_close(got, run_ort(model, {"x": x})[0], what="inlined function")


# ----- error paths -----

def _save(tmp_path, model: onnx.ModelProto, name: str = "m.onnx") -> str:
    path = tmp_path / name
    onnx.save(model, path)
    return str(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(MicroqError, match="nope.onnx: file not found"):
        load_onnx(tmp_path / "nope.onnx")


@pytest.mark.parametrize("kind", ["truncated", "random_bytes", "empty"])
def test_unreadable_file(tmp_path, kind: str) -> None:
    good = conv((1, 3, 8, 8), (4, 3, 3, 3)).SerializeToString()
    data = {"truncated": good[: len(good) // 2],
            "random_bytes": np.random.default_rng(0).bytes(500), "empty": b""}[kind]
    path = tmp_path / f"{kind}.onnx"
    path.write_bytes(data)
    with pytest.raises(MicroqError, match=rf"{kind}.onnx: not a valid ONNX model") as info:
        import_onnx(path)
    assert "\n" not in str(info.value)
    with pytest.raises(MicroqError):
        inspect_onnx(path)


def test_all_unsupported_nodes_are_listed(tmp_path) -> None:
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"], name="reflect_pad", mode="reflect"),
        helper.make_node("Round", ["p"], ["mm"], name="round_op"),
        helper.make_node("Relu", ["mm"], ["r"], name="fine_relu"),
        helper.make_node("LpNormalization", ["r"], ["y"], name="lp_norm"),
    ]
    pads = np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
    path = _save(tmp_path, make_model(nodes, {"x": (1, 2, 4, 4)}, ["y"], {"pads": pads}))
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(path)
    err = info.value
    assert [p[0] for p in err.problems] == ["reflect_pad", "round_op", "lp_norm"]
    msg = str(err)
    assert path in msg and "Pad mode 'reflect'" in msg
    assert "Round" in msg
    assert "op LpNormalization is not supported" in msg
    report = inspect_onnx(path)  # inspect reports instead of raising
    assert [p[0] for p in report.unsupported] == ["reflect_pad", "round_op", "lp_norm"]
    assert "3 unsupported node(s)" in format_table(report)


def test_nan_initializer_is_named(tmp_path) -> None:
    w = weights((4, 3, 3, 3))
    w[1, 2, 0, 0] = np.nan
    node = helper.make_node("Conv", ["x", "w_nan"], ["y"], name="conv_bad")
    path = _save(tmp_path, make_model([node], {"x": (1, 3, 8, 8)}, ["y"], {"w_nan": w}))
    with pytest.raises(MicroqError, match="initializer 'w_nan' used by node 'conv_bad'.*NaN"):
        import_onnx(path)


def test_dynamic_non_batch_dim_is_named(tmp_path) -> None:
    model = single("Relu", (1, 3, 8, 8))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    path = _save(tmp_path, model)
    with pytest.raises(MicroqError, match=r"input 'x' has a dynamic dimension 2 \('height'\)"):
        import_onnx(path)


def test_symbolic_batch_is_fixed_to_one() -> None:
    graph = import_onnx(single("Relu", (1, 3, 8, 8)))  # builders declare batch 'N'
    assert graph.logical_shapes == {"x": (1, 3, 8, 8), "y": (1, 3, 8, 8)}


def test_too_old_opset(tmp_path) -> None:
    model = single("Relu", (1, 4))
    model.opset_import[0].version = 9
    with pytest.raises(MicroqError, match="opset 9 is too old"):
        import_onnx(_save(tmp_path, model))


def test_newer_opset_warns(tmp_path) -> None:
    model = single("Relu", (1, 4))
    model.opset_import[0].version = 25
    with pytest.warns(UserWarning, match="opset 25 is newer than 24"):
        load_onnx(_save(tmp_path, model))


# ----- inspect -----

def test_inspect_report_rows_and_json() -> None:
    path = require(ONNX_DIR / "kws01_dscnn_fp32.onnx", "kws01 model")
    report = inspect_onnx(path)
    graph = import_onnx(path)
    assert [r.name for r in report.rows] == [n.name for n in graph.nodes]
    assert report.unsupported == []
    first = report.rows[0]  # 10x4 conv, 64 filters, stride 2 on 49x10 -> 25x5
    assert first.op == "Conv2D" and first.output_shape == (1, 25, 5, 64)
    assert first.macs == 25 * 5 * 64 * 10 * 4 * 1 and first.params == 64 * 40 + 64
    data = json.loads(json.dumps(to_json(report)))
    assert data["total_macs"] == report.total_macs > 0
    table = format_table(report).splitlines()
    header = [i for i, line in enumerate(table) if line.split()[:3] == ["#", "name", "op"]]
    assert header and header[0] <= 2  # after the I/O line and the layout note
    assert len({len(line) > 0 for line in table}) == 1
