"""QDQ ONNX out and in: byte-identical round trips, onnxruntime on our QDQ models, onnxruntime's
quantize_static models compiled, and clear errors for quantization our kernels cannot represent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from microq import api
from microq.codegen import emit
from microq.errors import MicroqError
from microq.qdq import export_qdq, import_qdq
from microq.ref.float_exec import to_physical
from microq.ref.int_exec import run_int
from mlperf_data import model_path, real_data

ASSETS = Path(__file__).resolve().parents[1] / "python" / "microq" / "assets"
DEMO, CALIB = ASSETS / "digits_cnn.onnx", ASSETS / "digits_calib.npz"


def _first_mismatch(a: np.ndarray, b: np.ndarray) -> str:
    idx = np.argwhere(a != b)
    if len(idx) == 0:
        return ""
    i = tuple(idx[0])
    return f"first mismatch at {i}: {a[i]} vs {b[i]}"


def _c_files(qg, out: Path) -> dict[str, bytes]:
    emit(qg, out, "net")
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def _ort(path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, feeds)))


@pytest.fixture(scope="module")
def demo_qdq(tmp_path_factory):
    """(float graph, our quantized graph, path of its QDQ export) for the demo."""
    graph, qg = api.quantize_model(DEMO, CALIB)
    out = tmp_path_factory.mktemp("qdq") / "digits.int8.onnx"
    export_qdq(DEMO, qg, out)
    return graph, qg, out


# --- QDQ out -----------------------------------------------------------------------------
def test_export_is_standard_qdq(demo_qdq):
    _, qg, path = demo_qdq
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    weights = [n for n in dq if inits[n.input[0]].dtype == np.int8]
    biases = [n for n in dq if inits[n.input[0]].dtype == np.int32]
    n_weighted = sum(k in ("conv2d", "depthwise_conv2d", "fully_connected") for k in
                     (n.kernel for n in qg.nodes))
    assert len(weights) == len(biases) == n_weighted == 5
    for n in weights:
        axis = {a.name: a.i for a in n.attribute}.get("axis", 1)
        assert axis == 0 and inits[n.input[1]].size == inits[n.input[0]].shape[0], n.name
        assert np.abs(inits[n.input[0]]).max() <= 127 and not inits[n.input[2]].any()
    # every activation microq quantizes has a Q with our exact scale and zero point
    q_nodes = {n.input[0]: n for n in m.graph.node if n.op_type == "QuantizeLinear"}
    for name, t in qg.tensors.items():
        src = name if name in q_nodes else f"{name}_float"
        if t.const is not None or src not in q_nodes:
            continue
        n = q_nodes[src]
        assert float(inits[n.input[1]]) == np.float32(t.q.scale), name
        assert int(inits[n.input[2]]) == t.q.zero_point and inits[n.input[2]].dtype == np.int8
    assert len(q_nodes) == sum(t.const is None for t in qg.tensors.values())
    assert {o.name for o in m.graph.output} == {"probs"} and m.graph.input[0].name == "input"


def test_onnxruntime_on_our_qdq_tracks_every_tensor(demo_qdq):
    """onnxruntime's QDQ arithmetic is float: each quantized tensor it computes equals our
    integer reference (bit-exact with the C) within 1 step on >= 99% of elements, at most 2
    (differences propagate); the softmax output keeps the same top-1."""
    graph, qg, path = demo_qdq
    m = onnx.load(str(path))
    dq_of = {n.input[0].removesuffix("_quantized"): n.output[0] for n in m.graph.node
             if n.op_type == "DequantizeLinear" and n.input[0].endswith("_quantized")}
    names = [t for t, v in qg.tensors.items() if v.const is None and t in dq_of]
    outs = {o.name for o in m.graph.output}
    for t in names:
        if dq_of[t] not in outs:
            m.graph.output.append(onnx.helper.make_value_info(dq_of[t], onnx.TypeProto()))
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    onames = [o.name for o in s.get_outputs()]
    x = np.load(ASSETS / "digits_test.npz")["input"][:60]
    qi = qg.tensors["input"].q
    far, total, worst = {t: 0 for t in names}, {t: 0 for t in names}, {t: 0 for t in names}
    top1 = 0
    for i in range(len(x)):
        r = dict(zip(onames, s.run(None, {"input": x[i : i + 1]})))
        xp = to_physical(graph, "input", x[i : i + 1])
        xq = np.clip(np.rint(xp / qi.scale) + qi.zero_point, -128, 127).astype(np.int8)
        ours: dict[str, np.ndarray] = {}
        run_int(qg, {"input": xq}, on_tensor=lambda n, v: ours.__setitem__(n, v))
        for t in names[1:]:
            q = qg.tensors[t].q
            got = np.rint(r[dq_of[t]] / q.scale) + q.zero_point
            if got.ndim == 4:
                got = got.transpose(0, 2, 3, 1)
            d = np.abs(got.reshape(ours[t].shape) - ours[t].astype(np.int64))
            far[t] += int((d > 1).sum())
            total[t] += d.size
            worst[t] = max(worst[t], int(d.max()))
        top1 += int(r["probs"].argmax() == ours["probs"].argmax())
    for t in names[1:]:
        if t == "probs":
            continue
        assert worst[t] <= 2 and far[t] <= 0.01 * total[t], (t, worst[t], far[t], total[t])
    assert top1 >= len(x) - 1, f"top-1 agrees on {top1}/{len(x)}"


# --- round trip --------------------------------------------------------------------------
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_demo_round_trip_gives_identical_c(tmp_path, rounding):
    _, qg = api.quantize_model(DEMO, CALIB, rounding=rounding)
    qdq = api.quantize_to_qdq(DEMO, CALIB, tmp_path / "d.int8.onnx")
    if rounding == "double":
        res = api.compile_model(qdq, None, tmp_path / "from_qdq", name="net")
        qg2 = res.qgraph
    else:
        export_qdq(DEMO, qg, qdq)
        qg2 = import_qdq(qdq, rounding=rounding)
    a, b = _c_files(qg, tmp_path / "a"), _c_files(qg2, tmp_path / "b")
    assert a.keys() == b.keys()
    for f in a:
        assert a[f] == b[f], f"{f} differs after the QDQ round trip"


@pytest.mark.parametrize("key", ["ic01", "kws01", "ad01"])
def test_mlperf_round_trip_gives_identical_c(tmp_path, key):
    feeds, _ = real_data(key)
    _, qg = api.quantize_model(model_path(key), feeds)
    export_qdq(model_path(key), qg, tmp_path / "m.int8.onnx")
    a = _c_files(qg, tmp_path / "a")
    b = _c_files(import_qdq(tmp_path / "m.int8.onnx"), tmp_path / "b")
    assert a.keys() == b.keys()
    for f in a:
        assert a[f] == b[f], f"{key}: {f} differs after the QDQ round trip"


def test_bn_model_round_trip_keeps_every_number(tmp_path):
    """sww01's BatchNormalization is folded into the exported Conv, so only the comments that
    list each layer's ONNX nodes lose the BN names; weights and every call stay identical."""
    feeds, _ = real_data("sww01")
    _, qg = api.quantize_model(model_path("sww01"), feeds)
    export_qdq(model_path("sww01"), qg, tmp_path / "m.int8.onnx")
    assert not any(n.op_type == "BatchNormalization"
                   for n in onnx.load(str(tmp_path / "m.int8.onnx")).graph.node)
    a = _c_files(qg, tmp_path / "a")
    b = _c_files(import_qdq(tmp_path / "m.int8.onnx"), tmp_path / "b")
    assert a["net_weights.c"] == b["net_weights.c"]

    def code(src: bytes) -> list[str]:  # drop the "<- ONNX: ..." source comments
        lines, skip = [], False
        for line in src.decode().splitlines():
            skip = skip or "<- ONNX:" in line
            if not skip:
                lines.append(line)
            skip = skip and not line.rstrip().endswith("*/")
        return lines

    assert code(a["net.c"]) == code(b["net.c"])


