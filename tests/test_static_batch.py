"""A model exported with a static batch of images (torch.onnx.export(model, images[:4]): a
static [4, 3, 8, 8]) is a batch again (issue 8): a static dim 0 = N > 1 of a graph input that
reaches a per-image op (Conv, pools, BatchNorm on 3-D+, Instance/GroupNorm, Resize) at axis 0
is the batch, fixed to 1 with a one-line warning; the N baked into Reshape constants and Slice
ends is the batch too. It compiles to the same arena and weights as its batch-1 twin (no
per-image copies), one sample is [3, 8, 8] (calibration, run, compare, NAME.json), and the
onnxruntime reference runs the static-batch model N samples at a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx_builders import make_model, weights
from test_ops_e2e import assert_bit_exact, compile_onnx, run_both, sqnr_db

from microq import api
from microq.compare import run_onnxruntime


def _cnn(b: int) -> onnx.ModelProto:
    """Conv -> Relu -> MaxPool -> Reshape [b, -1] -> Slice [0:b] of axis 0 -> Gemm, exported
    with a static batch of b (b baked into the Reshape constant and the Slice end)."""
    n = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Reshape", ["p", "s"], ["f"]),
         helper.make_node("Slice", ["f", "st", "en", "ax"], ["fs"]),
         helper.make_node("Gemm", ["fs", "wf", "bf"], ["y"], transB=1)]
    inits = {"w": weights((8, 3, 3, 3)), "b": weights((8,), 2),
             "s": np.array([b, -1], np.int64), "st": np.array([0], np.int64),
             "en": np.array([b], np.int64), "ax": np.array([0], np.int64),
             "wf": weights((10, 128), 3), "bf": weights((10,), 4)}
    return make_model(n, {"x": (b, 3, 8, 8)}, ["y"], inits, batch=b)


def test_static_batch_of_4_images_compiles_like_its_batch_1_twin(tmp_path):
    """Same kernels, arena and weight bytes as batch 1; C == reference bit for bit; >= 30 dB
    against onnxruntime run on the static-batch model 4 samples at a time (calibrated on 32
    samples; 10 others, the last group of 4 padded). Measured: 37.6 dB, as the twin."""
    x = np.random.default_rng(0).normal(size=(42, 3, 8, 8)).astype(np.float32)
    onnx.save(_cnn(1), tmp_path / "b1.onnx")
    onnx.save(_cnn(4), tmp_path / "b4.onnx")
    one = compile_onnx(tmp_path / "b1.onnx", {"x": x[:32]}, tmp_path / "c1")
    with pytest.warns(UserWarning, match=r"input 'x' was exported with a static batch of 4: "
                      r"microq compiles one sample; export with batch 1 or a dynamic batch"):
        four = compile_onnx(tmp_path / "b4.onnx", {"x": x[:32]}, tmp_path / "c4")
    assert [n.kernel for n in four.qgraph.nodes] == [n.kernel for n in one.qgraph.nodes]
    assert [n.kernel for n in four.qgraph.nodes].count("conv2d") == 1
    m1, m4 = (json.loads((tmp_path / c / "net.json").read_text()) for c in ("c1", "c4"))
    assert m4["arena_size"] == m1["arena_size"] and m4["weight_bytes"] == m1["weight_bytes"]
    assert [i["logical_shape"] for i in m4["inputs"]] == [[1, 3, 8, 8]]
    assert [o["logical_shape"] for o in m4["outputs"]] == [[1, 10]]
    got, ref, deq = run_both(four, {"x": x[32:]})
    assert_bit_exact(got["y"], ref["y"], "output 'y'")
    want = run_onnxruntime(tmp_path / "b4.onnx", {"x": x[32:]})["y"]
    sess = ort.InferenceSession(str(tmp_path / "b4.onnx"), providers=["CPUExecutionProvider"])
    direct = sess.run(None, {"x": x[32:36]})[0]  # the padding never reaches the results
    np.testing.assert_array_equal(want[:4], direct)
    assert deq["y"].shape == want.shape == (10, 10)
    assert sqnr_db(want, deq["y"]) >= 30
    # the same samples give the same codes as the batch-1 twin (same calibration data)
    got1, _, _ = run_both(one, {"x": x[32:]})
    np.testing.assert_array_equal(got["y"], got1["y"])


def test_static_batch_compare_and_run_take_samples(tmp_path):
    """api.run and api.compare on a static-batch-4 model take (N, 3, 8, 8) samples."""
    x = np.random.default_rng(1).normal(size=(9, 3, 8, 8)).astype(np.float32)
    onnx.save(_cnn(4), tmp_path / "b4.onnx")
    np.savez(tmp_path / "d.npz", x=x)
    with pytest.warns(UserWarning, match="static batch of 4"):
        api.compile_model(tmp_path / "b4.onnx", {"x": x}, tmp_path / "c", name="net")
    assert api.run(tmp_path / "c", {"x": x})["y"].shape == (9, 10)
    with pytest.warns(UserWarning, match="static batch of 4"):
        rep = api.compare(tmp_path / "b4.onnx", tmp_path / "c", tmp_path / "d.npz")
    assert rep.samples == 9 and rep.to_json()["outputs"]["y"]["sqnr_db"] >= 30


def test_static_dim0_reaching_no_per_image_op_stays_data():
    """[4, 3, 8] through MatMul/Softmax only (no per-image op): the static 4 stays data."""
    from microq.onnx_import import import_onnx

    n = [helper.make_node("MatMul", ["x", "w"], ["m"]),
         helper.make_node("Softmax", ["m"], ["y"], axis=0)]
    m = make_model(n, {"x": (4, 3, 8)}, ["y"], {"w": weights((8, 5))}, batch=4)
    g = import_onnx(m)
    assert g.logical_shapes["x"] == (4, 3, 8) and g.logical_shapes["y"] == (4, 3, 5)


FIXTURES = Path(__file__).resolve().parent / "models" / "static_batch"


@pytest.mark.parametrize("tag", ["torchscript", "dynamo"])
def test_torch_export_from_a_batch_of_4_images_compiles_like_batch_1(tag, tmp_path):
    """torch.onnx.export(cnn, images[:4]) (tools/export_static_batch_fixtures.py, a Reshape
    [4, -1] from x.view(x.size(0), -1)): the same C kernels, arena and weights as the batch-1
    export of the same weights, the same int8 codes on the same samples, C == reference, and
    >= 30 dB against onnxruntime on the static-batch model."""
    x = np.load(FIXTURES / "cnn.npz")["input"]
    one = compile_onnx(FIXTURES / f"cnn1.{tag}.onnx", {"input": x[:32]}, tmp_path / "c1")
    with pytest.warns(UserWarning, match="input 'input' was exported with a static batch of 4"):
        four = compile_onnx(FIXTURES / f"cnn4.{tag}.onnx", {"input": x[:32]}, tmp_path / "c4")
    m1, m4 = (json.loads((tmp_path / c / "net.json").read_text()) for c in ("c1", "c4"))
    assert m4["arena_size"] == m1["arena_size"] and m4["weight_bytes"] == m1["weight_bytes"]
    assert [n.kernel for n in four.qgraph.nodes] == [n.kernel for n in one.qgraph.nodes]
    assert [n.kernel for n in four.qgraph.nodes].count("conv2d") == 2
    # the very same folder: every generated file byte for byte (C, weights, NAME.json)
    files = sorted(p.relative_to(tmp_path / "c1") for p in (tmp_path / "c1").rglob("*")
                   if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "c4") for p in (tmp_path / "c4").rglob("*")
                           if p.is_file())
    differ = [str(f) for f in files
              if (tmp_path / "c1" / f).read_bytes() != (tmp_path / "c4" / f).read_bytes()]
    assert not differ, differ
    got, ref, deq = run_both(four, {"input": x[32:]})
    assert_bit_exact(got["output"], ref["output"], "output 'output'")
    np.testing.assert_array_equal(got["output"], run_both(one, {"input": x[32:]})[0]["output"])
    want = run_onnxruntime(FIXTURES / f"cnn4.{tag}.onnx", {"input": x[32:]})["output"]
    assert deq["output"].shape == want.shape == (16, 10)
    assert sqnr_db(want, deq["output"]) >= 30


def test_cli_compile_run_compare_on_a_static_batch_model(tmp_path):
    """`microq compile / run / compare` on cnn4 with an .npz of single [3, 8, 8] images: the
    warning names the input, run gives one row per image, compare runs onnxruntime 4 at a time."""
    path, data = FIXTURES / "cnn4.dynamo.onnx", FIXTURES / "cnn.npz"

    def microq(*args):
        r = subprocess.run([sys.executable, "-m", "microq", *map(str, args)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return r

    r = microq("compile", path, "--calib", data, "-o", tmp_path / "c", "--no-size")
    assert "input 'input' was exported with a static batch of 4: microq compiles one " \
           "sample" in r.stderr
    microq("run", tmp_path / "c", "--input", data, "-o", tmp_path / "y.npz")
    assert np.load(tmp_path / "y.npz")["output"].shape == (48, 10)
    rep = json.loads(microq("compare", path, tmp_path / "c", "--data", data, "--json").stdout)
    assert rep["samples"] == 48 and rep["outputs"]["output"]["sqnr_db"] >= 30


def test_static_dim0_that_a_later_op_mixes_falls_back_to_data(tmp_path):
    """[3, 2, 6, 6] -> Conv -> Softmax over axis 0: the Conv would make 3 the batch, but the
    Softmax mixes the 3, so it is data after all (the batch reading is refused, the data
    reading compiles): the Conv runs per image, one sample is the whole [3, 2, 6, 6] tensor,
    C == reference, >= 30 dB against onnxruntime; no 'static batch' warning."""
    import warnings

    n = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Softmax", ["c"], ["y"], axis=0)]
    inits = {"w": weights((4, 2, 3, 3), scale=0.3), "b": weights((4,), 2)}
    m = make_model(n, {"x": (3, 2, 6, 6)}, ["y"], inits, batch=3)
    onnx.save(m, tmp_path / "m.onnx")
    x = np.random.default_rng(6).normal(size=(40, 3, 2, 6, 6)).astype(np.float32)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        c = compile_onnx(tmp_path / "m.onnx", {"x": x[:32]}, tmp_path / "c")
    text = [str(w.message) for w in said]
    assert not any("static batch" in t for t in text), text
    assert any("runs 3 times, once per image" in t for t in text), text
    assert c.qgraph.logical_shapes["x"] == (3, 2, 6, 6)
    got, ref, deq = run_both(c, {"x": x[32:]})
    assert_bit_exact(got["y"], ref["y"], "output 'y'")
    want = run_onnxruntime(tmp_path / "m.onnx", {"x": x[32:]})["y"]
    assert deq["y"].shape == want.shape == (8, 3, 4, 6, 6)
    assert sqnr_db(want, deq["y"]) >= 30
