"""Accuracy side by side: float, microq with each calibration method (and bias correction), and
onnxruntime's quantize_static (QDQ, per-channel symmetric int8 weights, int8 activations) with
the same calibration samples. Prints a markdown table.

Sets: the demo CNN on the digits hold-out (calibrated on digits_calib.npz); the MLPerf Tiny ONNX
models on their real data in ../shared/models/data (calibrated and evaluated on the same samples:
there are no others). Metrics: accuracy where labels exist (digits, sww01), else top-1 agreement
with float (ic01, vww01, kws01), and for the ad01 autoencoder the mean squared reconstruction
error (lower is better). Ours runs through the integer reference (bit-exact with the C).

Usage: python tools/bench_accuracy.py [--models demo,sww01,...] [--ort-methods minmax,...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "python" / "microq" / "assets"
sys.path.insert(0, str(REPO / "tests"))

from microq import api  # noqa: E402
from microq.quant.calibrate import METHODS  # noqa: E402
from microq.ref.float_exec import to_physical  # noqa: E402
from microq.ref.int_exec import run_int  # noqa: E402
from microq.compare import quantize_input, run_onnxruntime  # noqa: E402

MLPERF = ["sww01", "ic01", "vww01", "kws01", "ad01"]


@dataclass
class Case:
    key: str
    model: Path
    calib: dict[str, np.ndarray]
    data: dict[str, np.ndarray]
    labels: np.ndarray | None
    metric: str  # "accuracy", "agreement" or "mse"


def case(key: str) -> Case:
    if key == "demo":
        calib = {"input": np.load(ASSETS / "digits_calib.npz")["input"]}
        z = np.load(ASSETS / "digits_test.npz")
        return Case("demo", ASSETS / "digits_cnn.onnx", calib, {"input": z["input"]},
                    z["label"], "accuracy")
    from mlperf_data import model_path, real_data

    data, labels = real_data(key)
    metric = "accuracy" if labels is not None else ("mse" if key == "ad01" else "agreement")
    return Case(key, model_path(key), data, data, labels, metric)


def run_qgraph(graph, qg, data: dict[str, np.ndarray]) -> np.ndarray:
    """The first output of the quantized graph (dequantized, logical layout) per sample."""
    out = qg.outputs[0]
    q = qg.tensors[out].q
    n = len(next(iter(data.values())))
    rows = []
    for i in range(n):
        feeds = {k: quantize_input(qg.tensors[k].q, to_physical(graph, k, v[i : i + 1]))
                 for k, v in data.items()}
        y = run_int(qg, feeds)[out]
        rows.append((y.astype(np.float64).reshape(-1) - q.zero_point) * q.scale)
    return np.stack(rows)


def ours(c: Case, method: str, bias_correction: bool = False) -> np.ndarray:
    graph, qg = api.quantize_model(c.model, c.calib, method=method,
                                   bias_correction=bias_correction)
    return run_qgraph(graph, qg, c.data)


class _Reader:
    """onnxruntime CalibrationDataReader: one sample per call (models fix the batch to 1)."""

    def __init__(self, calib: dict[str, np.ndarray]):
        n = len(next(iter(calib.values())))
        self.items = iter([{k: v[i : i + 1].astype(np.float32) for k, v in calib.items()}
                           for i in range(n)])

    def get_next(self):
        return next(self.items, None)


def onnxruntime_qdq(c: Case, method: str = "minmax") -> np.ndarray:
    """quantize_static (QDQ, per_channel, QInt8 weights (symmetric) and activations), run by
    onnxruntime on the same data."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    cal = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
           "entropy": CalibrationMethod.Entropy}[method]
    logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process, per weight
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.qdq.onnx"
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(c.model), str(out), _Reader(c.calib), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, calibrate_method=cal,
                            extra_options={"WeightSymmetric": True,
                                           "ActivationSymmetric": False})
        y = run_onnxruntime(out, c.data)
    return next(iter(y.values())).reshape(len(next(iter(c.data.values()))), -1)


def score(c: Case, y: np.ndarray, ref: np.ndarray) -> float:
    """Accuracy or top-1 agreement (fractions), or mean squared reconstruction error."""
    if c.metric == "accuracy":
        return float(np.mean(y.argmax(1) == np.asarray(c.labels).reshape(-1)))
    if c.metric == "agreement":
        return float(np.mean(y.argmax(1) == ref.argmax(1)))
    x = next(iter(c.data.values())).reshape(len(y), -1)
    return float(np.mean((y - x) ** 2))


def evaluate(key: str, methods=METHODS, ort_methods=("minmax",), bias_correction=True) -> dict:
    """{column: score} for one set; columns: float, each method (+ "+bc"), "ort <method>"."""
    c = case(key)
    ref = next(iter(run_onnxruntime(c.model, c.data).values()))
    ref = ref.reshape(len(ref), -1)
    row = {"float": score(c, ref, ref)}
    for m in methods:
        row[m] = score(c, ours(c, m), ref)
        if bias_correction:
            row[m + "+bc"] = score(c, ours(c, m, True), ref)
    for m in ort_methods:
        row[f"ort {m}"] = score(c, onnxruntime_qdq(c, m), ref)
    return row


def best_ours(row: dict, metric: str) -> float:
    vals = [v for k, v in row.items() if k != "float" and not k.startswith("ort")]
    return min(vals) if metric == "mse" else max(vals)


def markdown(rows: dict[str, dict]) -> str:
    cols = list(next(iter(rows.values())))
    lines = ["| set (metric) | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for key, row in rows.items():
        metric = case_metric(key)
        fmt = (lambda v: f"{v:.3f}") if metric == "mse" else (lambda v: f"{100 * v:.2f}%")
        lines.append(f"| {key} ({metric}) | " + " | ".join(fmt(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def case_metric(key: str) -> str:
    return {"demo": "accuracy", "sww01": "accuracy", "ad01": "mse"}.get(key, "agreement")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(["demo"] + MLPERF))
    ap.add_argument("--ort-methods", default="minmax,percentile,entropy")
    args = ap.parse_args()
    rows = {k: evaluate(k, ort_methods=args.ort_methods.split(",")) for k in
            args.models.split(",")}
    print(markdown(rows))
    print("\naccuracy / agreement: higher is better; ad01 mse (mean squared reconstruction "
          "error): lower is better. +bc: with --bias-correction.")


if __name__ == "__main__":
    main()
