"""Trained attention classifiers (issue 8's "within 1 pp top-1 of float on a labelled set"):
nn.MultiheadAttention(batch_first=True) and nn.TransformerEncoderLayer(batch_first=True), each
trained on a synthetic task that needs attention across positions and exported with both torch
exporters (tests/models/attention/trained/, tools/train_attention_fixtures.py). Calibration: the
64 "calib" samples of each .npz; measurement: its 400 held-out labelled samples."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import IN_CI

from microq import api
from microq.ref.int_exec import run_int
from microq.compare import run_onnxruntime

HERE = Path(__file__).resolve().parent / "models" / "attention" / "trained"
FILES = sorted(p.name for p in HERE.glob("*.onnx"))
# Measured (both exporters alike), float / int8 top-1 on the 400 held-out samples and int8 vs
# onnxruntime SQNR: mha_cls 87.00 % / 86.75 %, 39.1 dB; encoder_cls 85.25 % / 85.25 %, 37.4 dB.
# The label (kind of the earlier marker, kind of the later) cannot be told apart for AB vs BA
# without comparing positions, so a model blind to order tops out at 75 %.
ORDER_BLIND_TOP1 = 0.75
TOP1_PP = 1.0
GOAL_DB = 30.0
N_EXACT = 16
GRID = 16  # the .npz stores int8 codes of the tokens: token = code / GRID


def load(name: str) -> dict[str, np.ndarray]:
    d = np.load(HERE / f"{name}.npz")
    assert d["input"].dtype == d["calib"].dtype == np.int8
    return {"calib": d["calib"].astype(np.float32) / GRID,
            "input": d["input"].astype(np.float32) / GRID, "label": d["label"]}


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    err = float(np.sum((ref - np.asarray(got, np.float64).reshape(ref.shape)) ** 2))
    return math.inf if err == 0 else 10 * math.log10(float(np.sum(ref**2)) / err)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    cache = {}

    def get(fname: str):
        if fname not in cache:
            d = load(fname.split(".")[0])
            out = tmp_path_factory.mktemp(fname.replace(".", "_")) / "net"
            api.compile_model(HERE / fname, {"input": d["calib"]}, out, name="net")
            m = api.load(out)
            q = m.quantize_input("input", d["input"])
            cache[fname] = (out, m, q, m.run_int8({"input": q})["output"], d)
        return cache[fname]

    return get


def test_both_trained_models_have_both_exporters():
    names = sorted({f.split(".")[0] for f in FILES})
    assert names == ["encoder_cls", "mha_cls"], names
    for name in names:
        assert {f"{name}.torchscript.onnx", f"{name}.dynamo.onnx"} <= set(FILES)
        d = load(name)
        assert d["input"].shape[0] == d["label"].shape[0] == 400


@pytest.mark.parametrize("fname", FILES)
def test_trained_attention_int8_top1_within_1pp_of_float(compiled, fname):
    _, m, _, got, d = compiled(fname)
    ref = run_onnxruntime(HERE / fname, {"input": d["input"]})["output"]
    y = m.dequantize_output("output", got).reshape(ref.shape)
    label = d["label"]
    float_top1 = float(np.mean(ref.argmax(-1) == label))
    int8_top1 = float(np.mean(y.argmax(-1) == label))
    db = sqnr_db(ref, y)
    print(f"{fname}: float top-1 {100 * float_top1:.2f} %, int8 top-1 {100 * int8_top1:.2f} %, "
          f"int8 vs onnxruntime {db:.1f} dB")
    assert float_top1 > ORDER_BLIND_TOP1 + 0.05, \
        f"{fname}: float top-1 {float_top1:.3f}: the fixture does not use attention across tokens"
    assert abs(int8_top1 - float_top1) * 100 <= TOP1_PP, \
        f"{fname}: int8 top-1 {100 * int8_top1:.2f} % vs float {100 * float_top1:.2f} %"
    assert db >= GOAL_DB, f"{fname}: int8 vs onnxruntime {db:.1f} dB < {GOAL_DB} dB"


@pytest.mark.parametrize("fname", FILES)
def test_trained_attention_c_equals_reference(compiled, fname):
    out, m, q, got, _ = compiled(fname)
    qg = api.load_qgraph(out)
    assert "batch_matmul" in [n.kernel for n in qg.nodes], "attention lost its Q.K^T matmul"
    rounding = m.meta.get("rounding", "double")
    for i in range(N_EXACT):
        ref = run_int(qg, {"input": q[i : i + 1]}, rounding)["output"]
        c = got[i : i + 1].reshape(ref.shape)
        if not np.array_equal(c, ref):
            bad = tuple(int(j) for j in np.argwhere(c != ref)[0])
            pytest.fail(f"{fname} sample {i}: C != integer reference first at {bad}")


@pytest.mark.parametrize("fname", [f for f in FILES if ".dynamo." in f])
def test_trained_attention_cortex_m4_equals_host(compiled, fname):
    from microq.runtime import mcu

    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        msg = f"{', '.join(missing)} not installed: apt-get install -y {mcu.ARM_PACKAGES}"
        if IN_CI:
            pytest.fail(msg + " (under CI=true this is a failure)")
        pytest.skip(msg)
    out, _, q, got, _ = compiled(fname)
    want = got[:4]
    arm = mcu.run_int8(out, "cortex-m4", {"input": q[:4]})["output"]
    if not np.array_equal(arm.reshape(want.shape), want):
        bad = tuple(int(j) for j in np.argwhere(arm.reshape(want.shape) != want)[0])
        pytest.fail(f"{fname}: Cortex-M4 != host first at {bad}")