# --- QDQ in: onnxruntime quantize_static --------------------------------------------------
@pytest.fixture(scope="module")
def ort_qdq(tmp_path_factory):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    x = np.load(CALIB)["input"].astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": x[i : i + 1]} for i in range(len(x))])

        def get_next(self):
            return next(self.it, None)

    out = tmp_path_factory.mktemp("ortq") / "digits.ort.int8.onnx"
    quantize_static(str(DEMO), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)
    return out


def test_ort_quantize_static_model_compiles_and_matches(ort_qdq, tmp_path):
    """Tolerance: onnxruntime computes in float between Q/DQ pairs, so the C output (softmax
    probabilities at 1/255) differs by more than 1 step only where a 1-step logit difference
    is amplified: >= 97% of elements within 1 step, max |prob diff| <= 0.06, top-1 identical
    on >= 99% of the hold-out and the same accuracy within 0.5 points."""
    res = api.compile_model(ort_qdq, None, tmp_path / "c", name="net")
    z = np.load(ASSETS / "digits_test.npz")
    x, labels = z["input"], z["label"]
    ref = _ort(ort_qdq, {"input": x})["probs"]
    raw = api.run(tmp_path / "c", {"input": x}, raw=True)["probs"].astype(np.int64)
    q = res.qgraph.tensors["probs"].q
    assert q.scale == pytest.approx(1 / 255) and q.zero_point == -128  # the model's own
    ref_q = np.clip(np.rint(ref / q.scale) + q.zero_point, -128, 127)
    d = np.abs(raw - ref_q)
    assert np.mean(d <= 1) >= 0.97, f"{np.mean(d <= 1):.3f} within 1 step, max {d.max()}"
    assert np.abs((raw - q.zero_point) * q.scale - ref).max() <= 0.06
    assert np.mean(raw.argmax(1) == ref.argmax(1)) >= 0.99
    acc_c, acc_ort = np.mean(raw.argmax(1) == labels), np.mean(ref.argmax(1) == labels)
    assert abs(acc_c - acc_ort) <= 0.005, (acc_c, acc_ort)


