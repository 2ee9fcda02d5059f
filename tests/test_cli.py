"""The CLI's happy paths: inspect, compile, run (.npz and .npy, --raw), compare, --json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ASSETS = Path(__file__).resolve().parents[1] / "python" / "microq" / "assets"
DEMO = ASSETS / "digits_cnn.onnx"
CALIB = ASSETS / "digits_calib.npz"
TEST = ASSETS / "digits_test.npz"


def microq(*args):
    r = subprocess.run([sys.executable, "-m", "microq", *map(str, args)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "sub" / "net"  # parents are created
    summary = json.loads(microq("compile", DEMO, "--calib", CALIB, "-o", out, "--name", "net",
                                "--json"))
    return out, summary


def test_compile_summary(compiled):
    out, s = compiled
    assert s["layers"] == 10
    assert s["macs"] > 100_000
    # outputs may overlap the inputs they consume (issue 12): between the overlap-aware bound
    # and the tensor-granular liveness bound, never above it
    assert 0 < s["arena_overlap_bound"] <= s["arena_bytes"] <= s["arena_lower_bound"]
    assert s["weight_bytes"] > 5_000
    assert (out / "net.h").is_file() and (out / "net.c").is_file()
    header = (out / "net.h").read_text()
    for macro in ("NET_ARENA_SIZE", "NET_INPUT_SIZE", "NET_OUTPUT_SIZE", "NET_INPUT_SCALE",
                  "NET_INPUT_ZERO_POINT", "NET_OUTPUT_SCALE", "NET_OUTPUT_ZERO_POINT",
                  "net_invoke"):
        assert macro in header, macro
    assert f"{s['arena_bytes']}" in header


def test_run_npz_npy_and_raw(compiled, tmp_path):
    out, _ = compiled
    z = np.load(TEST)
    microq("run", out, "--input", TEST, "-o", tmp_path / "a.npz")  # 'label' key is ignored
    a = np.load(tmp_path / "a.npz")["probs"]
    assert a.shape == (len(z["label"]), 10) and a.dtype == np.float32
    np.save(tmp_path / "x.npy", z["input"][:7])
    microq("run", out, "--input", tmp_path / "x.npy", "-o", tmp_path / "b.npz")
    np.testing.assert_array_equal(np.load(tmp_path / "b.npz")["probs"], a[:7])
    microq("run", out, "--input", tmp_path / "x.npy", "-o", tmp_path / "c.npz", "--raw")
    raw = np.load(tmp_path / "c.npz")["probs"]
    assert raw.dtype == np.int8
    # dequantized = (q - zp) * scale with the output parameters of the header
    meta = json.loads((out / "net.json").read_text())
    o = meta["outputs"][0]
    np.testing.assert_allclose((raw.astype(np.float32) - o["zero_point"]) * o["scale"], a[:7],
                               rtol=1e-6)


def test_compare_json(compiled):
    out, _ = compiled
    rep = json.loads(microq("compare", DEMO, out, "--data", TEST, "--json"))
    o = rep["outputs"]["probs"]
    assert rep["samples"] == 360
    assert o["accuracy_int8"] >= o["accuracy_float"] - 0.01
    assert o["sqnr_db"] > 20 and o["cosine"] > 0.99
    assert [layer["kernel"] for layer in rep["layers"]][0] == "conv2d"


def test_compare_table(compiled):
    out, _ = compiled
    text = microq("compare", DEMO, out, "--data", TEST)
    assert "SQNR" in text and "top-1" in text and "/stem/Conv" in text


def test_inspect_json():
    rep = json.loads(microq("inspect", DEMO, "--json"))
    assert rep["unsupported"] == []
    assert len(rep["rows"]) == 10


def test_help_explains():
    text = microq("compile", "--help")
    assert "--calib" in text and "--method" in text and "percentile" in text


def test_compile_reports_default_target_size(compiled):
    """Without --no-size, compile links for cortex-m4 and reports flash and RAM."""
    import shutil

    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        from conftest import IN_CI

        if IN_CI:
            pytest.fail("arm-none-eabi-gcc / qemu-system-arm missing (a failure under CI=true)")
        pytest.skip("arm-none-eabi-gcc / qemu-system-arm not installed")
    _, s = compiled
    assert s["size"]["target"] == "cortex-m4", s["size_note"]
    assert 0 < s["size"]["flash"]["total"] <= s["size"]["flash"]["available"]
    assert s["size"]["ram"]["total"] >= s["arena_bytes"]


def test_compile_no_size_skips_the_size_step(tmp_path):
    assert "--no-size" in microq("compile", "--help")
    out = tmp_path / "net"
    s = json.loads(microq("compile", DEMO, "--calib", CALIB, "-o", out, "--no-size", "--json"))
    assert s["size"] is None and "--no-size" in s["size_note"]
    assert (out / "net.h").is_file()
    text = microq("compile", DEMO, "--calib", CALIB, "-o", out, "--no-size")
    assert "size skipped" in text and "size check" not in text
