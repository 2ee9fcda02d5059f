"""int8 TFLite UNIDIRECTIONAL_SEQUENCE_LSTM (tests/models/recurrent/tflite, made by
tools/export_tflite_lstm.py; lstm_bidir is Keras Bidirectional: REVERSE_V2, two LSTMs,
CONCATENATION): the generated C equals TFLite Micro (the pip `tflite-micro`
interpreter, reset before every sequence) and the numpy reference bit for bit; the trained
classifiers stay within 1 pp of Keras float on the held-out labelled set; the emulated M4 and
M0+ give the host's bytes. Kernel level: mq_lstm_tfl_s8 == ref.recurrent.lstm_tfl on random
sizes, offsets, cell scales and clips (both rounding modes), TFLite's int16 sigmoid / tanh on
every int16 input, and the LSTM forms microq refuses, each with its reason."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import IN_CI
from microq import api
from microq.errors import MicroqError
from microq.ref.int_exec import run_int
from microq.runtime import mcu
from microq.tflite_import import import_tflite
from microq.tflite_import.reader import read_tflite

DIR = Path(__file__).resolve().parent / "models" / "recurrent"
TFL = DIR / "tflite"
CLASSIFIERS = ("lstm_last", "lstm_stacked", "lstm_bidir")
TWO_LSTMS = ("lstm_stacked", "lstm_bidir")
SEQUENCES = ("seq_i3_h5_t7", "seq_i12_h24_t4", "seq_i1_h2_t10", "seq_i3_h5_t7_clip",
             "seq_i3_h5_t7_time_major")
MCU_TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-nm", "qemu-system-arm")
MQ_OK, MQ_ERR_ARG = 0, 1


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        msg = "tflite-micro is not installed (pip install '.[test]')"
        if IN_CI:
            pytest.fail(msg + "; under CI=true this is a failure")
        pytest.skip(msg)
    return runtime


def tflm(path: Path, xs: np.ndarray) -> np.ndarray:
    """TFLite Micro's output per sample; reset() first: its LSTM keeps its state across
    invocations, microq's runs each sequence from the zero state."""
    it = _runtime().Interpreter.from_file(str(path))
    shape = tuple(int(d) for d in it.get_input_details(0)["shape"])
    ys = []
    for x in xs:
        it.reset()
        it.set_input(x.reshape(shape), 0)
        it.invoke()
        ys.append(np.array(it.get_output(0)))
    return np.concatenate(ys)


@pytest.fixture(scope="module")
def data():
    return np.load(DIR / "data.npz")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    cache = {}

    def get(name: str):
        if name not in cache:
            out = tmp_path_factory.mktemp(name) / "net"
            api.compile_model(TFL / f"{name}.int8.tflite", None, out, name="net")
            cache[name] = (out, api.load(out), api.load_qgraph(out))
        return cache[name]

    return get


