"""Import robustness (issue 9): corrupt and crafted ONNX / TFLite models end in a one-line
MicroqError naming the tensor or node, never an internal error, a huge allocation, or C that
writes past its arena. Named regression tests per defect class, then a short seeded fuzz run of
tools/fuzz_import.py (the long one is `make fuzz`)."""

from __future__ import annotations

import importlib.util
import re
import struct
import sys
import tracemalloc

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import conv, make_model, single, weights

from conftest import MODELS, REPO, require
from microq import api
from microq.errors import MicroqError

_spec = importlib.util.spec_from_file_location("fuzz_import", REPO / "tools" / "fuzz_import.py")
fz = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_import"] = fz  # dataclasses look their module up there
_spec.loader.exec_module(fz)

X = (1, 4, 8, 8)


def compile_refused(tmp_path, model: onnx.ModelProto, match: str, x_shape=X) -> str:
    """Compile `model` (saved to a file) and expect a MicroqError matching `match`; also checks
    the message is one line and no output folder (or temp folder) was left behind."""
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    calib = {"x": np.random.default_rng(0).uniform(-1, 1, (4,) + tuple(x_shape[1:]))
             .astype(np.float32)}
    out = tmp_path / "out"
    with pytest.raises(MicroqError, match=match) as e:
        api.compile_model(path, calib, out, name="net")
    msg = str(e.value)
    assert "\n" not in msg and "internal error" not in msg
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    return msg


# ------------------------------------------------------------ ONNX constants (initializers)
def _with_init(mutate) -> onnx.ModelProto:
    m = conv(X, (4, 4, 3, 3), pads=[1, 1, 1, 1])
    init = next(i for i in m.graph.initializer if i.name == "c0")  # the weight
    mutate(init)
    return m


def test_initializer_data_shorter_than_its_dims_is_refused(tmp_path):
    # was: ValueError "cannot reshape array of size 143 into shape (4,4,3,3)" (internal error)
    def cut(t):
        t.raw_data = t.raw_data[:-4]
    compile_refused(tmp_path, _with_init(cut),
                    r"initializer 'c0' declares shape \[4, 4, 3, 3\] .* stores 572 bytes")


def test_initializer_raw_data_not_a_multiple_of_the_item_size_is_refused(tmp_path):
    # was: ValueError "buffer size must be a multiple of element size"
    def cut(t):
        t.raw_data = t.raw_data[:-3]
    compile_refused(tmp_path, _with_init(cut), r"initializer 'c0' .* stores 573 bytes")


def test_initializer_dims_changed_without_data_is_refused(tmp_path):
    def redim(t):
        del t.dims[:]
        t.dims.extend([4, 1000, 3, 3])
    compile_refused(tmp_path, _with_init(redim), r"initializer 'c0' declares shape "
                    r"\[4, 1000, 3, 3\]")


@pytest.mark.parametrize("data_type", [0, 99, TensorProto.STRING, TensorProto.COMPLEX64])
def test_initializer_data_type_unknown_or_unreadable_is_refused(tmp_path, data_type):
    # was: KeyError 99, or a reshape error after reading the float bytes as another type
    def retype(t):
        t.data_type = data_type
    compile_refused(tmp_path, _with_init(retype), rf"initializer 'c0' has data_type {data_type}")


def test_initializer_reinterpreted_as_another_size_is_refused(tmp_path):
    def retype(t):
        t.data_type = TensorProto.DOUBLE  # 576 bytes are 72 doubles, not 144
    compile_refused(tmp_path, _with_init(retype), r"initializer 'c0' declares shape .* stores "
                    r"576 bytes")


def test_constant_node_with_inconsistent_tensor_is_refused(tmp_path):
    t = numpy_helper.from_array(np.ones((2, 3), np.float32), "k")
    t.raw_data = t.raw_data[:8]
    nodes = [helper.make_node("Constant", [], ["k"], name="const_k", value=t),
             helper.make_node("Add", ["x", "k"], ["y"], name="add")]
    model = make_model(nodes, {"x": (1, 2, 3)}, ["y"])
    compile_refused(tmp_path, model, r"Constant node 'const_k' declares shape \[2, 3\]",
                    (1, 2, 3))


