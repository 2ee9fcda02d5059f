"""Memory safety, injection and error vocabulary (issue 9): the host runner's buffers, model
names in the generated C, the qgraph store of `compare`, --name collisions, outputs with no
producer, one-line user errors and the crash-safe folder swap."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_builders import make_model, run_ort, weights  # noqa: E402

from microq import api  # noqa: E402
from microq.errors import MicroqError  # noqa: E402
from microq.ref.int_exec import run_int  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "python" / "microq" / "assets"
DEMO = ASSETS / "digits_cnn.onnx"
CALIB = ASSETS / "digits_calib.npz"


def _x(n: int, k: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, k)).astype(np.float32)


# ---- 1. host runner buffers are exactly the C sizes ------------------------------------------


def _head(tail: str) -> onnx.ModelProto:
    """x [1, 4] -> Gemm [1, 3] -> a tail that drops or moves the batch axis."""
    inits = {"w": weights((3, 4)), "b": weights((3,), seed=3)}
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1)]
    if tail == "view_flat":  # torch x.view(-1): a rank-1 output [3]
        inits["s"] = np.array([-1], np.int64)
        nodes.append(helper.make_node("Reshape", ["h", "s"], ["y"]))
    elif tail == "transpose":  # [3, 1]: output dim 0 is not 1
        nodes.append(helper.make_node("Transpose", ["h"], ["y"], perm=[1, 0]))
    elif tail == "scalar_head":  # Gemm to one value, view(-1): a rank-1 output [1]
        inits = {"w": weights((1, 4)), "b": weights((1,), seed=3), "s": np.array([-1], np.int64)}
        nodes.append(helper.make_node("Reshape", ["h", "s"], ["y"]))
    return make_model(nodes, {"x": (1, 4)}, ["y"], inits, batch=1)


HEADS = {"view_flat": (3,), "transpose": (3, 1), "scalar_head": ()}


@pytest.mark.parametrize("tail", list(HEADS))
def test_host_runner_output_buffers_match_c_sizes(tail, tmp_path) -> None:
    """An output whose dim 0 is not 1 or of rank 1 (view(-1) head): the runner hands the C a
    buffer of exactly NAME_OUTPUT0_SIZE bytes per sample, returns (N, *sample) and equals the
    integer reference bit for bit (a short buffer used to be overrun, rank 1 gave BufferError)."""
    path = tmp_path / f"{tail}.onnx"
    onnx.save(_head(tail), path)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=_x(16))
    res = api.compile_model(path, calib, tmp_path / "out", name="head")
    x = _x(16)[:7]  # inside the calibrated range: the float check is about layout, not clipping
    raw = api.run(tmp_path / "out", {"x": x}, raw=True)["y"]
    assert raw.shape == (7, *HEADS[tail]) and raw.dtype == np.int8
    m = api.load(tmp_path / "out")
    q = m.quantize_input("x", x)
    for i in range(7):
        want = run_int(res.qgraph, {"x": q[i : i + 1]})["y"]
        assert np.array_equal(raw[i].reshape(-1), np.asarray(want).reshape(-1)), f"sample {i}"
    real = api.run(tmp_path / "out", {"x": x})["y"]
    ref = run_ort(_head(tail), {"x": x})[0].reshape(real.shape)
    scale = res.meta["outputs"][0]["scale"]
    assert np.max(np.abs(real - ref)) < 4 * scale


def test_compare_of_a_rank1_output_model(tmp_path) -> None:
    """`compare` on a view(-1) head: onnxruntime's per-sample outputs line up with the C's."""
    path = tmp_path / "flat.onnx"
    onnx.save(_head("view_flat"), path)
    np.savez(tmp_path / "d.npz", x=_x(12))
    api.compile_model(path, tmp_path / "d.npz", tmp_path / "out", name="flat")
    rep = api.compare(path, tmp_path / "out", tmp_path / "d.npz")
    assert rep.outputs["y"].sqnr_db > 30
    assert [r.kernel for r in rep.layers] == ["fully_connected"]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "net"
    api.compile_model(DEMO, CALIB, out, name="net")
    return out


def _tampered_copy(src: Path, dst: Path, edit) -> Path:
    import shutil

    shutil.copytree(src, dst)
    meta = json.loads((dst / "net.json").read_text())
    edit(meta)
    (dst / "net.json").write_text(json.dumps(meta))
    return dst


@pytest.mark.parametrize("case", ["output_size", "output_shape", "input_count", "name_path"])
def test_host_runner_refuses_metadata_that_disagrees_with_the_header(case, demo_dir, tmp_path):
    """NAME.json decides the buffer sizes: one that disagrees with NAME.h (or names a file
    outside the folder) is refused with one line before any C runs."""

    def edit(meta):
        if case == "output_size":
            meta["outputs"][0]["shape"] = [1, 5]
            meta["outputs"][0]["size"] = 5
        elif case == "output_shape":
            meta["outputs"][0]["shape"] = [1, 5]  # size no longer the product
        elif case == "input_count":
            meta["inputs"] = []
        else:
            meta["name"] = "../net"

    d = _tampered_copy(demo_dir, tmp_path / "t", edit)
    with pytest.raises(MicroqError) as e:
        api.run(d, {"input": np.zeros((1, 1, 8, 8), np.float32)})
    assert "\n" not in str(e.value) and "net.json" in str(e.value)


def test_host_runner_rejects_short_int8_input(demo_dir) -> None:
    m = api.load(demo_dir)
    with pytest.raises(MicroqError, match="must be int8"):
        m.run_int8({"input": np.zeros((2, 8, 8), np.int8)})  # one axis short
