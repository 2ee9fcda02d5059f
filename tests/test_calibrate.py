"""Calibration methods on synthetic distributions with known answers, against onnxruntime's own
histogram collector, streaming vs all at once; bias correction on the demo model."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from microq import api, ir
from microq.quant.bias_correction import channel_errors, correct_biases
from microq.quant.calibrate import METHODS, calibrate, passes
from microq.ref.float_exec import to_physical
from microq.ref.int_exec import run_int
from microq.compare import quantize_input

ASSETS = Path(__file__).resolve().parents[1] / "python" / "microq" / "assets"
DEMO = ASSETS / "digits_cnn.onnx"
WIDTH = 1000  # values per sample


def relu_graph() -> ir.Graph:
    """x [1, WIDTH] -> ReLU -> y: calibrates x (the synthetic distribution) and its ReLU."""
    t = {n: ir.Tensor(n, (1, WIDTH)) for n in ("x", "y")}
    node = ir.Node("relu", "Activation", ["x"], ["y"], ir.ActAttrs("relu"))
    return ir.Graph("relu", t, [node], ["x"], ["y"])


def samples(kind: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    if kind == "uniform":
        return rng.uniform(-1.0, 3.0, (200, WIDTH)).astype(np.float32)
    if kind == "gauss_outliers":  # 2e6 N(0,1) values and 4 outliers: 2e-6 of the mass
        x = rng.standard_normal((2000, WIDTH)).astype(np.float32)
        x.flat[[10, 5000, 70000, 1500000]] = [60.0, -60.0, 55.0, -58.0]
        return x
    raise KeyError(kind)


def ranges(kind: str, method: str, **kw):
    return calibrate(relu_graph(), {"x": samples(kind)}, method=method, **kw)


def ort_range(method: str, x: np.ndarray, num_bins: int) -> tuple[float, float]:
    """onnxruntime's HistogramCollector (its percentile / entropy code) on all values at once."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    c = HistogramCollector(method=method, symmetric=method == "percentile", num_bins=num_bins,
                           num_quantized_bins=128, percentile=99.999, scenario="same")
    with contextlib.redirect_stdout(io.StringIO()):
        c.collect({"t": [x]})
        r = c.compute_collection_result()["t"]
    return float(r[0]), float(r[1])


@pytest.mark.parametrize("kind", ["uniform", "gauss_outliers"])
@pytest.mark.parametrize("method, num_bins", [("percentile", 2048), ("entropy", 128),
                                              ("entropy", 512)])
def test_same_as_onnxruntime(kind, method, num_bins):
    x = samples(kind)
    if method == "entropy" and kind == "gauss_outliers":
        x = x[:300]  # ORT's entropy search is a slow python loop
    got = calibrate(relu_graph(), {"x": x}, method=method, num_bins=num_bins)["x"]
    want = ort_range(method, x, num_bins)
    assert (got.lo, got.hi) == want, f"{method} {num_bins} bins: ours {got}, onnxruntime {want}"


@pytest.mark.parametrize("method", METHODS)
def test_uniform_range(method):
    r = ranges("uniform", method)["x"]
    assert r.lo == pytest.approx(-1.0, abs=0.01) and r.hi == pytest.approx(3.0, abs=0.03), r


def test_outliers_minmax_keeps_them():
    r = ranges("gauss_outliers", "minmax")["x"]
    assert (r.lo, r.hi) == (-60.0, 60.0)


def test_outliers_percentile_clips_at_the_quantile():
    # P(|x| > 4.4172) = 1e-5 for N(0, 1): the 99.999th percentile of |x|
    r = ranges("gauss_outliers", "percentile")["x"]
    assert r.hi == pytest.approx(4.4172, abs=0.15) and r.lo == -r.hi, r


def test_outliers_entropy_clips():
    r = ranges("gauss_outliers", "entropy")["x"]
    assert 3.0 < r.hi < 12.0 and -12.0 < r.lo < -3.0, r


