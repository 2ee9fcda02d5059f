"""The bundled demo CNN (digits): int8 accuracy within 1 percentage point of float on the held-out
split, C bit-exact with the integer reference, and deterministic output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from microq import api
from microq.compare import run_onnxruntime

ASSETS = Path(__file__).resolve().parents[1] / "python" / "microq" / "assets"
DEMO = ASSETS / "digits_cnn.onnx"


@pytest.fixture(scope="module")
def demo(compiled_demo):
    return compiled_demo  # shared (conftest): read-only


def test_int8_accuracy_within_one_point_of_float(demo):
    z = np.load(ASSETS / "digits_test.npz")
    x, labels = z["input"], z["label"]
    ref = run_onnxruntime(DEMO, {"input": x})["probs"]
    got = api.run(demo, {"input": x})["probs"]
    acc_f = float(np.mean(ref.argmax(1) == labels))
    acc_q = float(np.mean(got.argmax(1) == labels))
    assert acc_f > 0.9, f"float accuracy {acc_f:.3f}: the bundled model is broken"
    assert acc_q >= acc_f - 0.01, f"int8 {acc_q:.4f} vs float {acc_f:.4f}"


def test_compile_is_deterministic(demo, tmp_path):
    again = tmp_path / "digits"
    api.compile_model(DEMO, ASSETS / "digits_calib.npz", again, name="digits")
    files = sorted(p.relative_to(demo) for p in demo.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for f in files:
        if f.suffix in (".c", ".h", ".json"):
            assert (demo / f).read_bytes() == (again / f).read_bytes(), f"{f} differs"


def test_compare_report(demo):
    rep = api.compare(DEMO, demo, ASSETS / "digits_test.npz")
    j = rep.to_json()
    out = j["outputs"]["probs"]
    assert out["top1_agreement"] > 0.97
    assert out["accuracy_int8"] >= out["accuracy_float"] - 0.01
    assert len(j["layers"]) >= 5
    assert all(layer["sqnr_db"] > 10 for layer in j["layers"]), j["layers"]


def test_compile_is_deterministic_across_processes_and_hash_seeds(tmp_path):
    """Two processes with different PYTHONHASHSEED (so different set/dict-of-str orders) write
    byte-identical folders: guards against hash-order nondeterminism, which compiles made in one
    process cannot catch."""
    import os
    import subprocess
    import sys

    script = ("import sys; from microq import api; "
              "api.compile_model(sys.argv[1], sys.argv[2], sys.argv[3], name='digits')")
    procs = []
    for seed in ("1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        procs.append(subprocess.Popen(
            [sys.executable, "-c", script, str(DEMO), str(ASSETS / "digits_calib.npz"),
             str(tmp_path / seed / "digits")], env=env, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    a, b = tmp_path / "1" / "digits", tmp_path / "4242" / "digits"
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f"{f} differs between hash seeds"