def test_tflite_lstm_fixtures_are_fused_int8x8_16_lstms():
    """Guards a regenerated set that lost the fused op (Keras 3 converts LSTM to a WHILE loop):
    every file has UNIDIRECTIONAL_SEQUENCE_LSTM with int8 input / weights, an int16 cell."""
    for name in CLASSIFIERS + SEQUENCES:
        m = read_tflite(TFL / f"{name}.int8.tflite")
        lstms = [op for op in m.ops if op.opcode == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
        assert len(lstms) == (2 if name in TWO_LSTMS else 1), name
        for op in lstms:
            assert m.tensors[op.inputs[0]].dtype == "INT8"
            assert m.tensors[op.inputs[2]].dtype == "INT8"
            cell = m.tensors[op.inputs[19]]
            assert cell.dtype == "INT16" and cell.is_variable


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_tflite_lstm_classifier_c_equals_tflite_micro_and_within_1pp(compiled, data, name):
    out, host, qg = compiled(name)
    assert [n.kernel for n in qg.nodes].count("lstm_tfl") == (2 if name in TWO_LSTMS else 1)
    spec = host.inputs[0]
    q = host.quantize_input(spec["name"], data["test"])
    got = host.run_int8({spec["name"]: q})[host.outputs[0]["name"]].reshape(len(q), -1)
    want = tflm(TFL / f"{name}.int8.tflite", q)
    assert np.array_equal(got, want), f"{name}: C != TFLite Micro"
    for i in range(8):  # the python reference is slow: a few samples
        r = run_int(qg, {qg.inputs[0]: q[i:i + 1]})[qg.outputs[0]]
        assert np.array_equal(r.reshape(-1), got[i]), f"{name}: run_int != C at sample {i}"
    labels = data["test_labels"]
    acc_int8 = float(np.mean(got.argmax(1) == labels))
    acc_float = float(np.mean(np.load(TFL / "float_logits.npz")[name].argmax(1) == labels))
    assert acc_float > 0.9, f"{name}: the float model is not trained ({acc_float:.3f})"
    assert acc_int8 >= acc_float - 0.01, f"{name}: int8 {acc_int8:.4f} vs float {acc_float:.4f}"


def _samples(host, n: int, seed: int) -> np.ndarray:
    """n random int8 samples; a time-major input [T, 1, I] is one sample as a whole."""
    shape = tuple(host.inputs[0]["shape"])
    one = shape[1:] if shape[0] == 1 else shape
    return np.random.default_rng(seed).integers(-128, 128, (n, *one)).astype(np.int8)


@pytest.mark.parametrize("name", SEQUENCES)
def test_tflite_lstm_sequence_c_equals_tflite_micro_and_reference(compiled, name):
    """Untrained layers with saturating gates, the whole int8 sequence compared; _clip has
    cell_clip 0.25 (below the cell's range), _time_major the [T, 1, I] layout."""
    out, host, qg = compiled(name)
    spec = host.inputs[0]
    q = _samples(host, 40, 5)
    got = host.run_int8({spec["name"]: q})[host.outputs[0]["name"]]
    want = tflm(TFL / f"{name}.int8.tflite", q)
    assert np.array_equal(got.reshape(want.shape), want), f"{name}: C != TFLite Micro"
    for i in range(4):
        r = run_int(qg, {qg.inputs[0]: q[i].reshape(qg.tensors[qg.inputs[0]].shape)})
        assert np.array_equal(r[qg.outputs[0]].reshape(-1), got[i].reshape(-1)), name
    assert len(np.unique(got)) > 8, "degenerate output: the comparison proves little"


def test_tflite_lstm_clip_and_time_major_variants_change_what_they_should(compiled):
    """The clipped cell changes the outputs (the clip is live); time_major with batch 1 is the
    same bytes as batch-major."""
    base, clip, tm = (compiled(n)[1] for n in ("seq_i3_h5_t7", "seq_i3_h5_t7_clip",
                                               "seq_i3_h5_t7_time_major"))
    params = [n.params for n in compiled("seq_i3_h5_t7_clip")[2].nodes if n.kernel == "lstm_tfl"]
    assert 0 < params[0].cell_clip < 32767
    q = _samples(base, 20, 7)
    y0 = base.run_int8({base.inputs[0]["name"]: q})[base.outputs[0]["name"]]
    y1 = clip.run_int8({clip.inputs[0]["name"]: q})[clip.outputs[0]["name"]]
    y2 = tm.run_int8({tm.inputs[0]["name"]: q.reshape(20, 7, 1, 3)})[tm.outputs[0]["name"]]
    assert np.mean(y0 != y1) > 0.2
    assert np.array_equal(y0.reshape(-1), y2.reshape(-1))


def _need_mcu_tools() -> None:
    missing = [t for t in MCU_TOOLS if shutil.which(t) is None]
    if missing:
        msg = f"{', '.join(missing)} not installed: apt-get install {mcu.ARM_PACKAGES}"
        if IN_CI:
            pytest.fail(msg + " (under CI=true this is a failure)")
        pytest.skip(msg)


@pytest.mark.parametrize("name,target", [("lstm_stacked", "cortex-m4"),
                                         ("lstm_stacked", "cortex-m0plus")])
def test_tflite_lstm_on_mcu_bit_exact_with_host(compiled, data, name, target):
    _need_mcu_tools()
    out, host, _ = compiled(name)
    spec = host.inputs[0]
    if name in CLASSIFIERS:
        q = host.quantize_input(spec["name"], data["test"][:3])
    else:
        q = _samples(host, 3, 6)
    want = host.run_int8({spec["name"]: q})
    got = mcu.run_int8(out, target, {spec["name"]: q})
    for k in want:
        assert np.array_equal(got[k], want[k]), f"{name} on {target}"


# ---- refused forms -----------------------------------------------------------------------

def _patched(monkeypatch, name: str, edit):
    """import_tflite of fixture `name` with its first LSTM operator changed by edit(model, op)."""
    import microq.tflite_import as tfl_import

    real = tfl_import.read_tflite

    def read(path):
        m = real(path)
        k = next(i for i, op in enumerate(m.ops) if op.opcode == "UNIDIRECTIONAL_SEQUENCE_LSTM")
        m.ops[k] = edit(m, m.ops[k])
        return m

    monkeypatch.setattr(tfl_import, "read_tflite", read)
    return TFL / f"{name}.int8.tflite"


def _set_input(slot: int, source: int):
    def edit(m, op):
        ins = list(op.inputs)
        ins[slot] = ins[source] if source >= 0 else -1
        return dataclasses.replace(op, inputs=tuple(ins))
    return edit


class _Opts:
    """The LSTM's options with one field changed."""

    def __init__(self, base, **kw):
        self.base, self.kw = base, kw

    def __getattr__(self, k):
        return (lambda: self.kw[k]) if k in self.kw else getattr(self.base, k)


def _set_option(**kw):
    return lambda m, op: dataclasses.replace(op, options=_Opts(op.options, **kw))


REFUSED = {
    "peephole": (_set_input(10, 6), "peephole"),
    "projection": (_set_input(16, 6), "projection"),
    "layer_norm": (_set_input(20, 12), "layer-norm"),
    "cifg": (_set_input(1, -1), "CIFG"),
    "relu_cell": (_set_option(FusedActivationFunction=1), "only TANH"),
    "diagonal": (_set_option(DiagonalRecurrentTensors=True), "diagonal"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unsupported_tflite_lstm_forms_refused_with_reason(monkeypatch, case):
    edit, reason = REFUSED[case]
    path = _patched(monkeypatch, "seq_i3_h5_t7", edit)
    with pytest.raises(MicroqError, match=reason):
        import_tflite(path)


def test_tflite_lstm_with_a_batch_of_two_is_refused(monkeypatch):
    def edit(m, op):
        x = m.tensors[op.inputs[0]]
        m.tensors[op.inputs[0]] = dataclasses.replace(x, shape=(2,) + x.shape[1:])
        return op
    with pytest.raises(MicroqError, match="batch of 2"):
        import_tflite(_patched(monkeypatch, "seq_i3_h5_t7", edit))


def test_inspect_tflite_lstm_counts_its_weights_and_macs():
    from microq.tflite_import.inspect import inspect_tflite

    rep = inspect_tflite(str(TFL / "lstm_stacked.int8.tflite"))
    rows = [r for r in rep.rows if r.op == "lstm_tfl"]
    # 4 gates x 16 units x (inputs + 16 recurrent) weights + 64 biases; MACs over 20 steps
    assert [(r.params, r.macs) for r in rows] == [(64 * (8 + 16) + 64, 20 * 64 * 24),
                                                  (64 * (16 + 16) + 64, 20 * 64 * 32)]


def test_tflite_empty_shape_tensor_is_refused_where_an_operator_uses_it(tmp_path):
    """The reader accepts zero-size tensors only unused (the LSTM's float intermediates, which
    the converter writes with shape [0]); on an operator's input it is a one-line error."""
    import flatbuffers  # the `tflite` reader package depends on it
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    raw = (TFL / "seq_i3_h5_t7.int8.tflite").read_bytes()
    assert any(0 in t.shape for t in read_tflite(TFL / "seq_i3_h5_t7.int8.tflite").tensors)
    m = schema.ModelT.InitFromPackedBuf(bytearray(raw), 0)
    sg = m.subgraphs[0]
    lstm = next(op for op in sg.operators if len(op.inputs) == 24)
    sg.tensors[lstm.inputs[0]].shape = [1, 0, 3]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    bad = tmp_path / "empty.tflite"
    bad.write_bytes(bytes(b.Output()))
    with pytest.raises(MicroqError, match=r"has shape \[1, 0, 3\], an empty dimension"):
        import_tflite(bad)


# ---- STRIDED_SLICE (the converter's last-step slice after the LSTM) ----------------------

def _patch_slice(monkeypatch, edit):
    import microq.tflite_import as tfl_import

    real = tfl_import.read_tflite

    def read(path):
        m = real(path)
        k = next(i for i, op in enumerate(m.ops) if op.opcode == "STRIDED_SLICE")
        m.ops[k] = edit(m, m.ops[k]) or m.ops[k]
        return m

    monkeypatch.setattr(tfl_import, "read_tflite", read)
    return TFL / "lstm_last.int8.tflite"


def _slice_params(path):
    return next(n.params for n in import_tflite(path).nodes if n.kernel == "slice")


def test_tflite_strided_slice_masks_normalize_to_the_last_step():
    """begin [0, -1, 0] with begin/end masks on axes 0 and 2 and shrink on axis 1: the last
    step [0:1, 19:20, 0:16]."""
    p = _slice_params(TFL / "lstm_last.int8.tflite")
    assert (p.begin, p.end, p.step) == ((0, 19, 0), (1, 20, 16), (1, 1, 1))


def test_tflite_strided_slice_begin_index_counts_from_the_end_or_the_start(monkeypatch):
    def first_step(m, op):
        t = m.tensors[op.inputs[1]]
        m.tensors[op.inputs[1]] = dataclasses.replace(t, data=np.zeros_like(t.data))
    p = _slice_params(_patch_slice(monkeypatch, first_step))
    assert (p.begin, p.end) == ((0, 0, 0), (1, 1, 16))


@pytest.mark.parametrize("opts,reason", [
    (dict(EllipsisMask=1), "ellipsis_mask"),
    # without the shrink bit, begin 19 and end 0 on axis 1 select nothing: refused, not empty
    (dict(ShrinkAxisMask=0), r"output \[1, 16\] is not the slice's \[1, 0, 16\]"),
])
def test_tflite_strided_slice_unsupported_or_inconsistent_refused(monkeypatch, opts, reason):
    path = _patch_slice(monkeypatch, lambda m, op: dataclasses.replace(
        op, options=_Opts(op.options, **opts)))
    with pytest.raises(MicroqError, match=reason):
        import_tflite(path)


def test_tflite_bidirectional_lowers_reverse_to_a_negative_step_slice():
    qg = import_tflite(TFL / "lstm_bidir.int8.tflite")
    rev = [n.params for n in qg.nodes if n.kernel == "slice" and -1 in n.params.step]
    assert [(p.begin, p.end, p.step) for p in rev] == [((0, 19, 0), (1, -1, 8), (1, -1, 1))]
    assert [n.kernel for n in qg.nodes].count("concat") == 1


def test_tflite_concatenation_of_other_quantizations_refused(monkeypatch):
    import microq.tflite_import as tfl_import

    real = tfl_import.read_tflite

    def read(path):
        m = real(path)
        op = next(o for o in m.ops if o.opcode == "CONCATENATION")
        t = m.tensors[op.outputs[0]]  # the output's scale: the inputs no longer share it
        m.tensors[op.outputs[0]] = dataclasses.replace(t, scales=t.scales * 2)
        return m

    monkeypatch.setattr(tfl_import, "read_tflite", read)
    with pytest.raises(MicroqError, match="only inputs of the output's quantization"):
        import_tflite(TFL / "lstm_bidir.int8.tflite")