def test_outliers_mse_finds_the_least_error_range():
    # the model the search minimizes, where the Gaussian's own tail is negligible:
    # N * scale^2 / 12 + sum over the outliers beyond the bound of (|o| - bound)^2
    n = 2000 * WIDTH
    a = np.linspace(4.0, 40.0, 1441)
    lo_b, hi_b = np.meshgrid(a, a, indexing="ij")
    err = (n * ((lo_b + hi_b) / 255.0) ** 2 / 12.0
           + np.maximum(60.0 - hi_b, 0) ** 2 + np.maximum(55.0 - hi_b, 0) ** 2
           + np.maximum(60.0 - lo_b, 0) ** 2 + np.maximum(58.0 - lo_b, 0) ** 2)
    i, j = np.unravel_index(np.argmin(err), err.shape)
    r = ranges("gauss_outliers", "mse")["x"]
    assert r.lo == pytest.approx(-a[i], abs=1.0) and r.hi == pytest.approx(a[j], abs=1.0), (
        r, -a[i], a[j])
    assert r.hi < 30.0  # the outliers are clipped


@pytest.mark.parametrize("method", METHODS)
def test_relu_output_keeps_zero(method):
    r = ranges("gauss_outliers", method)["y"]
    assert r.lo == 0.0, r
    assert (r.hi == 60.0) if method == "minmax" else (0.0 < r.hi < 30.0), r


@pytest.mark.parametrize("method", METHODS)
def test_streaming_equals_all_at_once(method):
    x = samples("uniform")
    x[3, 5] = 9.0  # a late maximum: the histogram range must not depend on the first batch
    whole = calibrate(relu_graph(), {"x": x}, method=method, batch=len(x))
    seen = []
    streamed = calibrate(relu_graph(), {"x": x}, method=method, batch=7, progress=seen.append)
    assert streamed == whole
    assert sum(seen) == len(x) * passes(method)


def test_unknown_method():
    with pytest.raises(ValueError, match="kl"):
        calibrate(relu_graph(), {"x": samples("uniform")[:2]}, method="kl")


# --- bias correction ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_graphs():
    calib = np.load(ASSETS / "digits_calib.npz")["input"]
    graph, qg = api.quantize_model(DEMO, {"input": calib})
    feeds = {"input": to_physical(graph, "input", calib)}
    return graph, qg, feeds, correct_biases(graph, qg, feeds)


def test_bias_correction_reduces_channel_mean_error(demo_graphs):
    graph, qg, feeds, fixed = demo_graphs
    before = channel_errors(graph, qg, feeds)
    after = channel_errors(graph, fixed, feeds)
    assert len(before) == 5  # stem, dw, pw, conv2, fc
    for name in before:
        b, a = np.abs(before[name]).mean(), np.abs(after[name]).mean()
        assert a < 0.5 * b, f"{name}: mean |channel error| {b:.4g} -> {a:.4g}"


def test_bias_correction_changes_only_biases(demo_graphs):
    _, qg, _, fixed = demo_graphs
    changed = 0
    for old, new in zip(qg.nodes, fixed.nodes):
        assert (old.name, old.kernel) == (new.name, new.kernel)
        if old.kernel in ("conv2d", "depthwise_conv2d", "fully_connected"):
            for f in ("filter", "multiplier", "shift"):
                assert np.array_equal(getattr(old.params, f), getattr(new.params, f))
            assert new.params.bias.dtype == np.int32
            changed += int(not np.array_equal(old.params.bias, new.params.bias))
        else:
            assert old.params is new.params
    assert changed == 5


def test_bias_corrected_c_equals_reference(tmp_path):
    out = tmp_path / "digits_bc"
    res = api.compile_model(DEMO, ASSETS / "digits_calib.npz", out, name="digits",
                            method="mse", bias_correction=True)
    x = np.load(ASSETS / "digits_test.npz")["input"][:16]
    raw = api.run(out, {"input": x}, raw=True)["probs"]
    qg = res.qgraph
    assert api.load_qgraph(out).nodes[0].params.bias.tolist() == qg.nodes[0].params.bias.tolist()
    for i in range(len(x)):
        feed = quantize_input(qg.tensors["input"].q, _physical(qg, x[i : i + 1]))
        ref = run_int(qg, {"input": feed})["probs"]
        got = raw[i : i + 1].reshape(ref.shape)
        if not np.array_equal(got, ref):
            pytest.fail(f"sample {i}: C != reference first at {np.argwhere(got != ref)[0]}")


def _physical(qg, x: np.ndarray) -> np.ndarray:
    perm = qg.input_perm.get("input")
    return np.ascontiguousarray(x.transpose(perm) if perm is not None else x)
