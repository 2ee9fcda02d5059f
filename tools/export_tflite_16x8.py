"""Convert small Keras models to 16x8 TFLite fixtures (int16 activations, int8 weights) for
tests/models/tflite16 (issue 13, item 2): the golden models of microq's 16x8 kernels.

Each model is converted with TFLite's post-training 16x8 mode
(`target_spec.supported_ops = [EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]`),
a representative dataset of 64 N(0, 1) samples (seed 16), and int16 model input and output (no
float QUANTIZE/DEQUANTIZE at the edges: TFLite Micro then takes and gives int16 directly).
Weights and biases are Keras' seeded random initialization (the numbers matter, not training).

  fc16        Dense(24, relu) -> Dense(10)                       input [1, 16]
  conv16      Conv2D(6, 3x3, same, relu) -> Conv2D(4, 3x3 s2, valid)     input [1, 9, 9, 3]
  dwconv16    DepthwiseConv2D(3x3, same, mult 2, relu) -> DepthwiseConv2D(3x3 s2 d1)  [1, 8, 8, 3]
  add16       Dense(12) + Dense(12) -> ADD                       input [1, 16]
  mul16       Dense(12) * Dense(12) -> MUL                       input [1, 16]
  softmax16   Dense(10) -> Softmax                               input [1, 16]
  act16       Dense(12) -> Logistic, Dense(12) -> Tanh, ADD     input [1, 16]
  cnn16       Conv2D -> DepthwiseConv2D -> Reshape -> Dense -> Softmax  input [1, 8, 8, 2]
  pool16      Conv2D -> MaxPool 2x2 same -> AveragePool 3x3 s2 same     input [1, 9, 9, 3]

Keras LayerNormalization does not convert to one builtin (it becomes MEAN/SUB/RSQRT/MUL), so
there is no LayerNorm fixture. Every NAME.npz holds "x": 32 int16 inputs (float N(0, 1.5)
samples quantized with the model's input scale, seed 17; some saturate on purpose),
"y_float": the Keras float model's outputs on them dequantized, and "x_in" / "y_float_in" the
same for 32 in-distribution inputs (N(0, 0.7), seed 18) for the accuracy comparison. The
golden integer outputs are not stored: the tests run TFLite Micro (pip tflite-micro) on them.
int8/NAME.tflite is the same model converted in plain int8 (TFLITE_BUILTINS_INT8, int8 I/O),
for the accuracy comparison.

Run with the TensorFlow venv:  /work/tfvenv/bin/python tools/export_tflite_16x8.py
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests" / "models" / "tflite16"
_L = tf.keras.layers
_B = {"bias_initializer": "random_normal"}  # Keras' zero biases would be dropped by the converter


class L:
    """The Keras layers used here, with random (nonzero) biases."""

    Input, Add, Multiply, Softmax, Activation, Reshape, MaxPooling2D, AveragePooling2D = (
        _L.Input, _L.Add, _L.Multiply, _L.Softmax, _L.Activation, _L.Reshape, _L.MaxPooling2D,
        _L.AveragePooling2D)

    @staticmethod
    def Dense(*a, **k):  # noqa: N802 - Keras' names
        return _L.Dense(*a, **_B, **k)

    @staticmethod
    def Conv2D(*a, **k):  # noqa: N802
        return _L.Conv2D(*a, **_B, **k)

    @staticmethod
    def DepthwiseConv2D(*a, **k):  # noqa: N802
        return _L.DepthwiseConv2D(*a, **_B, **k)


def _model(name: str) -> tuple[tf.keras.Model, tuple[int, ...]]:
    tf.keras.utils.set_random_seed(1600 + sum(map(ord, name)))
    if name == "fc16":
        x = L.Input((16,), batch_size=1)
        y = L.Dense(10)(L.Dense(24, activation="relu")(x))
    elif name == "conv16":
        x = L.Input((9, 9, 3), batch_size=1)
        h = L.Conv2D(6, 3, padding="same", activation="relu")(x)
        y = L.Conv2D(4, 3, strides=2, padding="valid")(h)
    elif name == "dwconv16":
        x = L.Input((8, 8, 3), batch_size=1)
        h = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu")(x)
        y = L.DepthwiseConv2D(3, strides=2, padding="same")(h)
    elif name == "add16":
        x = L.Input((16,), batch_size=1)
        y = L.Add()([L.Dense(12)(x), L.Dense(12)(x)])
    elif name == "mul16":
        x = L.Input((16,), batch_size=1)
        y = L.Multiply()([L.Dense(12)(x), L.Dense(12)(x)])
    elif name == "softmax16":
        x = L.Input((16,), batch_size=1)
        y = L.Softmax()(L.Dense(10, kernel_initializer=tf.keras.initializers.RandomNormal(0, 1))(x))
    elif name == "act16":
        x = L.Input((16,), batch_size=1)
        a = L.Activation("sigmoid")(L.Dense(12)(x))
        b = L.Activation("tanh")(L.Dense(12)(x))
        y = L.Add()([a, b])
    elif name == "cnn16":
        x = L.Input((8, 8, 2), batch_size=1)
        h = L.Conv2D(4, 3, strides=2, padding="same", activation="relu")(x)
        h = L.DepthwiseConv2D(3, padding="same")(h)
        h = L.Reshape((4 * 4 * 4,))(h)
        y = L.Softmax()(L.Dense(6)(h))
    elif name == "pool16":
        x = L.Input((9, 9, 3), batch_size=1)
        h = L.Conv2D(4, 3, padding="same")(x)
        h = L.MaxPooling2D(2, padding="same")(h)
        y = L.AveragePooling2D(3, strides=2, padding="same")(h)
    else:
        raise SystemExit(f"unknown model {name}")
    return tf.keras.Model(x, y), tuple(x.shape[1:])


N_SAMPLES = 32
NAMES = ("fc16", "conv16", "dwconv16", "add16", "mul16", "softmax16", "act16", "cnn16",
         "pool16")


def convert(model: tf.keras.Model, shape: tuple[int, ...], int8: bool = False) -> bytes:
    rng = np.random.default_rng(16)
    calib = rng.normal(0, 1, (64, 1, *shape)).astype(np.float32)

    def rep():
        for s in calib:
            yield [s]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    if int8:  # the same model in plain int8, for the accuracy comparison
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        return conv.convert()
    conv.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    ]
    conv.inference_input_type = tf.int16
    conv.inference_output_type = tf.int16
    return conv.convert()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=list(NAMES))
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        model, shape = _model(name)
        blob = convert(model, shape)
        (OUT / f"{name}.tflite").write_bytes(blob)
        it = tf.lite.Interpreter(model_content=blob)
        it.allocate_tensors()
        d_in, d_out = it.get_input_details()[0], it.get_output_details()[0]
        s, zp = d_in["quantization"]
        rng = np.random.default_rng(17)
        xf = rng.normal(0, 1.5, (N_SAMPLES, *shape)).astype(np.float32)
        x = np.clip(np.round(xf / s) + zp, -32768, 32767).astype(np.int16)
        ops = sorted({o["op_name"] for o in it._get_ops_details()})
        # the float model on the dequantized int16 inputs: the accuracy reference
        def float_out(xq):
            return np.concatenate([model(xi[None].astype(np.float32) * np.float32(s)).numpy()
                                   for xi in xq])

        # in-distribution inputs (N(0, 0.7): inside the calibrated range) for the accuracy
        x_in = np.round(np.random.default_rng(18).normal(0, 0.7, (N_SAMPLES, *shape)) / s)
        x_in = np.clip(x_in, -32768, 32767).astype(np.int16)
        np.savez_compressed(OUT / f"{name}.npz", x=x, y_float=float_out(x), x_in=x_in,
                            y_float_in=float_out(x_in))
        (OUT / "int8").mkdir(exist_ok=True)
        (OUT / "int8" / f"{name}.tflite").write_bytes(convert(model, shape, int8=True))
        print(f"{name}: {len(blob)} B, input {d_in['dtype'].__name__} scale {s:.3g} zp {zp}, "
              f"output {d_out['dtype'].__name__} {d_out['quantization']}, ops {ops}")


if __name__ == "__main__":
    main()
