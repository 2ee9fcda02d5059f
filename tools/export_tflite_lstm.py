"""Train and convert the int8 TFLite LSTM fixtures of tests/models/recurrent/tflite (issue 13).

The task and data are those of tools/export_recurrent_fixtures.py (4-class frequency
classification of 20 steps x 8 features; make_data below is the same generator, same seeds, and
tests/models/recurrent/data.npz holds its calib / test / test_labels). Two Keras (tf_keras,
Keras 2: Keras 3's LSTM converts to a WHILE loop, not to the fused op) classifiers are trained
briefly with Adam, then converted with full-integer post-training quantization (representative
dataset = data.npz "calib", int8 input and output):

  lstm_last     LSTM(16) -> Dense(4)                                  (return_sequences=False)
  lstm_stacked  LSTM(16, return_sequences=True) -> LSTM(16) -> Dense(4)
  lstm_bidir    Bidirectional(LSTM(16)) -> Dense(4)   (REVERSE_V2, two LSTMs, CONCATENATION)

plus three untrained single layers of other sizes, the whole sequence as the model output
(LSTM(H, return_sequences=True) on [1, T, I], Keras-initialized weights times 2.5 so gates
saturate; representative data N(0, 1.5), seed fixed): seq_i3_h5_t7, seq_i12_h24_t4,
seq_i1_h2_t10 (the kernel-level goldens of tests/test_tflite_lstm.py), and two edits of
seq_i3_h5_t7's flatbuffer that Keras cannot make: seq_i3_h5_t7_clip (cell_clip = 0.25, below
the cell's range, so the cell clips) and seq_i3_h5_t7_time_major (time_major = true, input
[T, 1, I], output [T, 1, H]).

The converter emits UNIDIRECTIONAL_SEQUENCE_LSTM (int8 input / output / weights, int16 cell
state, int32 gate biases, time_major false) followed by STRIDED_SLICE of the last step, then
FULLY_CONNECTED. float_logits.npz: the Keras float logits of data.npz "test" per model (the
float reference of the accuracy tests). Run with the TensorFlow venv:
  /work/tfvenv/bin/python tools/export_tflite_lstm.py      (tensorflow 2.21, tf_keras 2.21)
It prints each model's float test accuracy and the TFLite interpreter's int8 accuracy.

With --tf2onnx (needs tf2onnx and onnx importable, e.g. `pip install --target DIR --no-deps
tf2onnx onnx` and PYTHONPATH=DIR, which keeps the TF venv's protobuf) it also trains a Keras
LSTM(16) and a Keras GRU(16) (reset_after=True, the Keras default) classifier the same way and
converts them with tf2onnx 1.17 (opset 17, input "input" [1, 20, 8], batch 1 so the initial
states fold to constants) into tests/models/recurrent/tf2onnx/keras_{lstm,gru}.tf2onnx.onnx.
(A GRU with reset_after=False does not become an ONNX GRU node: tf2onnx emits a Loop.)
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "models" / "recurrent" / "data.npz"
OUT = ROOT / "tests" / "models" / "recurrent" / "tflite"
T, F, H, CLASSES = 20, 8, 16, 4
FREQS = (1.0, 1.5, 2.0, 2.5)


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The generator of tools/export_recurrent_fixtures.py (kept equal: the test data is shared)."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(1313).normal(0, 1, (2, F)) / np.sqrt(2)
    y = rng.integers(0, CLASSES, n)
    t = np.arange(T)[None, :]
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    amp = rng.uniform(0.6, 1.4, (n, 1))
    w = 2 * np.pi * np.asarray(FREQS)[y][:, None] / T
    s = np.stack([amp * np.sin(w * t + phase), amp * np.cos(w * t + phase)], axis=-1)
    x = s @ mix + rng.normal(0, 1.0, (n, T, F))
    return x.astype(np.float32), y.astype(np.int64)


def build(name: str, batch: int | None) -> keras.Model:
    inp = keras.Input((T, F), batch_size=batch)
    if name == "lstm_last":
        h = keras.layers.LSTM(H)(inp)
    elif name == "lstm_bidir":
        h = keras.layers.Bidirectional(keras.layers.LSTM(H))(inp)
    else:
        h = keras.layers.LSTM(H, return_sequences=True)(inp)
        h = keras.layers.LSTM(H)(h)
    return keras.Model(inp, keras.layers.Dense(CLASSES)(h))


MODELS = ("lstm_last", "lstm_stacked", "lstm_bidir")
RANDOM = {"seq_i3_h5_t7": (3, 5, 7), "seq_i12_h24_t4": (12, 24, 4), "seq_i1_h2_t10": (1, 2, 10)}


def convert(model: keras.Model, samples: np.ndarray) -> bytes:
    def rep():
        for x in samples:
            yield [x[None]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def export_variants() -> None:
    from tensorflow.lite.tools import flatbuffer_utils as fb

    base = (OUT / "seq_i3_h5_t7.int8.tflite").read_bytes()
    for name in ("clip", "time_major"):
        m = fb.read_model_from_bytearray(bytearray(base))
        sg = m.subgraphs[0]
        (op,) = [o for o in sg.operators if o.builtinOptions is not None
                 and hasattr(o.builtinOptions, "cellClip")]
        if name == "clip":
            op.builtinOptions.cellClip = 0.25
        else:
            op.builtinOptions.timeMajor = True
            for t in (op.inputs[0], op.outputs[0]):
                shape = list(sg.tensors[t].shape)
                sg.tensors[t].shape = [shape[1], shape[0], shape[2]]
                if sg.tensors[t].shapeSignature is not None:
                    sg.tensors[t].shapeSignature = [shape[1], shape[0], shape[2]]
        blob = bytes(fb.convert_object_to_bytearray(m))
        (OUT / f"seq_i3_h5_t7_{name}.int8.tflite").write_bytes(blob)
        print(f"seq_i3_h5_t7_{name}: {len(blob)} bytes")


def export_random() -> None:
    for k, (name, (i, h, t)) in enumerate(RANDOM.items()):
        keras.utils.set_random_seed(330 + k)
        inp = keras.Input((t, i), batch_size=1)
        model = keras.Model(inp, keras.layers.LSTM(h, return_sequences=True)(inp))
        model.set_weights([w * 2.5 for w in model.get_weights()])
        rng = np.random.default_rng(330 + k)
        blob = convert(model, rng.normal(0, 1.5, (16, t, i)).astype(np.float32))
        (OUT / f"{name}.int8.tflite").write_bytes(blob)
        print(f"{name}: {len(blob)} bytes")
    export_variants()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with np.load(DATA) as d:
        xte, yte, xca = d["test"], d["test_labels"], d["calib"]
    xtr, ytr = make_data(2000, 0)
    chk_x, chk_y = make_data(400, 1)
    assert np.array_equal(chk_x, xte) and np.array_equal(chk_y, yte), "data.npz drifted"
    logits = {}
    # TF derives op-level seeds from a count of the ops made before, so the order below is
    # part of the recipe: the two first classifiers, the random layers, then lstm_bidir
    # (added later; this order re-creates the earlier files byte for byte).
    for k, name in enumerate(MODELS):
        if name == "lstm_bidir":
            export_random()
        keras.utils.set_random_seed(230 + k)
        net = build(name, None)
        net.compile(keras.optimizers.Adam(0.01),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        net.fit(xtr, ytr, batch_size=64, epochs=12, verbose=0, shuffle=True)
        fixed = build(name, 1)  # batch 1: the converter's static shapes
        fixed.set_weights(net.get_weights())
        ref = net.predict(xte, verbose=0)
        logits[name] = ref.astype(np.float32)
        acc = float(np.mean(ref.argmax(1) == yte))
        blob = convert(fixed, xca)
        (OUT / f"{name}.int8.tflite").write_bytes(blob)
        it = tf.lite.Interpreter(model_content=blob)
        it.allocate_tensors()
        ops = [o["op_name"] for o in it._get_ops_details()]
        si, zi = it.get_input_details()[0]["quantization"]
        correct = 0
        for x, y in zip(xte, yte):
            it.reset_all_variables()
            q = np.clip(np.round(x / si) + zi, -128, 127).astype(np.int8)[None]
            it.set_tensor(it.get_input_details()[0]["index"], q)
            it.invoke()
            out = it.get_tensor(it.get_output_details()[0]["index"])[0]
            correct += int(np.argmax(out) == y)
        print(f"{name}: float test accuracy {acc:.4f}, TFLite int8 {correct / len(yte):.4f}, "
              f"{len(blob)} bytes, ops {ops}")
    np.savez_compressed(OUT / "float_logits.npz", **logits)


def export_tf2onnx() -> None:
    import tf2onnx

    out = OUT.parent / "tf2onnx"
    out.mkdir(exist_ok=True)
    with np.load(DATA) as d:
        xte, yte = d["test"], d["test_labels"]
    xtr, ytr = make_data(2000, 0)
    for k, kind in enumerate(("lstm", "gru")):
        keras.utils.set_random_seed(430 + k)
        inp = keras.Input((T, F), name="input")
        layer = keras.layers.LSTM(H) if kind == "lstm" else keras.layers.GRU(H)
        net = keras.Model(inp, keras.layers.Dense(CLASSES)(layer(inp)))
        net.compile(keras.optimizers.Adam(0.01),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        net.fit(xtr, ytr, batch_size=64, epochs=12, verbose=0, shuffle=True)
        acc = float(np.mean(net.predict(xte, verbose=0).argmax(1) == yte))
        spec = (tf.TensorSpec((1, T, F), tf.float32, name="input"),)
        proto, _ = tf2onnx.convert.from_keras(net, input_signature=spec, opset=17)
        old = proto.graph.output[0].name  # tf2onnx names it after the Keras tensor
        proto.graph.output[0].name = "output"
        for node in proto.graph.node:
            node.input[:] = ["output" if v == old else v for v in node.input]
            node.output[:] = ["output" if v == old else v for v in node.output]
        path = out / f"keras_{kind}.tf2onnx.onnx"
        path.write_bytes(proto.SerializeToString())
        print(f"keras_{kind}: float test accuracy {acc:.4f}, ops "
              f"{[n.op_type for n in proto.graph.node]}")


if __name__ == "__main__":
    import sys

    if "--tf2onnx" in sys.argv:
        export_tf2onnx()
    else:
        main()
