"""Accuracy (int8 vs float, stated thresholds): microq's calibration methods side by side with
onnxruntime's quantize_static on the labelled sets; the per-layer error report of `compare`."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from microq import api
from microq.errors import MicroqError
from microq.quant.bias_correction import bias_scale
from microq.quant.calibrate import METHODS
from microq.ref.float_exec import to_physical
from microq.compare import layer_errors
from microq.report import WORST, CompareReport, plot

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import bench_accuracy  # noqa: E402

ASSETS = REPO / "python" / "microq" / "assets"
DEMO = ASSETS / "digits_cnn.onnx"


@pytest.mark.parametrize("key", ["demo", "sww01"])
def test_best_method_at_least_onnxruntime(key):
    row = bench_accuracy.evaluate(key, METHODS, ort_methods=("minmax",), bias_correction=False)
    best = bench_accuracy.best_ours(row, "accuracy")
    print(key, row)
    assert row["float"] > 0.85, f"{key}: float accuracy {row['float']:.4f}, broken model/data"
    assert best >= row["ort minmax"], f"{key}: ours {row} below onnxruntime quantize_static"
    if key == "demo":
        assert best >= row["float"] - 0.005, f"demo: best {best:.4f} vs float {row['float']:.4f}"


# --- compare: per-layer errors ---------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_q():
    calib = np.load(ASSETS / "digits_calib.npz")["input"]
    graph, qg = api.quantize_model(DEMO, {"input": calib})
    x = np.load(ASSETS / "digits_test.npz")["input"][:40]
    return graph, qg, {"input": to_physical(graph, "input", x)}


def _shift_bias(qg, layer: str, steps: float):
    """A copy of qg whose `layer` output is shifted by about `steps` output steps."""
    nodes = []
    for n in qg.nodes:
        if n.name == layer:
            p = n.params
            delta = np.round(steps * qg.tensors[n.outputs[0]].q.scale / bias_scale(
                p, qg.tensors[n.outputs[0]].q.scale)).astype(np.int64)
            n = dataclasses.replace(n, params=dataclasses.replace(
                p, bias=(p.bias.astype(np.int64) + delta).astype(np.int32)))
        nodes.append(n)
    return dataclasses.replace(qg, nodes=nodes)


def test_isolated_error_stays_with_its_layer(demo_q):
    graph, qg, feeds = demo_q
    clean = {r.name: r for r in layer_errors(graph, qg, feeds)}
    bad = layer_errors(graph, _shift_bias(qg, "/dw/Conv", 2.0), feeds)
    names = [r.name for r in bad]
    k = names.index("/dw/Conv")
    assert 0 < k < len(bad) - 2
    for i, r in enumerate(bad):
        c = clean[r.name]
        if i < k:  # before the broken layer nothing changes
            assert r.isolated.sqnr_db == c.isolated.sqnr_db, r.name
        elif i == k:
            assert r.isolated.sqnr_db < c.isolated.sqnr_db - 10, (r.name, r.isolated.sqnr_db)
            assert r.cumulative.sqnr_db < c.cumulative.sqnr_db - 10
        else:  # later layers: their own error is unchanged, the cumulative one carries it
            same = r.isolated.err2 == c.isolated.err2 == 0  # exact layers: inf dB both
            assert same or abs(r.isolated.sqnr_db - c.isolated.sqnr_db) < 3, (
                r.name, r.isolated.sqnr_db, c.isolated.sqnr_db)
            assert r.cumulative.sqnr_db < c.cumulative.sqnr_db - 2, r.name
    worst = min(bad, key=lambda r: r.isolated.sqnr_db)
    assert worst.name == "/dw/Conv" and worst.worst


def test_exact_layers_have_no_isolated_error(demo_q):
    graph, qg, feeds = demo_q
    rows = {r.kernel: r for r in layer_errors(graph, qg, feeds)}
    pool = rows["max_pool"]  # max pooling of int8 values is exact
    assert pool.isolated.err2 == 0 and pool.isolated.max_abs == 0
    assert pool.cumulative.err2 > 0


def test_report_json_table_and_worst(demo_q):
    graph, qg, feeds = demo_q
    rep = CompareReport(samples=40, layers=layer_errors(graph, qg, feeds), layer_samples=40)
    j = rep.to_json()["layers"]
    assert sum(r["worst"] for r in j) == WORST
    for r in j:
        for key in ("sqnr_db", "cosine", "max_abs_error", "isolated_sqnr_db", "isolated_cosine",
                    "isolated_max_abs_error", "scale", "zero_point", "range"):
            assert key in r, key
        lo, hi = r["range"]
        assert lo <= 0 <= hi and hi - lo == pytest.approx(255 * r["scale"])
    text = rep.table()
    assert text.count("<- lowest") == WORST and "cum. SQNR dB" in text


def test_plot_without_matplotlib(demo_q, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rep = CompareReport(samples=0)
    with pytest.raises(MicroqError, match="pip install matplotlib"):
        plot(rep, tmp_path / "x.png")


def test_plot_png(demo_q, tmp_path):
    pytest.importorskip("matplotlib")
    graph, qg, feeds = demo_q
    rep = CompareReport(samples=40, layers=layer_errors(graph, qg, feeds), layer_samples=40)
    plot(rep, tmp_path / "sqnr.png")
    assert (tmp_path / "sqnr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