def test_ort_weights_and_scales_used_as_given(ort_qdq):
    qg = import_qdq(ort_qdq)
    m = onnx.load(str(ort_qdq))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    conv2 = next(n for n in qg.nodes if n.name == "/conv2/Conv")
    w = inits["conv2.weight_quantized"]  # OIHW -> OHWI
    assert np.array_equal(conv2.params.filter, w.transpose(0, 2, 3, 1)), \
        _first_mismatch(conv2.params.filter, w.transpose(0, 2, 3, 1))
    assert np.array_equal(conv2.params.bias, inits["conv2.bias_quantized"])
    zp = int(inits["/Relu_3_output_0_zero_point"])
    assert qg.tensors["/Relu_3_output_0"].q.zero_point == zp
    assert qg.tensors["/Relu_3_output_0"].q.scale == float(inits["/Relu_3_output_0_scale"])


# --- QDQ in: errors ----------------------------------------------------------------------
def _edit(path: Path, how: str) -> onnx.ModelProto:
    m = onnx.load(str(path))
    inits = {i.name: i for i in m.graph.initializer}
    wdq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear"
               and n.input[0] in inits and inits[n.input[0]].data_type == onnx.TensorProto.INT8
               and len(inits[n.input[0]].dims) == 4)
    if how == "uint8_weights":
        q = numpy_helper.to_array(inits[wdq.input[0]]).astype(np.int16) + 128
        zp = np.full(numpy_helper.to_array(inits[wdq.input[2]]).shape, 128, np.uint8)
        inits[wdq.input[0]].CopyFrom(numpy_helper.from_array(q.astype(np.uint8), wdq.input[0]))
        inits[wdq.input[2]].CopyFrom(numpy_helper.from_array(zp, wdq.input[2]))
    elif how == "asymmetric_weights":
        zp = numpy_helper.to_array(inits[wdq.input[2]]).copy()
        zp[0] = 3
        inits[wdq.input[2]].CopyFrom(numpy_helper.from_array(zp, wdq.input[2]))
    elif how == "per_channel_activation":
        for n in m.graph.node:
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and "Relu_3" in n.input[0]:
                n.attribute.append(onnx.helper.make_attribute("axis", 1))
        s = inits["/Relu_3_output_0_scale"]
        z = inits["/Relu_3_output_0_zero_point"]
        c = 16
        s.CopyFrom(numpy_helper.from_array(np.full(c, numpy_helper.to_array(s), np.float32),
                                           s.name))
        z.CopyFrom(numpy_helper.from_array(np.full(c, numpy_helper.to_array(z), np.int8),
                                           z.name))
    elif how == "missing_activation_qdq":
        q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear"
                 and n.input[0] == "/Relu_3_output_0")
        dq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear"
                  and n.input[0] == q.output[0])
        for n in m.graph.node:
            n.input[:] = [q.input[0] if i == dq.output[0] else i for i in n.input]
        m.graph.node.remove(q)
        m.graph.node.remove(dq)
    return m


