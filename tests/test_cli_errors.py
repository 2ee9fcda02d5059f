"""Bad input gives one clear line, a non-zero exit, no traceback, and nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

ASSETS = Path(__file__).resolve().parents[1] / "python" / "microq" / "assets"
DEMO = ASSETS / "digits_cnn.onnx"
CALIB = ASSETS / "digits_calib.npz"


def microq(*args, cwd=None):
    if args and args[0] == "compile":
        args = (*args, "--no-size")  # no test here reads the cortex-m4 size lines
    r = subprocess.run([sys.executable, "-m", "microq", *map(str, args)], capture_output=True,
                       text=True, cwd=cwd, timeout=300)
    return r


def assert_user_error(r, *needles):
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{r.stderr}"
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"


def tiny_model(path: Path, op: str = "Relu", extra_unsupported: bool = False) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node(op, ["x"], ["h"], name="first")]
    if extra_unsupported:
        nodes.append(helper.make_node("Round", ["h"], ["h2"], name="second"))
        nodes.append(helper.make_node("Relu", ["h2"], ["y"], name="third"))
    else:
        nodes.append(helper.make_node("Relu", ["h"], ["y"], name="third"))
    g = helper.make_graph(nodes, "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_truncated_onnx(tmp_path):
    bad = tmp_path / "trunc.onnx"
    bad.write_bytes(DEMO.read_bytes()[:200])
    r = microq("compile", bad, "--calib", CALIB, "-o", tmp_path / "out")
    assert_user_error(r, "trunc.onnx")
    assert not (tmp_path / "out").exists()


def test_not_onnx(tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("hello, this is not a model\n")
    r = microq("inspect", bad)
    assert_user_error(r, "notes.onnx")


def test_unsupported_ops_are_all_listed(tmp_path):
    m = tiny_model(tmp_path / "m.onnx", op="Floor", extra_unsupported=True)
    r = microq("compile", m, "--calib", CALIB, "-o", tmp_path / "out")
    assert_user_error(r, "first", "Floor", "second", "Round")
    assert not (tmp_path / "out").exists()
    r = microq("inspect", m)  # inspect reports them without failing
    assert r.returncode == 0, r.stderr
    assert "Floor" in r.stdout and "Round" in r.stdout


def test_calibration_wrong_key(tmp_path):
    calib = tmp_path / "c.npz"
    np.savez(calib, images=np.zeros((4, 1, 8, 8), np.float32))
    r = microq("compile", DEMO, "--calib", calib, "-o", tmp_path / "out")
    assert_user_error(r, "c.npz", "images", "input")
    assert not (tmp_path / "out").exists()


def test_calibration_wrong_shape(tmp_path):
    calib = tmp_path / "c.npz"
    np.savez(calib, input=np.zeros((4, 1, 9, 8), np.float32))
    r = microq("compile", DEMO, "--calib", calib, "-o", tmp_path / "out")
    assert_user_error(r, "c.npz", "shape")
    assert not (tmp_path / "out").exists()


def test_calibration_nan(tmp_path):
    x = np.load(CALIB)["input"].copy()
    x[3, 0, 2, 2] = np.nan
    calib = tmp_path / "c.npz"
    np.savez(calib, input=x)
    r = microq("compile", DEMO, "--calib", calib, "-o", tmp_path / "out")
    assert_user_error(r, "NaN", "input")
    assert not (tmp_path / "out").exists()


def test_nan_in_weights(tmp_path):
    m = onnx.load(DEMO)
    init = m.graph.initializer[0]
    arr = onnx.numpy_helper.to_array(init).copy()
    arr.flat[0] = np.nan
    init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    bad = tmp_path / "nan.onnx"
    onnx.save(m, bad)
    r = microq("compile", bad, "--calib", CALIB, "-o", tmp_path / "out")
    assert_user_error(r, "NaN", init.name)
    assert not (tmp_path / "out").exists()


def test_unwritable_output(tmp_path):
    # a read-only folder stops a normal user; root writes anywhere, so it gets /proc instead
    if os.geteuid() == 0:
        target = Path("/proc/microq-test-out/out")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "out"
    r = microq("compile", DEMO, "--calib", CALIB, "-o", target)
    assert_user_error(r, "out")
    assert not target.exists()


def test_output_folder_of_the_user_is_never_replaced(tmp_path):
    precious = tmp_path / "project"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    r = microq("compile", DEMO, "--calib", CALIB, "-o", precious)
    assert_user_error(r, "project", "-o")
    assert (precious / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]


def test_own_output_folder_drops_old_outputs_and_keeps_user_files(tmp_path):
    """Recompiling replaces what microq wrote (net.h is gone once the model is net2) and keeps
    what the user added (issue 10: a main.c next to the model used to be deleted)."""
    out = tmp_path / "net"
    for _ in range(2):
        r = microq("compile", DEMO, "--calib", CALIB, "-o", out, "--name", "net", "--json")
        assert r.returncode == 0, r.stderr
    (out / "main.c").write_text("/* the user's */\n")
    r = microq("compile", DEMO, "--calib", CALIB, "-o", out, "--name", "net2", "--json")
    assert r.returncode == 0, r.stderr
    assert (out / "main.c").read_text() == "/* the user's */\n" and not (out / "net.h").exists()
    assert (out / "net2.h").is_file()


def test_unwritable_output_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = microq("compile", DEMO, "--calib", CALIB, "-o", f / "out")
    assert_user_error(r, "out")
    r = microq("compile", DEMO, "--calib", CALIB, "-o", f)
    assert_user_error(r, "file")


def test_run_wrong_shape(tmp_path):
    out = tmp_path / "net"
    r = microq("compile", DEMO, "--calib", CALIB, "-o", out, "--name", "net")
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "x.npz"
    np.savez(bad, input=np.zeros((2, 8, 8), np.float32))
    r = microq("run", out, "--input", bad, "-o", tmp_path / "y.npz")
    assert_user_error(r, "x.npz", "shape")
    assert not (tmp_path / "y.npz").exists()


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
def test_unwritable_output_proc(tmp_path):
    # /proc refuses new folders even for root: the write itself fails, not a pre-check
    r = microq("compile", DEMO, "--calib", CALIB, "-o", "/proc/microq-test-out")
    assert_user_error(r, "/proc/microq-test-out")
    assert not Path("/proc/microq-test-out").exists()
