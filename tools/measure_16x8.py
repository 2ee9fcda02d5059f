"""Accuracy of the 16x8 fixtures (tests/models/tflite16): output SQNR vs the float Keras model of
the int8 conversion (TFLite Micro) and the 16x8 one (microq's C, bit-exact with TFLite Micro),
plus the arena of each. Prints a Markdown table. Run: python tools/measure_16x8.py
(microq venv: tflite-micro, tflite)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
FIX = ROOT / "tests" / "models" / "tflite16"
NAMES = ["fc16", "conv16", "dwconv16", "add16", "mul16", "softmax16", "act16", "cnn16",
         "pool16"]


def sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    return float(10 * np.log10((ref ** 2).sum() / max(((ref - got) ** 2).sum(), 1e-30)))


def tflm(path: Path, x: np.ndarray) -> tuple[np.ndarray, dict, dict]:
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_file(str(path))
    ys = []
    for i in range(len(x)):
        it.set_input(x[i : i + 1], 0)
        it.invoke()
        ys.append(np.array(it.get_output(0)))
    return np.concatenate(ys), it.get_input_details(0), it.get_output_details(0)


def qparams(details: dict) -> tuple[float, int]:
    q = details["quantization_parameters"]
    return float(q["scales"][0]), int(q["zero_points"][0])


def main() -> None:
    from microq import api

    print("| model | int8 SQNR dB | 16x8 SQNR dB | 16x8 == TFLM | arena int8 / 16x8 B |")
    print("|---|---:|---:|---|---:|")
    for name in NAMES:
        with np.load(FIX / f"{name}.npz") as z:
            x16, y_float = z["x_in"], z["y_float_in"]  # in-distribution inputs
        y16, d_in, d_out = tflm(FIX / f"{name}.tflite", x16)
        s_in, _ = qparams(d_in)
        s_out, zp_out = qparams(d_out)
        xf = x16.astype(np.float32) * np.float32(s_in)
        _, d8_in, d8_out = tflm(FIX / "int8" / f"{name}.tflite", np.zeros((1, *x16.shape[1:]),
                                                                           np.int8))
        s8, z8 = qparams(d8_in)
        x8 = np.clip(np.round(xf / s8) + z8, -128, 127).astype(np.int8)
        y8, _, _ = tflm(FIX / "int8" / f"{name}.tflite", x8)
        so8, zo8 = qparams(d8_out)
        out = Path(tempfile.mkdtemp())
        m16 = api.load(api.compile_model(FIX / f"{name}.tflite", None, out / "a",
                                         name=name).out_dir)
        try:  # microq's int8 TFLite import has no int8 LOGISTIC/TANH
            arena8 = api.compile_model(FIX / "int8" / f"{name}.tflite", None, out / "b",
                                       name=name).meta["arena_size"]
        except Exception as e:  # noqa: BLE001 - reported in the table
            arena8 = f"- ({type(e).__name__})"
        c16 = m16.run_int8({m16.inputs[0]["name"]: x16})[m16.outputs[0]["name"]]
        exact = np.array_equal(c16.reshape(y16.shape), y16)
        f16 = (c16.astype(np.float64) - zp_out) * s_out
        f8 = (y8.astype(np.float64) - zo8) * so8
        print(f"| {name} | {sqnr(y_float, f8):.1f} | {sqnr(y_float, f16):.1f} | "
              f"{'yes' if exact else 'NO'} | {arena8} / "
              f"{m16.meta['arena_size']} |", flush=True)


if __name__ == "__main__":
    main()
