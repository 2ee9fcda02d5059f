"""16x8 mode (int16 activations, int8 weights; issue 13 item 2): the numpy reference and the C
kernels equal TFLite Micro's int16 reference kernels bit for bit.

Golden: TFLite Micro (pip tflite-micro) on the 16x8 .tflite fixtures of tests/models/tflite16
(tools/export_tflite_16x8.py: FC, conv, depthwise, add, mul, softmax, logistic + tanh, a small
CNN), each run on its 32 stored int16 inputs (some saturate on purpose).
"""

from __future__ import annotations

import re

import importlib
from pathlib import Path

import numpy as np
import pytest

from conftest import IN_CI
from microq.ref.int_exec import run_int

FIXTURES = Path(__file__).parent / "models" / "tflite16"
NAMES = ["fc16", "conv16", "dwconv16", "add16", "mul16", "softmax16", "act16", "cnn16",
         "pool16"]


def _need(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        msg = f"python package for {module} is not installed (pip install '.[test]')"
        if IN_CI:
            pytest.fail(msg + "; under CI=true this is a failure")
        pytest.skip(msg)


def fixture_inputs(name: str) -> np.ndarray:
    with np.load(FIXTURES / f"{name}.npz") as z:
        return z["x"]


def tflm_outputs(name: str, x: np.ndarray) -> np.ndarray:
    runtime = _need("tflite_micro.python.tflite_micro.runtime")
    it = runtime.Interpreter.from_file(str(FIXTURES / f"{name}.tflite"))
    ys = []
    for i in range(len(x)):
        it.set_input(x[i : i + 1], 0)
        it.invoke()
        ys.append(np.array(it.get_output(0)))
    return np.concatenate(ys)


def imported(name: str):
    _need("tflite")
    from microq.tflite_import import import_tflite

    return import_tflite(FIXTURES / f"{name}.tflite")


@pytest.mark.parametrize("name", NAMES)
def test_reference_equals_tflite_micro_16x8(name):
    g = imported(name)
    assert any(n.kernel.endswith("_s16") for n in g.nodes)
    assert all(g.tensors[t].dtype == "int16" for t in g.inputs + g.outputs)
    x = fixture_inputs(name)
    want = tflm_outputs(name, x)
    got = np.concatenate([run_int(g, {g.inputs[0]: x[i : i + 1]})[g.outputs[0]]
                          for i in range(len(x))])
    assert got.dtype == np.int16
    assert np.array_equal(got, want.reshape(got.shape)), \
        f"{name}: {int((got != want.reshape(got.shape)).sum())} of {got.size} values differ"
    # the inputs exercise the range: not all outputs are one value
    assert len(np.unique(got)) > 4


@pytest.fixture(scope="module")
def compiled16(tmp_path_factory):
    """name -> HostModel of the compiled 16x8 .tflite (compiled once per module)."""
    _need("tflite")
    from microq import api

    cache = {}

    def get(name):
        if name not in cache:
            out = tmp_path_factory.mktemp(name) / name
            api.compile_model(FIXTURES / f"{name}.tflite", None, out, name=name)
            cache[name] = api.load(out)
        return cache[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_c_equals_tflite_micro_16x8(compiled16, name):
    m = compiled16(name)
    assert [s["dtype"] for s in m.inputs + m.outputs] == ["int16", "int16"]
    x = fixture_inputs(name)
    got = m.run_int8({m.inputs[0]["name"]: x})[m.outputs[0]["name"]]
    want = tflm_outputs(name, x).reshape(got.shape)
    assert got.dtype == np.int16
    assert np.array_equal(got, want), f"{name}: {int((got != want).sum())} values differ"


def test_arena_sizes_int16_tensors_in_bytes(compiled16):
    # fc16: input [1, 16] int16 is the user's buffer; the hidden [1, 24] int16 activation is
    # the only arena tensor: 48 bytes, not 24
    m = compiled16("fc16")
    assert m.meta["arena_size"] == 48
    src = (m.folder / "fc16.c").read_text()
    hidden = re.search(r"int8_t \*const (t_\w+) = arena \+ B0_OFFSET;", src)
    assert "mq_fully_connected_s16" in src and f"(int16_t *)(void *){hidden[1]}" in src


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m0plus"])
def test_16x8_emulated_mcu_equals_host(compiled16, target):
    """The 16x8 C on an emulated Cortex-M (QEMU; M0+ has no 64-bit multiply and faults on
    unaligned int16) gives the host's (== TFLite Micro's) int16 outputs."""
    import shutil

    from microq.runtime import mcu

    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        if IN_CI:
            pytest.fail(f"{missing} not installed; under CI=true this is a failure")
        pytest.skip(f"{missing} not installed")
    m = compiled16("cnn16")
    x = fixture_inputs("cnn16")[:4]
    want = m.run_int8({m.inputs[0]["name"]: x})[m.outputs[0]["name"]]
    got = mcu.run_int8(m.folder, target, {m.inputs[0]["name"]: x}, timeout=120)
    got = got[m.outputs[0]["name"]]
    assert got.dtype == np.int16 and np.array_equal(got, want)


def _sqnr(ref, got) -> float:
    ref, got = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    return float(10 * np.log10((ref ** 2).sum() / ((ref - got) ** 2).sum()))


@pytest.mark.parametrize("name", NAMES)
def test_16x8_is_more_accurate_than_int8(compiled16, name):
    """On in-distribution inputs the 16x8 C (== TFLite Micro) is closer to the float Keras
    model than TFLite Micro on the same model converted to int8 (tests/models/tflite16/int8;
    measured +10.7 to +15.3 dB, tools/measure_16x8.py)."""
    runtime = _need("tflite_micro.python.tflite_micro.runtime")
    with np.load(FIXTURES / f"{name}.npz") as z:
        x16, y_float = z["x_in"], z["y_float_in"]
    m = compiled16(name)
    spec_in, spec_out = m.inputs[0], m.outputs[0]
    y16 = m.run_int8({spec_in["name"]: x16})[spec_out["name"]]
    f16 = y16.astype(np.float64) * spec_out["scale"]
    it = runtime.Interpreter.from_file(str(FIXTURES / "int8" / f"{name}.tflite"))
    qi = it.get_input_details(0)["quantization_parameters"]
    qo = it.get_output_details(0)["quantization_parameters"]
    xf = x16.astype(np.float32) * np.float32(spec_in["scale"])
    x8 = np.clip(np.round(xf / qi["scales"][0]) + qi["zero_points"][0], -128, 127).astype(np.int8)
    ys = []
    for i in range(len(x8)):
        it.set_input(x8[i : i + 1], 0)
        it.invoke()
        ys.append(np.array(it.get_output(0)))
    f8 = (np.concatenate(ys).astype(np.float64) - qo["zero_points"][0]) * qo["scales"][0]
    s8, s16 = _sqnr(y_float, f8), _sqnr(y_float, f16.reshape(f8.shape))
    assert s16 > s8 + 8.0, f"{name}: int8 {s8:.1f} dB, 16x8 {s16:.1f} dB"


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_16x8_generated_folder_compiles_strict(compiled16, cc, tmp_path):
    from test_c_strict import compile_all, compiler

    folder = compiled16("act16").folder  # FC, logistic, tanh, reshape, add: int16 I/O
    files = sorted(folder.glob("*.c"))
    assert any(f.name == "mq_s16.c" for f in files)
    compile_all(compiler(cc), files, folder, tmp_path)


@pytest.mark.parametrize("name", NAMES)
def test_16x8_arena_not_larger_than_tflite_micro(compiled16, name):
    from test_tflite import tflm_arena

    runtime = _need("tflite_micro.python.tflite_micro.runtime")
    it = runtime.Interpreter.from_file(str(FIXTURES / f"{name}.tflite"))
    it.set_input(fixture_inputs(name)[:1], 0)
    it.invoke()
    theirs = tflm_arena(it)
    ours = compiled16(name).meta["arena_size"]
    assert "head" in theirs, theirs
    print(f"{name}: ours {ours} B, TFLite Micro head {theirs['head']} B")
    assert ours <= theirs["head"]


def test_inspect_names_a_16x8_model():
    _need("tflite")
    from microq.tflite_import.inspect import inspect_tflite

    rep = inspect_tflite(str(FIXTURES / "act16.tflite"))
    assert rep.layout_note.startswith("16x8 (int16 activations) TFLite model")
    assert [r.op for r in rep.rows][:2] == ["fully_connected_s16", "logistic_s16"]