@pytest.mark.parametrize("how, message", [
    ("uint8_weights", "uint8 weights"),
    ("asymmetric_weights", "asymmetric weight zero point"),
    ("per_channel_activation", "per-channel activation quantization"),
    ("missing_activation_qdq", "has no QuantizeLinear/DequantizeLinear"),
])
def test_unrepresentable_qdq_gives_clear_error(ort_qdq, tmp_path, how, message):
    m = _edit(ort_qdq, how)
    if how == "per_channel_activation":
        assert m.graph.node  # the edit itself must be a valid model for onnxruntime
    path = tmp_path / f"{how}.onnx"
    onnx.save(m, str(path))
    with pytest.raises(MicroqError, match=message) as e:
        api.compile_model(path, None, tmp_path / "out", name="net")
    assert "'" in str(e.value), "the error names the tensor"
    assert not (tmp_path / "out").exists(), "nothing is written on error"


def test_export_when_a_conv_output_is_a_graph_output(tmp_path):
    """A 4-D graph output is stored NHWC inside and transposed back: the export must follow it.
    onnxruntime runs with graph optimizations off: its fused int8 conv (u8s8 on x86 AVX2) can
    saturate the intermediate sums and is not a faithful QDQ reference."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.normal(size=(4, 3, 3, 3)) * 0.3).astype(np.float32), "w")
    b = numpy_helper.from_array((rng.normal(size=(4,)) * 0.1).astype(np.float32), "b")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], [w, b])
    model = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), model)
    x = rng.normal(size=(16, 3, 6, 6)).astype(np.float32)
    api.quantize_to_qdq(model, {"x": x}, tmp_path / "conv.int8.onnx")
    api.compile_model(model, {"x": x}, tmp_path / "c")
    c = api.run(tmp_path / "c", {"x": x})["y"]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(tmp_path / "conv.int8.onnx"), so)
    r = np.concatenate([sess.run(None, {"x": x[i : i + 1]})[0] for i in range(len(x))])
    step = api.load_qgraph(tmp_path / "c").tensors["y"].q.scale
    assert r.shape == c.shape
    assert np.abs(r - c).max() <= step * 1.001, np.abs(r - c).max() / step


def _conv1d_chain(relu: bool, transpose: bool) -> onnx.ModelProto:
    """Conv1d -> depthwise Conv1d (groups=C) -> [ConvTranspose1d] -> pointwise Conv1d, each with
    an optional Relu, then Flatten + Gemm: the torch (TorchScript, opset 17) export's form."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(7)
    inits, nodes = [], []

    def const(name, shape, s):
        inits.append(numpy_helper.from_array((rng.normal(size=shape) * s).astype(np.float32),
                                             name))
        return name

    layers = [("Conv", (8, 4, 3), {"pads": [1, 1], "kernel_shape": [3]}),
              ("Conv", (8, 1, 3), {"pads": [1, 1], "kernel_shape": [3], "group": 8})]
    if transpose:
        layers.append(("ConvTranspose", (8, 8, 3),
                       {"pads": [1, 1], "kernel_shape": [3], "strides": [2]}))
    layers.append(("Conv", (8, 8, 1), {"kernel_shape": [1]}))
    x = "x"
    for i, (op, wshape, attrs) in enumerate(layers):
        w, b = const(f"w{i}", wshape, 0.4), const(f"b{i}", (8,), 0.1)
        y = f"/a/a.{i}/{op}_output_0"
        nodes.append(helper.make_node(op, [x, w, b], [y], name=f"/a/a.{i}/{op}", **attrs))
        x = y
        if relu:
            nodes.append(helper.make_node("Relu", [x], [f"/a/a.{i}/Relu_output_0"],
                                          name=f"/a/a.{i}/Relu"))
            x = f"/a/a.{i}/Relu_output_0"
    length = 31 if transpose else 16
    nodes.append(helper.make_node("Flatten", [x], ["flat"], name="/f/Flatten", axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", const("lw", (5, 8 * length), 0.1),
                                           const("lb", (5,), 0.1)], ["y"], name="/l/Gemm",
                                  transB=1))
    g = helper.make_graph(nodes, "conv1d_chain",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("relu", [True, False], ids=["relu", "no_relu"])
@pytest.mark.parametrize("transpose", [False, True], ids=["conv1d", "conv_transpose1d"])
def test_conv1d_chain_round_trip_gives_identical_c(tmp_path, relu, transpose):
    """Chained Conv1d layers read each other's internal [N,1,L,C] view (`..__2d`) directly; its
    Q/DQ pair must be exported on the ONNX tensor the layer writes (the Conv, or its fused Relu)
    and found there again on import (the QDQ file used to fail to compile)."""
    model = tmp_path / "m.onnx"
    onnx.save(_conv1d_chain(relu, transpose), model)
    x = np.random.default_rng(1).normal(size=(16, 4, 16)).astype(np.float32)
    _, qg = api.quantize_model(model, {"x": x})
    views = [n.inputs[0] for n in qg.nodes
             if n.kernel != "reshape" and n.inputs[0].endswith("__2d")
             and n.inputs[0] not in qg.inputs and not n.inputs[0].startswith("x")]
    assert views, "no layer reads another's internal view any more; the test lost its point"
    export_qdq(model, qg, tmp_path / "m.int8.onnx")
    exported = onnx.load(str(tmp_path / "m.int8.onnx"))
    quantized = {n.input[0] for n in exported.graph.node if n.op_type == "QuantizeLinear"}
    ends = ("Relu",) if relu else ("Conv", "ConvTranspose")
    for n in exported.graph.node:
        if n.op_type in ends:
            assert n.output[0] in quantized, f"{n.name}: output {n.output[0]} has no Q/DQ pair"
    qg2 = import_qdq(tmp_path / "m.int8.onnx")
    a, b = _c_files(qg, tmp_path / "a"), _c_files(qg2, tmp_path / "b")
    assert a.keys() == b.keys()
    for f in a:
        assert a[f] == b[f], f"{f} differs after the QDQ round trip"
    qin = qg.tensors["x"].q
    for xi in to_physical(qg, "x", x):
        xq = np.clip(np.round(xi[None] / qin.scale) + qin.zero_point, -128, 127).astype(np.int8)
        ya, yb = run_int(qg, {"x": xq})["y"], run_int(qg2, {"x": xq})["y"]
        assert np.array_equal(ya, yb), _first_mismatch(ya, yb)