def test_non_utf8_node_name_is_refused(tmp_path):
    m = conv(X, (4, 4, 3, 3))
    data = m.SerializeToString().replace(b"conv_0", b"co\xa2v_0")
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    with pytest.raises(MicroqError, match=r"node name b'co\\xa2v_0' is not valid UTF-8"):
        api.compile_model(path, {"x": np.zeros((1,) + X[1:], np.float32)}, tmp_path / "o")


def test_control_characters_in_a_name_are_refused(tmp_path):
    # was: a name with a newline made the "one-line" error span several lines
    m = conv(X, (4, 4, 3, 3))
    m.graph.node[0].name = "conv\nEvil"
    compile_refused(tmp_path, m, r"a node name 'conv\\nEvil' contains control characters")


def test_node_with_too_few_inputs_is_refused(tmp_path):
    # was: IndexError in the MatMul pattern matcher (a Transpose turned into a 1-input MatMul)
    model = single("MatMul", (1, 4, 8))
    compile_refused(tmp_path, model, r"MatMul node 'matmul_0' has 1 inputs and 1 outputs; ONNX "
                    r"MatMul takes 2..2 inputs", (1, 4, 8))


# ------------------------------------------------------------- ONNX absurd sizes, empties
def _peak_mib(fn) -> float:
    """Peak Python-tracked allocation of fn(), run with the address space capped at the
    current size + 1 GiB (a regression then fails with MemoryError instead of swapping)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, hard))
    tracemalloc.start()
    try:
        fn()
    except MicroqError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return peak / 2**20


@pytest.mark.parametrize("op", ["Pad", "Conv", "MaxPool"])
def test_pads_2000_are_refused_before_allocating(tmp_path, op):
    # was: the calibration tried to allocate 10.8 GiB for a [32, 16, 4008, 4008] float tensor
    if op == "Pad":
        model = single("Pad", X, [np.array([0, 0, 2000, 2000, 0, 0, 2000, 2000], np.int64)])
    elif op == "Conv":
        model = conv(X, (4, 4, 3, 3), pads=[2000] * 4)
    else:
        model = single("MaxPool", X, kernel_shape=[3, 3], pads=[2000] * 4)
    onnx.save(model, str(tmp_path / "m.onnx"))
    peak = _peak_mib(lambda: api.compile_model(tmp_path / "m.onnx", {"x": np.zeros(
        (32,) + X[1:], np.float32)}, tmp_path / "o2"))
    assert peak < 64, f"peak Python allocation {peak:.0f} MiB before refusing"
    msg = compile_refused(tmp_path, model, r"tensor 'y' \(output of \w+ node '\w+_0'\) would "
                          r"have shape \[1, 4, 400\d, 400\d\]")
    assert "more than the 1,048,576" in msg


def test_size_limit_follows_the_models_own_sizes():
    from microq.onnx_import.loader import MAX_ELEMENTS, MIN_LIMIT, REL_ELEMENTS, size_limit

    small = conv(X, (4, 4, 3, 3))
    assert size_limit(small) == MIN_LIMIT
    big = single("Relu", (1, 3, 512, 512))
    assert size_limit(big) == min(MAX_ELEMENTS, REL_ELEMENTS * 3 * 512 * 512)


def test_huge_constant_of_shape_is_refused_before_folding(tmp_path):
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["c"], name="cos",
                              value=numpy_helper.from_array(np.array([1.0], np.float32))),
             helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    model = make_model(nodes, {"x": (1, 4)}, ["y"], {"s": np.array([1, 2**40], np.int64)})
    compile_refused(tmp_path, model, r"tensor 'c' \(output of ConstantOfShape node 'cos'\) "
                    r"would have shape \[1, 1099511627776\]", (1, 4))


def test_slice_start_out_of_bounds_is_refused_not_a_calibration_crash(tmp_path):
    # was: "zero-size array to reduction operation minimum" inside calibration
    nodes = [helper.make_node("Slice", ["x", "s", "e", "a"], ["t"], name="slice"),
             helper.make_node("Relu", ["t"], ["y"], name="relu")]
    model = make_model(nodes, {"x": (1, 4, 8)}, ["y"], {
        "s": np.array([100], np.int64), "e": np.array([200], np.int64),
        "a": np.array([2], np.int64)})
    compile_refused(tmp_path, model, r"node 'slice' \(Slice\): Slice selects no element of "
                    r"axis 2 \(size 8\)", (1, 4, 8))


def test_every_node_computing_an_empty_tensor_is_reported():
    # the backstop behind the converters' own checks (Slice's above): any remaining node
    from microq.onnx_import.convert import onnx_node_names
    from microq.onnx_import.loader import empty_outputs, prepare

    nodes = [helper.make_node("Slice", ["x", "s", "e", "a"], ["t"], name="slice"),
             helper.make_node("Relu", ["x"], ["y"], name="relu")]
    model = make_model(nodes, {"x": (1, 4, 8)}, ["t", "y"], {
        "s": np.array([9], np.int64), "e": np.array([20], np.int64),
        "a": np.array([-1], np.int64)})
    prep = prepare(model, "m.onnx")
    assert empty_outputs(prep, onnx_node_names(prep.nodes)) == [
        ("slice", "Slice", "output 't' has shape [1, 4, 0], no elements: the model is invalid")]


# ------------------------------------------------------------------- ONNX attribute checks
def test_layernorm_axis_0_is_refused(tmp_path):
    # was: "operands could not be broadcast together with shapes (128,) (32,)" from numpy
    g, b = np.ones((1, 4, 8), np.float32), np.zeros((1, 4, 8), np.float32)
    model = single("LayerNormalization", (1, 4, 8), [g, b], opset=17, axis=0)
    compile_refused(tmp_path, model, r"LayerNormalization along the batch axis \(axis 0\)",
                    (1, 4, 8))


@pytest.mark.parametrize("op,attrs,consts", [
    ("LayerNormalization", {"axis": 5}, [np.ones(8, np.float32), np.zeros(8, np.float32)]),
    ("LayerNormalization", {"axis": -4}, [np.ones(8, np.float32), np.zeros(8, np.float32)]),
    ("Softmax", {"axis": 99}, []),
    ("Gather", {"axis": 7}, [np.array([1], np.int64)]),
])
def test_axis_out_of_range_is_refused_not_wrapped(tmp_path, op, attrs, consts):
    # was: axis 5 of a rank-3 tensor silently taken as axis 2 (Python's modulo)
    model = single(op, (1, 4, 8), consts, opset=17, **attrs)
    ax = next(iter(attrs.values()))
    compile_refused(tmp_path, model, rf"axis={ax} is out of range for a rank-3 input",
                    (1, 4, 8))


def test_layernorm_scale_of_the_wrong_size_is_refused(tmp_path):
    model = single("LayerNormalization", (1, 4, 8), [np.ones(5, np.float32),
                                                     np.zeros(8, np.float32)], opset=17)
    compile_refused(tmp_path, model, r"scale \[5\] / bias \[8\] do not broadcast", (1, 4, 8))


def test_transpose_perm_that_is_not_a_permutation_is_refused(tmp_path):
    # was: compiled, perm [0, 0, 1] read as some layout
    model = single("Transpose", (1, 4, 8), perm=[0, 0, 1])
    compile_refused(tmp_path, model, r"perm=\[0, 0, 1\] is not a permutation", (1, 4, 8))


def test_gather_index_out_of_range_is_refused(tmp_path):
    # was: compiled, index 9 of an axis of size 4 wrapped to 1
    model = single("Gather", (1, 4, 8), [np.array([9], np.int64)], axis=1)
    compile_refused(tmp_path, model, r"Gather indices \[9\] out of range for axis 1 of size 4",
                    (1, 4, 8))


def test_pool_pads_not_smaller_than_the_kernel_are_refused(tmp_path):
    # was: all-padding windows gave a -inf/NaN calibration range -> ValueError in quantize
    model = single("MaxPool", X, kernel_shape=[2, 2], pads=[0, 7, 0, 0])
    compile_refused(tmp_path, model, r"pads \[0, 7, 0, 0\] not smaller than the kernel \[2, 2\]")


@pytest.mark.parametrize("attr,value", [("strides", [1, 2**63 - 1]), ("strides", [0, 1]),
                                        ("dilations", [1, -1]), ("pads", [1, 1, 1])])
def test_window_attributes_out_of_range_are_refused(tmp_path, attr, value):
    # was: OverflowError "Python int too large to convert to C long" in the float executor
    model = single("AveragePool", X, kernel_shape=[2, 2], **{attr: value})
    compile_refused(tmp_path, model, rf"{attr}=\[.*\]: expected \d integers in")


@pytest.mark.parametrize("eps", [-1.0, float("nan")])
def test_batchnorm_negative_or_nan_epsilon_is_refused(tmp_path, eps):
    # was: sqrt(var + eps) of a negative number -> NaN weights, refused without the file name
    c = 4
    params = [np.ones(c, np.float32), np.zeros(c, np.float32), np.zeros(c, np.float32),
              np.full(c, 0.5, np.float32)]
    model = single("BatchNormalization", X, params, epsilon=eps)
    compile_refused(tmp_path, model, r"node 'batchnormalization_0' \(BatchNormalization\): "
                    r"epsilon=(-1.0|nan) with variance min 0.5: variance \+ epsilon must be "
                    "positive")


def test_float_overflow_during_calibration_is_refused(tmp_path):
    # was: ValueError "cannot convert float NaN to integer" (a finite bias of 3.4e38 + x -> inf)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
             helper.make_node("Add", ["c", "c"], ["y"], name="add")]
    model = make_model(nodes, {"x": X}, ["y"], {"w": weights((4, 4, 1, 1)),
                                                "b": np.full(4, 3.4e38, np.float32)})
    compile_refused(tmp_path, model, r"tensor 'y(__phys)?' overflows float32 on the calibration "
                    r"data "
                    r"\(range .*inf\)")


def test_constant_graph_output_is_refused(tmp_path):
    # was: KeyError 'w_1' in the quantizer (a Sigmoid of a weight kept as a graph output)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
             helper.make_node("Sigmoid", ["w"], ["s"], name="sig")]
    model = make_model(nodes, {"x": (1, 2, 4, 4)}, ["y", "s"], {"w": weights((2, 2, 1, 1))})
    compile_refused(tmp_path, model, r"graph output 's' of Sigmoid node 'sig' is a constant",
                    (1, 2, 4, 4))


# ------------------------------------------------------------------------ crafted TFLite
KWS = "kws_ref_model.tflite"  # 13 ops: conv, 4 x (depthwise, conv), avg pool, reshape, FC
# tensor indices of kws_ref_model.tflite (see the op list in the file)
KWS_IN, KWS_CONV0_OUT, KWS_CONV0_W = 0, 22, 17


def kws_bytes() -> bytearray:
    pytest.importorskip("tflite")
    return bytearray(require(MODELS / "tflite" / KWS, "int8 TFLite model kws01").read_bytes())


def _model(buf):
    import tflite

    return tflite.Model.GetRootAsModel(bytes(buf), 0)


def _tensor_vec(buf, ti: int, slot: int):
    return fz._vector(_model(buf).Subgraphs(0).Tensors(ti)._tab, slot)


def _quant_vec(buf, ti: int, slot: int):
    return fz._vector(_model(buf).Subgraphs(0).Tensors(ti).Quantization()._tab, slot)


def compile_tflite_refused(tmp_path, buf, match: str) -> str:
    path = tmp_path / "crafted.tflite"
    path.write_bytes(bytes(buf))
    out = tmp_path / "out"
    with pytest.raises(MicroqError, match=match) as e:
        api.compile_model(path, None, out, name="net")
    msg = str(e.value)
    assert "\n" not in msg and "internal error" not in msg
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    return msg


def _set_op_io(buf, op: int, slot: int, k: int, value: int) -> None:
    start, _ = fz._vector(_model(buf).Subgraphs(0).Operators(op)._tab, slot)
    struct.pack_into("<i", buf, start + 4 * k, value)


def test_tflite_op_input_minus_one_is_not_the_last_tensor(tmp_path):
    # was: -1 resolved to the last tensor via Python negative indexing
    buf = kws_bytes()
    _set_op_io(buf, 0, 1, 0, -1)
    compile_tflite_refused(tmp_path, buf, r"op0_conv_2d \(CONV_2D\): required input 0 is "
                           r"omitted \(tensor index -1\)")


@pytest.mark.parametrize("value", [-2, 35, 2**31 - 1, -(2**31)])
def test_tflite_tensor_index_out_of_range_is_refused(tmp_path, value):
    buf = kws_bytes()
    _set_op_io(buf, 1, 1, 0, value)
    compile_tflite_refused(tmp_path, buf, rf"operator 1 \(DEPTHWISE_CONV_2D\) input refers to "
                           rf"tensor {value}; the subgraph has 35 tensors")


@pytest.mark.parametrize("dim,value", [(0, 1000), (3, 128), (1, 24)])
def test_tflite_activation_shape_must_match_what_its_producer_computes(tmp_path, dim, value):
    # was: the arena was planned from the declared shape while the conv wrote N*OH*OW*Cout of
    # the computed one: the C wrote ~125 KiB past the arena
    buf = kws_bytes()
    start, _ = _tensor_vec(buf, KWS_CONV0_OUT, 0)
    struct.pack_into("<i", buf, start + 4 * dim, value)
    want = [1, 25, 5, 64]
    got = list(want)
    got[dim] = value
    compile_tflite_refused(tmp_path, buf, rf"op0_conv_2d \(CONV_2D\): output tensor "
                           rf"'.*' has shape \[{', '.join(map(str, got))}\], but the operator "
                           rf"computes \[{', '.join(map(str, want))}\]")


@pytest.mark.parametrize("value", [-(2**31), 0, -1])
def test_tflite_nonpositive_dims_are_refused(tmp_path, value):
    buf = kws_bytes()
    start, _ = _tensor_vec(buf, KWS_IN, 0)
    struct.pack_into("<i", buf, start, value)
    compile_tflite_refused(tmp_path, buf, rf"tensor 0 'input_1' has shape \[{value}, 49, 10, 1\]")


def _conv_options_field(buf, op: int, slot: int) -> int:
    import flatbuffers

    table = _model(buf).Subgraphs(0).Operators(op).BuiltinOptions()
    return fz._field_pos(flatbuffers.table.Table(table.Bytes, table.Pos), slot)


@pytest.mark.parametrize("slot,name", [(1, "stride_w"), (2, "stride_h")])
def test_tflite_stride_0_is_refused_not_a_zero_division(tmp_path, slot, name):
    # was: ZeroDivisionError in compute_out_size ("option 0")
    buf = kws_bytes()
    struct.pack_into("<i", buf, _conv_options_field(buf, 0, slot), 0)
    compile_tflite_refused(tmp_path, buf, rf"op0_conv_2d \(CONV_2D\): option {name}=0 is "
                           r"outside \[1, 65536\]")


@pytest.mark.parametrize("scale", [float("inf"), float("nan"), -1.0, 0.0])
@pytest.mark.parametrize("tensor,role", [(KWS_CONV0_OUT, "output"), (KWS_CONV0_W, "weight")])
def test_tflite_scale_inf_nan_negative_or_zero_is_refused(tmp_path, scale, tensor, role):
    # was: ValueError "quantize_multiplier needs a non-negative multiplier" (internal error)
    buf = kws_bytes()
    start, _ = _quant_vec(buf, tensor, 2)
    struct.pack_into("<f", buf, start, scale)
    compile_tflite_refused(tmp_path, buf, rf"op0_conv_2d \(CONV_2D\): {role} tensor '.*' has "
                           rf"scale {re.escape(repr(scale))}; ")


@pytest.mark.parametrize("zp", [-(2**63), 2**63 - 1, 128, -129])
def test_tflite_zero_point_outside_int8_is_refused(tmp_path, zp):
    # was: INT64_MIN emitted as a C literal that does not compile
    buf = kws_bytes()
    start, _ = _quant_vec(buf, KWS_CONV0_OUT, 3)
    struct.pack_into("<q", buf, start, zp)
    compile_tflite_refused(tmp_path, buf, rf"output tensor '.*' has zero point {zp}; an int8 "
                           r"zero point is in \[-128, 127\]")


@pytest.mark.parametrize("what", ["offset", "length"])
def test_tflite_corrupt_buffer_offset_is_refused(tmp_path, what):
    # was: ValueError "buffer is smaller than requested size" / struct.error (internal error)
    buf = kws_bytes()
    b = _model(buf).Buffers(18)  # the first conv's filter
    o = b._tab.Offset(4)
    if what == "offset":
        struct.pack_into("<I", buf, b._tab.Pos + o, len(buf) + 4096)
    else:
        struct.pack_into("<I", buf, b._tab.Vector(o) - 4, 2**31 - 1)
    compile_tflite_refused(tmp_path, buf, r"crafted.tflite: corrupt TFLite flatbuffer")


def test_tflite_buffer_size_must_match_the_tensor_shape(tmp_path):
    buf = kws_bytes()
    b = _model(buf).Buffers(18)
    struct.pack_into("<I", buf, b._tab.Vector(b._tab.Offset(4)) - 4, 100)  # 640 -> 100 bytes
    compile_tflite_refused(tmp_path, buf, r"constant tensor 17 'functional_1/conv2d/Conv2D' "
                           r"INT8 \[64, 10, 4, 1\] needs 2560 bytes, its buffer has 100")


def test_tflite_truncated_file_is_refused(tmp_path):
    buf = kws_bytes()[:30000]
    compile_tflite_refused(tmp_path, buf, r"corrupt TFLite flatbuffer")


def test_tflite_opcode_index_out_of_range_is_refused(tmp_path):
    buf = kws_bytes()
    pos = fz._field_pos(_model(buf).Subgraphs(0).Operators(3)._tab, 0)
    struct.pack_into("<I", buf, pos, 2**31)
    compile_tflite_refused(tmp_path, buf, r"operator 3 has opcode index 2147483648")


@pytest.mark.parametrize("beta", [-1.0, 0.0, float("inf")])
def test_tflite_softmax_beta_must_be_positive(tmp_path, beta):
    # was: "softmax beta must be positive and finite" without the file or the operator
    import flatbuffers

    buf = kws_bytes()
    table = _model(buf).Subgraphs(0).Operators(12).BuiltinOptions()
    struct.pack_into("<f", buf, fz._field_pos(flatbuffers.table.Table(table.Bytes, table.Pos),
                                               0), beta)
    compile_tflite_refused(tmp_path, buf, rf"crafted.tflite: op12_softmax \(SOFTMAX\): option "
                           rf"beta={re.escape(repr(beta))}; expected a positive finite beta")


def test_tflite_control_characters_in_a_tensor_name_are_refused(tmp_path):
    buf = kws_bytes()
    name = b"input_1"
    pos = bytes(buf).index(name + b"\x00")
    buf[pos + 2] = 0x0A  # "in\nut_1"
    compile_tflite_refused(tmp_path, buf, r"tensor 0 name 'in\\nut_1' contains control "
                           r"characters")


def test_tflite_parameter_errors_name_the_file_and_operator(tmp_path):
    # was: "multiplier 2.9e+38 must lie in (0, 1)" alone (an output scale of 1e-45)
    kws_bytes()  # skips without the tflite package / ../shared
    ic01 = require(MODELS / "tflite" / "pretrainedResnet_quant.tflite", "int8 TFLite ic01")
    buf = bytearray(ic01.read_bytes())
    start, _ = _quant_vec(buf, 33, 2)  # the output of the third residual ADD
    struct.pack_into("<f", buf, start, 1e-45)
    compile_tflite_refused(tmp_path, buf, r"crafted.tflite: op[0-9]+_add \(ADD\): ")


def test_tflite_op_reading_a_tensor_nobody_wrote_is_refused(tmp_path):
    # op 2 reads op 3's output: uninitialized arena memory, and a cycle in the planner's eyes
    buf = kws_bytes()
    _set_op_io(buf, 2, 1, 0, 25)
    compile_tflite_refused(tmp_path, buf, r"op2_conv_2d \(CONV_2D\): (input|filter) .*")


# --------------------------------------------------------------------- the short fuzz run
FUZZ_SEED, FUZZ_COUNT = 9, 50


def test_fuzz_short_run_has_no_failures(tmp_path):
    """>= 50 ONNX and >= 50 TFLite mutants through `microq compile` (worker subprocess under
    RLIMIT_AS), a sample of the compiled ones built strictly and run under ASan+UBSan."""
    import shutil

    seeds = fz.find_seeds(MODELS.parent)
    if not any(s.kind == "tflite" for s in seeds):
        require(MODELS / "tflite" / KWS, "int8 TFLite models (fuzz seeds)")
    if shutil.which("gcc") is None:
        require(REPO / "no-gcc", "gcc for the ASan run")
    s = fz.fuzz(FUZZ_COUNT, FUZZ_SEED, seeds=seeds, asan="sample", asan_per_kind=2,
                mem_mb=3072, timeout=120, work=tmp_path)
    table = fz.table(s)
    assert s["total"] == 2 * FUZZ_COUNT, table
    assert s["failures"] == [], table
    assert s["c_checked"] >= 2, table  # the ASan sample really ran
    assert s["refused"] > 0 and s["compiled"] > 0, table


def test_fuzz_harness_classifies_failures(tmp_path):
    """The harness itself can fail: an internal error, a leftover folder, C that does not build
    strictly and C that writes out of bounds are each reported as failures."""
    import shutil

    if shutil.which("gcc") is None:
        require(REPO / "no-gcc", "gcc for the ASan run")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")

    def case(outcome, message, out):
        c = fz.Case("s", "onnx", 0, "", str(model), None, str(out), outcome, message)
        fz._classify(c)
        return c.outcome

    assert case("refused", f"{model}: bad", tmp_path / "none") == "refused"
    assert case("refused", "internal error (KeyError: 'x'); this is a microq bug",
                tmp_path / "none") == "internal-error"
    assert case("refused", "bad input", tmp_path / "none") == "vague-error"
    assert case("refused", "tensor 't' is bad", tmp_path / "none") == "refused"
    assert case("refused", f"{model}: bad", tmp_path) == "folder"
    assert case("compiled", "", tmp_path / "none") == "folder"

    out = tmp_path / "net"
    assets = REPO / "python" / "microq" / "assets"
    api.compile_model(assets / "digits_cnn.onnx", assets / "digits_calib.npz", out, name="net")
    assert fz.check_c(out) == ("compiled", "")
    src = out / "net.c"
    text = src.read_text()
    head = "int net_invoke_multi(const int8_t *const *inputs, int8_t *const *outputs)\n{\n"
    assert head in text
    src.write_text(text.replace(head, head + "    outputs[0][NET_OUTPUT0_SIZE] = 1;\n"))
    kind, msg = fz.check_c(out)
    assert kind == "c-run" and "AddressSanitizer" in msg, msg
    src.write_text(text.replace(head, head + "    int unused;\n"))
    kind, msg = fz.check_c(out)
    assert kind == "c-build" and "unused" in msg, msg


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("command", ["inspect", "compile"])
def test_tflite_of_garbage_bytes_is_a_one_line_error_in_inspect_and_compile(tmp_path, command,
                                                                           seed):
    """Random bytes behind a TFL3 identifier (a root offset inside the file for odd seeds, any
    for even ones): `microq inspect` and `microq compile` exit 1 with one 'corrupt TFLite' line,
    never "internal error (TypeError ...)", and write no folder."""
    import random
    import subprocess

    pytest.importorskip("tflite")
    rng = random.Random(seed)
    buf = bytearray(rng.randbytes(3000))
    buf[4:8] = b"TFL3"
    if seed % 2:
        buf[0:4] = rng.randrange(8, 3000).to_bytes(4, "little")
    path = tmp_path / "garbage.tflite"
    path.write_bytes(bytes(buf))
    args = [command, path] + (["-o", tmp_path / "out"] if command == "compile" else [])
    r = subprocess.run([sys.executable, "-m", "microq", *map(str, args)], capture_output=True,
                       text=True, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "garbage.tflite: corrupt TFLite flatbuffer" in lines[0], lines[0]
    assert "internal error" not in lines[0]
    assert not (tmp_path / "out").exists()


def test_inconsistent_shapes_the_converters_accept_are_refused_before_calibration(tmp_path):
    """Fuzz seed 1, ONNX mutant 76: ic01's flatten Reshape target mutated to [-1, 1] made the
    imported graph broadcast a [10] bias against a [10, 1] view (an internal ValueError inside
    calibration). import_onnx now runs the float graph once on two zero samples and checks every
    activation's shape: one line naming the model, no folder."""
    path = require(MODELS / "onnx" / "ic01_resnet8_fp32.onnx", "float ONNX ic01")
    m = onnx.load(str(path))
    init = next(i for i in m.graph.initializer if i.name == "const_fold_opt__113")
    init.CopyFrom(numpy_helper.from_array(np.array([-1, 1], np.int64), init.name))
    bad = tmp_path / "ic01_flatten_mutant.onnx"
    onnx.save(m, str(bad))
    calib = tmp_path / "calib.npz"
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    np.savez(calib, **{m.graph.input[0].name: x})
    with pytest.raises(MicroqError, match=r"ic01_flatten_mutant\.onnx: .*(inconsistent|cannot)"):
        api.compile_model(bad, calib, tmp_path / "out")
    assert not (tmp_path / "out").exists()
