"""int8 TFLite import: the generated C equals TFLite Micro bit for bit on the MLPerf Tiny models.

Golden: the PyPI `tflite-micro` package (tflite_micro.python.tflite_micro.runtime.Interpreter),
which runs TFLite Micro's reference kernels with double rounding. Every model is checked on its
real sample inputs (../shared/models/data, quantized with the model's input parameters) and on
100 uniform random int8 inputs (seed 0). The C also equals the numpy integer reference (both
rounding modes; TFLite Micro has no single-rounding build to compare with).
"""

from __future__ import annotations

import importlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

import microq
from conftest import IN_CI, MODELS, require
from microq import api
from microq.errors import MicroqError, UnsupportedModelError
from microq.ref.int_exec import run_int
from microq.tflite_import.lower import compute_out_size, compute_padding

N_RANDOM = 100
TFLITE = {
    "ic01": "pretrainedResnet_quant.tflite",
    "vww01": "vww_96_int8.tflite",
    "kws01": "kws_ref_model.tflite",
    "ad01": "ad01_int8.tflite",
    "sww01": "str_ww_ref_model.tflite",
}
KEYS = list(TFLITE)


def _need(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        msg = f"python package for {module} is not installed (pip install '.[test]')"
        if IN_CI:
            pytest.fail(msg + "; under CI=true this is a failure")
        pytest.skip(msg)


def model_file(key: str):
    return require(MODELS / "tflite" / TFLITE[key], f"int8 TFLite model {key}")


def real_floats(key: str) -> np.ndarray:
    """The real samples of ../shared/models/data in the TFLite (NHWC) layout, float."""
    def load(name):
        with np.load(require(MODELS / "data" / name, f"{key} data")) as z:
            return {k: z[k] for k in z.files}

    if key == "ic01":
        return load("ic01_real_images.npz")["images_u8_nhwc"].astype(np.float32)
    if key == "vww01":
        d = load("vww01_real_images.npz")
        gray = (d["repo_gray_minus1_1"] + 1.0) / 2.0
        photos = d["images_u8_nhwc"].astype(np.float32) / 255.0
        return np.concatenate([photos, np.repeat(gray[None, :, :, None], 3, axis=3)])
    if key == "kws01":  # the repo sample is int8 already: dequantize, quantize_input restores it
        q = load("kws01_repo_sample.npz")["x_int8_nhwc"].astype(np.float32)
        return (q - 83.0) * np.float32(0.5847029)
    if key == "ad01":
        return load("ad01_toycar_normal_id01_00000000.npz")["windows"]
    return load("sww01_calibration_samples.npz")["specs"].astype(np.float32)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """(key, rounding) -> the HostModel of the compiled .tflite (compiled once per module)."""
    _need("tflite")
    cache = {}

    def get(key, rounding="double"):
        if (key, rounding) not in cache:
            out = tmp_path_factory.mktemp(f"{key}_{rounding}") / key
            api.compile_model(model_file(key), None, out, name=key, rounding=rounding)
            cache[key, rounding] = api.load(out)
        return cache[key, rounding]

    return get


@pytest.fixture(scope="module")
def samples(compiled):
    """key -> (real int8 inputs, random int8 inputs), NHWC with a batch axis."""
    cache = {}

    def get(key):
        if key not in cache:
            m = compiled(key)
            spec = m.inputs[0]
            real = m.quantize_input(spec["name"], real_floats(key))
            rng = np.random.default_rng(0)
            rand = rng.integers(-128, 128, size=(N_RANDOM, *spec["shape"][1:]), dtype=np.int8)
            cache[key] = (real, rand)
        return cache[key]

    return get


def tflm_outputs(path, x: np.ndarray) -> tuple[np.ndarray, object]:
    """TFLite Micro's int8 output for each sample of x, and the interpreter."""
    runtime = _need("tflite_micro.python.tflite_micro.runtime")
    it = runtime.Interpreter.from_file(str(path))
    ys = []
    for i in range(len(x)):
        it.set_input(x[i : i + 1], 0)
        it.invoke()
        ys.append(np.array(it.get_output(0)))
    return np.concatenate(ys), it


def count_mismatches(got: np.ndarray, want: np.ndarray) -> tuple[int, str]:
    bad = [i for i in range(len(want)) if not np.array_equal(got[i], want[i])]
    if not bad:
        return 0, ""
    i = bad[0]
    at = tuple(np.argwhere(got[i] != want[i])[0])
    return len(bad), f"first at sample {i}, index {at}: {got[i][at]} vs {want[i][at]}"


@pytest.mark.parametrize("key", KEYS)
def test_c_equals_tflite_micro(compiled, samples, key):
    m = compiled(key)
    x = np.concatenate(samples(key))
    got = m.run_int8({m.inputs[0]["name"]: x})[m.outputs[0]["name"]]
    want, _ = tflm_outputs(model_file(key), x)
    got = got.reshape(want.shape)
    n_bad, where = count_mismatches(got, want)
    assert n_bad == 0, f"{key}: {n_bad} of {len(x)} samples differ from TFLite Micro, {where}"


@pytest.mark.parametrize("rounding", ["double", "single"])
@pytest.mark.parametrize("key", KEYS)
def test_c_equals_integer_reference(compiled, samples, key, rounding):
    m = compiled(key, rounding)
    qg = api.load_qgraph(m.folder)
    real, rand = samples(key)
    x = np.concatenate([real[:8], rand[:8]])
    name, out = qg.inputs[0], qg.outputs[0]
    got = m.run_int8({name: x})[out]
    want = np.concatenate([run_int(qg, {name: x[i : i + 1]}, rounding)[out]
                           for i in range(len(x))])
    n_bad, where = count_mismatches(got, want)
    assert n_bad == 0, f"{key} ({rounding}): {n_bad} of {len(x)} samples differ, {where}"


@pytest.mark.parametrize("key", ["ic01", "ad01"])
def test_single_rounding_reaches_the_build(compiled, samples, key):
    """TFLite Micro rounds twice; a single-rounding build must give other results somewhere."""
    double, single = compiled(key), compiled(key, "single")
    assert single.meta["rounding"] == "single"
    x = samples(key)[1][:20]
    name, out = double.inputs[0]["name"], double.outputs[0]["name"]
    assert not np.array_equal(double.run_int8({name: x})[out], single.run_int8({name: x})[out])


def tflm_arena(it) -> dict[str, int]:
    """Arena use recorded by TFLite Micro's RecordingMicroAllocator (printed, so read from the
    process's stdout/stderr)."""
    with tempfile.TemporaryFile() as tmp:
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        try:
            for fd in saved:
                os.dup2(tmp.fileno(), fd)
            it.print_allocations()
        finally:
            for fd, s in saved.items():
                os.dup2(s, fd)
                os.close(s)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    return {k: int(v) for k, v in re.findall(r"Arena allocation (\w+) (\d+) bytes", text)}


@pytest.mark.parametrize("key", KEYS)
def test_arena_not_larger_than_tflite_micro(compiled, samples, key):
    """Ours against TFLite Micro's head (the planned, non-persistent activation and scratch
    memory); its tail (persistent interpreter structs) has no counterpart in our C."""
    _, it = tflm_outputs(model_file(key), samples(key)[0][:1])
    theirs = tflm_arena(it)
    ours = compiled(key).meta["arena_size"]
    assert "head" in theirs, f"TFLite Micro printed no arena numbers: {theirs}"
    print(f"{key}: ours {ours} B, TFLite Micro head {theirs['head']} B, total {theirs['total']} B")
    assert ours <= theirs["head"], f"{key}: arena {ours} B > TFLite Micro's {theirs['head']} B"


# --- padding, as TFLite computes it ----------------------------------------------------------
@pytest.mark.parametrize(
    "stride, dilation, size, k, padding, out, pads",
    [
        pytest.param(1, 1, 32, 3, 0, 32, (1, 1), id="same_s1_k3"),
        pytest.param(2, 1, 32, 3, 0, 16, (0, 1), id="same_s2_even_odd_pixel_after"),
        pytest.param(2, 1, 49, 10, 0, 25, (4, 5), id="kws_first_conv_h"),
        pytest.param(2, 1, 10, 4, 0, 5, (1, 1), id="kws_first_conv_w"),
        pytest.param(1, 2, 9, 3, 0, 9, (2, 2), id="same_dilation2"),
        pytest.param(1, 1, 30, 3, 1, 28, (0, 0), id="valid_k3"),
        pytest.param(3, 1, 8, 3, 1, 2, (0, 0), id="valid_s3"),
    ],
)
def test_padding_like_tflite(stride, dilation, size, k, padding, out, pads):
    assert compute_out_size(padding, size, k, stride, dilation) == out
    if padding == 0:
        assert compute_padding(stride, dilation, size, k, out) == pads


# --- bad input --------------------------------------------------------------------------------
TENSOR_TYPE_FIELD = 6  # vtable offsets in the TFLite schema: Tensor.type
OPCODE_DEPRECATED_FIELD, OPCODE_BUILTIN_FIELD = 4, 10  # OperatorCode builtin codes
INT16, UINT8, L2_NORMALIZATION, L2_POOL_2D = 7, 3, 11, 12


def patched_model(key: str, tmp_path, types: dict | None = None, ops: dict | None = None):
    """A copy of an int8 model with tensor types (index -> TensorType) or the operator code of
    some operators (operator index -> BuiltinOperator) overwritten in place."""
    tflite = _need("tflite")
    buf = bytearray(model_file(key).read_bytes())
    sg = tflite.Model.GetRootAsModel(buf, 0).Subgraphs(0)
    model = tflite.Model.GetRootAsModel(buf, 0)
    for idx, new in (types or {}).items():
        tab = sg.Tensors(idx)._tab
        buf[tab.Pos + tab.Offset(TENSOR_TYPE_FIELD)] = new
    for op_idx, new in (ops or {}).items():
        tab = model.OperatorCodes(sg.Operators(op_idx).OpcodeIndex())._tab
        buf[tab.Pos + tab.Offset(OPCODE_DEPRECATED_FIELD)] = new
        o = tab.Offset(OPCODE_BUILTIN_FIELD)
        if o:
            buf[tab.Pos + o : tab.Pos + o + 4] = int(new).to_bytes(4, "little")
    path = tmp_path / f"{key}_patched.tflite"
    path.write_bytes(bytes(buf))
    return path


def test_int16_activation_with_a_zero_point_is_a_clear_error(tmp_path):
    # tensor 22 of ic01: the first conv's output, also the residual branch's input. int16 is
    # imported (16x8 models), but only symmetric: this one keeps its int8 zero point -128.
    path = patched_model("ic01", tmp_path, types={22: INT16})
    with pytest.raises(MicroqError, match=r"op0_conv_2d \(CONV_2D\): output tensor "
                       r"'model/activation/Relu;.*' has zero point -128; 16x8 int16 "
                       r"activations are symmetric"):
        api.compile_model(path, None, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_uint8_weights_are_a_clear_error(tmp_path):
    path = patched_model("ad01", tmp_path, types={11: UINT8})
    with pytest.raises(MicroqError, match=r"op0_fully_connected .*weight tensor .* UINT8"):
        api.compile_model(path, None, tmp_path / "out")


def test_float_model_is_a_clear_error(tmp_path):
    path = require(MODELS / "tflite" / "ad01_fp32.tflite", "float TFLite model ad01")
    _need("tflite")
    with pytest.raises(MicroqError, match=r"op0_fully_connected \(FULLY_CONNECTED\): input "
                       r"tensor '.*' is FLOAT32, expected INT8"):
        api.compile_model(path, None, tmp_path / "out")


def test_every_unsupported_op_is_listed(tmp_path):
    path = patched_model("ic01", tmp_path, ops={12: L2_POOL_2D, 15: L2_NORMALIZATION})
    with pytest.raises(UnsupportedModelError) as e:
        api.compile_model(path, None, tmp_path / "out")
    assert [(n, op) for n, op, _ in e.value.problems] == [
        ("op12_l2_pool_2d", "L2_POOL_2D"), ("op15_l2_normalization", "L2_NORMALIZATION")]
    assert "op12_l2_pool_2d" in str(e.value) and "op15_l2_normalization" in str(e.value)


def test_not_a_tflite_file_is_a_clear_error(tmp_path):
    _need("tflite")
    path = tmp_path / "junk.tflite"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(MicroqError, match="not a TFLite flatbuffer"):
        api.compile_model(path, None, tmp_path / "out")


# --- the same rounding switch on the ONNX path (api.compile_model) ---------------------------
def test_onnx_single_rounding_c_equals_reference(tmp_path):
    assets = Path(microq.__file__).parent / "assets"
    out = tmp_path / "digits_single"
    api.compile_model(assets / "digits_cnn.onnx", assets / "digits_calib.npz", out,
                      name="digits", rounding="single")
    m, qg = api.load(out), api.load_qgraph(out)
    assert m.meta["rounding"] == "single"
    name, y = qg.inputs[0], qg.outputs[0]
    x = np.random.default_rng(0).integers(-128, 128, size=(16, *qg.tensors[name].shape[1:]),
                                          dtype=np.int8)
    got = m.run_int8({name: x})[y]
    want = np.concatenate([run_int(qg, {name: x[i : i + 1]}, "single")[y] for i in range(16)])
    n_bad, where = count_mismatches(got, want)
    assert n_bad == 0, f"digits (single): {n_bad} of 16 samples differ, {where}"


# --- ops the MLPerf models lack: an operator code swapped in a real model ----------------------
ADD, MAX_POOL_2D, MUL, SUB = 0, 17, 18, 41


@pytest.mark.parametrize(
    "ops",
    [
        pytest.param({12: MAX_POOL_2D}, id="avg_pool_as_max_pool"),
        pytest.param({3: SUB}, id="add_as_sub"),
        pytest.param({3: MUL}, id="add_as_mul"),
    ],
)
def test_swapped_op_equals_tflite_micro(tmp_path, ops):
    """ic01 with one operator code replaced (every op sharing it changes; options of the old
    type are ignored by TFLite Micro and by us alike): C == TFLite Micro on 20 random inputs."""
    path = patched_model("ic01", tmp_path, ops=ops)
    api.compile_model(path, None, tmp_path / "out", name="swapped")
    m = api.load(tmp_path / "out")
    x = np.random.default_rng(1).integers(-128, 128, size=(20, 32, 32, 3), dtype=np.int8)
    got = m.run_int8({m.inputs[0]["name"]: x})[m.outputs[0]["name"]]
    want, _ = tflm_outputs(path, x)
    n_bad, where = count_mismatches(got, want)
    assert n_bad == 0, f"{n_bad} of {len(x)} samples differ from TFLite Micro, {where}"
