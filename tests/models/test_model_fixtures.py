"""Checks of the torch-exported fixtures in tests/models/ and the bundled digits demo (no torch).

They guard the files' provenance and shape contracts that the importer and quantizer tests rely on;
onnxruntime is the float oracle here.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

HERE = Path(__file__).resolve().parent
ASSETS = HERE.parents[1] / "python" / "microq" / "assets"
ONNX_FILES = sorted(p.name for p in HERE.glob("*.onnx"))
MODEL_NAMES = sorted({f.split(".")[0] for f in ONNX_FILES})


def run_ort(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_every_model_has_both_exporters_and_inputs() -> None:
    assert len(MODEL_NAMES) == 6, MODEL_NAMES
    for name in MODEL_NAMES:
        assert f"{name}.torchscript.onnx" in ONNX_FILES
        assert f"{name}.dynamo.onnx" in ONNX_FILES
        assert (HERE / f"{name}.npz").exists(), name


def test_readme_records_every_file() -> None:
    rows = re.findall(r"^\| (\S+\.onnx) \|", (HERE / "README.md").read_text(), re.MULTILINE)
    assert sorted(rows) == ONNX_FILES


@pytest.mark.parametrize("fname", ONNX_FILES)
def test_fixture_is_valid_small_and_runs(fname: str) -> None:
    path = HERE / fname
    assert path.stat().st_size < 100_000
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["input"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    x = np.load(HERE / f"{fname.split('.')[0]}.npz")["input"]
    assert x.dtype == np.float32 and x.shape[0] == 16
    y = run_ort(path, x)
    assert y.shape[0] == 16 and np.isfinite(y).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_exporters_agree(name: str) -> None:
    x = np.load(HERE / f"{name}.npz")["input"]
    ref = run_ort(HERE / f"{name}.torchscript.onnx", x)
    for fname in ONNX_FILES:
        if fname.startswith(name + ".") and not fname.endswith(".torchscript.onnx"):
            got = run_ort(HERE / fname, x)
            diff = np.abs(got - ref)
            assert diff.max() < 1e-5, f"{fname}: max diff {diff.max()} at {np.argmax(diff)}"


def test_digits_assets_shapes() -> None:
    calib = np.load(ASSETS / "digits_calib.npz")["input"]
    test = np.load(ASSETS / "digits_test.npz")
    assert calib.dtype == np.float32 and calib.shape == (200, 1, 8, 8)
    assert 0.0 <= calib.min() and calib.max() <= 1.0
    assert test["input"].dtype == np.float32 and test["input"].shape == (360, 1, 8, 8)
    assert test["label"].dtype == np.int64 and np.array_equal(
        np.unique(test["label"]), np.arange(10)
    )


def test_digits_model_is_tiny_and_accurate() -> None:
    model = onnx.load(str(ASSETS / "digits_cnn.onnx"))
    n_params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert n_params < 10_000
    assert [o.name for o in model.graph.output] == ["probs"]
    test = np.load(ASSETS / "digits_test.npz")
    probs = run_ort(ASSETS / "digits_cnn.onnx", test["input"])
    assert np.abs(probs.sum(axis=1) - 1.0).max() < 1e-5
    assert (probs.argmax(axis=1) == test["label"]).mean() > 0.95
