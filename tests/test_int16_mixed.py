"""`compile --int16 LAYER,...|auto` (issue 13 item 2): chosen layers of an ONNX model run the 16x8
kernels (int16 activations, int8 weights) with int8 <-> int16 requantize at the boundaries.

Fixture: tests/models/int16/outlier_ln.onnx (tools/export_int16_fixtures.py): Linear -> LayerNorm
-> Linear whose LayerNorm input has 4 channels 20x the others (the outlier-feature case int8
cannot carry). Measured on its 200 test samples (seed 2), output SQNR vs onnxruntime: int8
26.6 dB, --int16 auto 31.7 dB, every layer 16x8 34.6 dB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from microq import api
from microq.errors import MicroqError
from microq.ref.int_exec import run_int

FIX = Path(__file__).parent / "models" / "int16"
MODEL = FIX / "outlier_ln.onnx"
LAYERS = ["/fc1/Gemm", "/ln/LayerNormalization", "/fc2/Gemm"]


@pytest.fixture(scope="module")
def data():
    with np.load(FIX / "outlier_ln.npz") as z:
        return {"calib": {"input": z["calib"]}, "test": {"input": z["test"]}}


@pytest.fixture(scope="module")
def reference(data):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(MODEL))
    return sess.run(None, data["test"])[0]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, data):
    cache = {}

    def get(mode):
        key = mode if isinstance(mode, str) or mode is None else ",".join(mode)
        if key not in cache:
            out = tmp_path_factory.mktemp("mixed") / "net"
            cache[key] = api.compile_model(MODEL, data["calib"], out, name="net", int16=mode)
        return cache[key]

    return get


def sqnr(ref, got) -> float:
    return float(10 * np.log10((ref ** 2).sum() / ((ref - got) ** 2).sum()))


@pytest.mark.parametrize("mode", ["auto", LAYERS, ["/ln/LayerNormalization"]],
                         ids=["auto", "all", "ln_only"])
def test_mixed_c_equals_integer_reference(compiled, data, mode):
    r = compiled(mode)
    kinds = {t.dtype for t in r.qgraph.tensors.values()}
    assert kinds == {"int8", "int16"}
    m = api.load(r.out_dir)
    x = m.quantize_input("input", data["test"]["input"][:40])
    got = m.run_int8({"input": x})["output"]
    qg = r.qgraph
    want = np.concatenate([run_int(qg, {"input": x[i : i + 1]})["output"] for i in range(len(x))])
    assert np.array_equal(got.reshape(want.shape), want)


def test_int16_auto_gains_on_outlier_layernorm(compiled, data, reference):
    base = sqnr(reference, api.run(compiled(None).out_dir, data["test"])["output"])
    auto_r = compiled("auto")
    auto = sqnr(reference, api.run(auto_r.out_dir, data["test"])["output"])
    full = sqnr(reference, api.run(compiled(LAYERS).out_dir, data["test"])["output"])
    # measured 26.6 / 31.7 / 34.6 dB
    assert base < 29.0
    assert auto > base + 4.0
    assert full > base + 7.0
    info = auto_r.int16
    assert info["layers"] == ["/fc1/Gemm", "/ln/LayerNormalization"]  # the low one + its reader
    assert list(info["low_sqnr_db"]) == ["/fc1/Gemm"] and info["low_sqnr_db"]["/fc1/Gemm"] < 35
    # RAM cost: the int16 tensors take twice the bytes (fc1's [1, 64] output: 128 -> 256 B)
    assert info["arena_int8"] == 128 and info["arena_mixed"] == 256
    assert info["macs_16x8"] == 32 * 64
    assert info["requantize_nodes"] == 2  # graph input -> int16, LayerNorm output -> int8


def test_int16_graph_io_stays_int8(compiled):
    r = compiled(LAYERS)
    assert [s["dtype"] for s in r.meta["inputs"] + r.meta["outputs"]] == ["int8", "int8"]
    kernels = [n.kernel for n in r.qgraph.nodes]
    assert kernels == ["requantize_s16", "fully_connected_s16", "layernorm_s16",
                       "fully_connected_s16", "requantize_s16"]


def test_int16_unknown_layer_is_a_clear_error(tmp_path, data):
    with pytest.raises(MicroqError, match=r"--int16: no layer named '/nope'; the layers are: "
                       r"/fc1/Gemm, /fc2/Gemm, /ln/LayerNormalization"):
        api.compile_model(MODEL, data["calib"], tmp_path / "out", int16=["/nope"])
    assert not (tmp_path / "out").exists()


def test_int16_layer_without_16x8_kernel_is_a_clear_error_pools_have_one(tmp_path):
    model = Path(__file__).parent / "models" / "pool_net.torchscript.onnx"
    from microq.onnx_import import import_onnx

    g = import_onnx(str(model))
    pool = next(n.name for n in g.nodes if n.op == "Concat")
    with np.load(Path(__file__).parent / "models" / "pool_net.npz") as z:
        calib = {k: z[k] for k in z.files if k != "label"}
    with pytest.raises(MicroqError, match=r"has no 16x8 kernel; --int16 takes Conv"):
        api.compile_model(model, calib, tmp_path / "out", int16=[pool])
    # pools do have one: pool_net with every 16x8-capable layer compiles, C == reference
    layers = [n.name for n in g.nodes if n.op != "Concat" and n.op != "Reshape"]
    r = api.compile_model(model, calib, tmp_path / "ok", name="net", int16=layers)
    kinds = {n.kernel for n in r.qgraph.nodes}
    assert {"max_pool_s16", "avg_pool_s16", "conv2d_s16", "fully_connected_s16"} <= kinds
    m = api.load(r.out_dir)
    qx = {k: m.quantize_input(k, v[:4]) for k, v in calib.items()}
    got = next(iter(m.run_int8(qx).values()))
    want = np.concatenate([next(iter(run_int(r.qgraph, {k: v[i : i + 1] for k, v in
                                                        qx.items()}).values())) for i in range(4)])
    assert np.array_equal(got.reshape(want.shape), want)
    assert not (tmp_path / "out").exists()


def test_cli_int16_auto_reports_layers_and_cost(tmp_path, data):
    from click.testing import CliRunner

    from microq.cli import main

    np.savez(tmp_path / "calib.npz", **data["calib"])
    res = CliRunner().invoke(main, ["compile", str(MODEL), "--calib", str(tmp_path / "calib.npz"),
                                    "-o", str(tmp_path / "out"), "--int16", "auto", "--no-size"])
    assert res.exit_code == 0, res.output
    assert "16x8 layers: /fc1/Gemm, /ln/LayerNormalization (int8 isolated SQNR: /fc1/Gemm " \
           in res.output
    assert "arena 128 -> 256 B, 2048 MACs in 16x8 kernels" in res.output


def test_compare_says_which_layers_gain_from_int16(compiled, data, tmp_path):
    np.savez(tmp_path / "test.npz", input=data["test"]["input"][:64])
    rep = api.compare(MODEL, compiled(None).out_dir, tmp_path / "test.npz")
    gains = rep.int16_gains
    assert gains and gains[0]["layer"] == "/fc1/Gemm"
    assert gains[0]["layers"] == ["/fc1/Gemm", "/ln/LayerNormalization"]
    assert gains[0]["gain_db"] > 3.0  # measured +4.4 dB (28.3 -> 32.7) on 200 samples
    assert gains[-1]["gain_db"] < gains[0]["gain_db"]
    text = rep.table()
    assert "16x8 (compile --int16)" in text
    assert "try: --int16 /fc1/Gemm,/ln/LayerNormalization" in text
    assert rep.to_json()["int16_gains"][0]["layer"] == "/fc1/Gemm"


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_mixed_generated_folder_compiles_strict(compiled, cc, tmp_path):
    from test_c_strict import compile_all, compiler

    folder = compiled(LAYERS).out_dir
    compile_all(compiler(cc), sorted(folder.glob("*.c")), folder, tmp_path)


@pytest.mark.parametrize("base, exporter, min_db", [
    ("residual_net", "torchscript", 50.0),  # measured 55.6 dB (int8: 39.0)
    ("act_net", "dynamo", 44.0),  # convs + 9 activations (LUTs, sigmoid, tanh): 45.8 dB (int8 41.8)
])
def test_every_16x8_layer_of_a_conv_net(tmp_path, base, exporter, min_db):
    """Every layer with a 16x8 kernel chosen, on the convolutional test nets (both exporters
    have the same ops): the C equals the integer reference and beats int8 against float."""
    import onnxruntime as ort

    from microq.onnx_import import import_onnx
    from microq.quant.rules_s16 import supports_16

    models = Path(__file__).parent / "models"
    model = models / f"{base}.{exporter}.onnx"
    with np.load(models / f"{base}.npz") as z:
        keys = [k for k in z.files if k != "label"]
        calib = {k: z[k] for k in keys}  # 16 samples: calibrated and measured on the same
        test = calib
    layers = [n.name for n in import_onnx(str(model)).nodes if supports_16(n)]
    r = api.compile_model(model, calib, tmp_path / "out", name="net", int16=layers)
    assert sum(n.kernel.endswith("_s16") for n in r.qgraph.nodes) > len(layers)  # + requantize
    m = api.load(r.out_dir)
    qx = {k: m.quantize_input(k, v) for k, v in test.items()}
    got = m.run_int8(qx)
    for out, y in got.items():
        want = np.concatenate([run_int(r.qgraph, {k: v[i : i + 1] for k, v in qx.items()})[out]
                               for i in range(16)])
        assert np.array_equal(y.reshape(want.shape), want)
    ref = ort.InferenceSession(str(model)).run(None, test)[0]
    y = next(iter(api.run(r.out_dir, test).values()))
    assert sqnr(ref, y.reshape(ref.shape)) > min_db


def test_compare_on_a_mixed_folder(compiled, data, tmp_path):
    np.savez(tmp_path / "test.npz", input=data["test"]["input"][:32])
    rep = api.compare(MODEL, compiled("auto").out_dir, tmp_path / "test.npz")
    assert rep.int16_layers == ["/fc1/Gemm", "/ln/LayerNormalization"]
    assert rep.int16_gains == []  # not re-tried on a folder that already has 16x8 layers
    row = next(r for r in rep.layers if r.name == "/fc1/Gemm")
    assert row.kernel == "fully_connected_s16"
    assert row.range[1] == pytest.approx(32767 * row.scale)  # an int16 output's range
    assert "16x8 layers of this folder (compile --int16): /fc1/Gemm" in rep.table()


def test_int16_with_bias_correction_is_a_clear_error(tmp_path, data):
    with pytest.raises(MicroqError, match="--bias-correction cannot be combined with --int16"):
        api.compile_model(MODEL, data["calib"], tmp_path / "out", int16="auto",
                          bias_correction=True)
    assert not (tmp_path / "out").exists()


def test_int16_on_a_tflite_model_is_a_clear_error(tmp_path):
    model = Path(__file__).parent / "models" / "tflite16" / "fc16.tflite"
    with pytest.raises(MicroqError, match="--int16 applies to float ONNX models"):
        api.compile_model(model, None, tmp_path / "out", int16="auto")
    assert not (tmp_path / "out").exists()


def test_int16_auto_on_the_dynamo_export(tmp_path, data):
    """The dynamo exporter's form of the same model (its own node names): auto picks the first
    Gemm and the LayerNorm reading it; measured 26.6 -> 31.7 dB, as the TorchScript form."""
    import onnxruntime as ort

    model = FIX / "outlier_ln.dynamo.onnx"
    r = api.compile_model(model, data["calib"], tmp_path / "out", name="net", int16="auto")
    kernels = [n.kernel for n in r.qgraph.nodes]
    assert kernels == ["requantize_s16", "fully_connected_s16", "layernorm_s16",
                       "requantize_s16", "fully_connected"]
    assert len(r.int16["layers"]) == 2
    ref = ort.InferenceSession(str(model)).run(None, data["test"])[0]
    assert sqnr(ref, api.run(r.out_dir, data["test"])["output"]) > 30.5


@pytest.mark.slow
def test_cli_int16_reports_the_m4_instruction_cost(tmp_path, data):
    """With the Arm toolchain, compile --int16 also measures one inference on the emulated M4
    against the all-int8 model (outlier_ln auto: 16,732 -> 29,748 instructions, +78%)."""
    import shutil

    from click.testing import CliRunner

    from conftest import IN_CI
    from microq.cli import main

    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        if IN_CI:
            pytest.fail("arm-none-eabi-gcc / qemu-system-arm missing under CI=true")
        pytest.skip("arm-none-eabi-gcc / qemu-system-arm not installed")
    np.savez(tmp_path / "calib.npz", **data["calib"])
    res = CliRunner().invoke(main, ["compile", str(MODEL), "--calib", str(tmp_path / "calib.npz"),
                                    "-o", str(tmp_path / "out"), "--int16", "auto"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("16x8 layers:"))
    import re

    m = re.search(r"cortex-m4 instructions ([\d,]+) \(all int8\) -> ([\d,]+)", line)
    assert m, line
    int8, mixed = (int(g.replace(",", "")) for g in m.groups())
    assert int8 < mixed < 3 * int8  # the 16x8 kernels cost more per MAC, within reason
