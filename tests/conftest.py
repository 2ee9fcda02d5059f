"""Shared test fixtures: the c_runtime as a cffi module, and access to ../shared data.

Outside CI a missing ../shared folder or tool is a skip with a reason; under CI=true it is a
failure, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MICROQ_SHARED", REPO.parent / "shared"))
MODELS = SHARED / "models"
CONFORMANCE = SHARED / "conformance" / "cmsis-nn-s8"
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(path: Path, what: str) -> Path:
    """Return `path` if it exists; otherwise skip (user machine) or fail (CI=true)."""
    if not path.exists():
        msg = (f"{what} not found at {path}: ../shared next to the repository (or "
               "$MICROQ_SHARED) holds the MLPerf Tiny reference models (MLCommons' tiny "
               "repository) and Arm's CMSIS-NN unit-test vectors; README 'Reference data' "
               "says where to get them")
        if IN_CI:
            pytest.fail(msg + "; under CI=true this is a failure")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def clib():
    """(ffi, lib) of the whole c_runtime, default (double) rounding."""
    from microq.runtime.cbuild import build_c_runtime

    return build_c_runtime()


@pytest.fixture(scope="session")
def clib_single():
    """(ffi, lib) of the c_runtime built with MQ_SINGLE_ROUNDING=1."""
    from microq.runtime.cbuild import build_c_runtime

    return build_c_runtime({"MQ_SINGLE_ROUNDING": "1"})


ASSETS = REPO / "python" / "microq" / "assets"
TRANSFORMERS = REPO / "tests" / "models" / "transformers"


def _model_and_calib(key: str):
    """(model path, calibration data) of a shared test model."""
    if key == "digits":
        return ASSETS / "digits_cnn.onnx", ASSETS / "digits_calib.npz"
    if key == "vit_digits":
        return TRANSFORMERS / "vit_digits.onnx", TRANSFORMERS / "vit_digits_calib.npz"
    if key == "kws_transformer":
        return TRANSFORMERS / "kws_transformer.onnx", TRANSFORMERS / "kws_transformer_data.npz"
    from mlperf_data import model_path, real_data

    return model_path(key), real_data(key)[0]


def _digest(folder: Path) -> dict[str, bytes]:
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).digest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def compiled_model(tmp_path_factory):
    """compiled_model(key, name=None, **options) -> the folder of `key` compiled once per
    test process by api.compile_model(model, calib, out, name=name or key, **options).
    "digits" is the bundled demo (digits_calib.npz); an MLPerf Tiny key (ic01, vww01, kws01,
    ad01, sww01) calibrates on the real samples of mlperf_data; "vit_digits" and
    "kws_transformer" are the fixtures of tests/models/transformers. The folder is shared: a
    test that changes it must copy it first (shutil.copytree into tmp_path). At the end of the
    session each shared folder is checked byte for byte unchanged, so a test that writes into
    one fails."""
    from microq import api

    built: dict[tuple, tuple[Path, dict[str, bytes]]] = {}

    def get(key: str, name: str | None = None, **options) -> Path:
        k = (key, name or key, *sorted(options.items()))
        if k not in built:
            model, calib = _model_and_calib(key)
            out = tmp_path_factory.mktemp(f"shared_{key}") / (name or key)
            api.compile_model(model, calib, out, name=name or key, **options)
            built[k] = out, _digest(out)
        return built[k][0]

    yield get
    changed = [str(out) for out, digest in built.values() if _digest(out) != digest]
    assert not changed, f"tests wrote into shared compiled folders (copy them first): {changed}"


@pytest.fixture(scope="session")
def compiled_demo(compiled_model) -> Path:
    """The bundled demo compiled once per test process (name digits); read-only, see
    compiled_model."""
    return compiled_model("digits")


# ---- `slow`: what `make test-quick` (-m "not slow") leaves out --------------------------------
# The emulator (QEMU) runs, the cross-compile matrix, the wheel install, the sanitizer builds,
# the Cortex-M cycle counts, the make/CMake/Arduino builds and the MLPerf Tiny model compiles.
# Whole files by name, plus any test whose own source (or a fixture's) calls the emulator, the
# cross compiler or the MLPerf data (so a new test of that kind is slow without anyone
# remembering to mark it); @pytest.mark.slow marks others.
SLOW_FILES = {"test_cross_compile.py", "test_wheel.py", "test_mcu.py", "test_boards.py",
              "test_dsp_case_tables.py", "test_kernel_perf.py", "test_sanitizers.py",
              "test_models.py", "test_glue.py"}
# the slowest host-only tests of `make test-quick` (--durations): onnxruntime's calibration
# searches, the fuzz run
SLOW_TESTS = {"test_best_method_at_least_onnxruntime", "test_fuzz_short_run_has_no_failures"}
SLOW_CALLS = ("mcu.run_int8", "mcu.run_elf", "mcu.build", "qemu", "cross_compile(",
              "size_report(", "check_integer_only(", "profile(", "real_data(", "model_path(",
              "build_executable(")


def pytest_collection_modifyitems(config, items):
    import inspect

    sources: dict[object, str] = {}
    for item in items:
        if (Path(str(item.fspath)).name in SLOW_FILES
                or getattr(item, "originalname", item.name) in SLOW_TESTS):
            item.add_marker(pytest.mark.slow)
            continue
        fns = [getattr(item, "function", None)]
        info = getattr(item, "_fixtureinfo", None)  # the fixtures it uses, and theirs
        for defs in (info.name2fixturedefs.values() if info else ()):
            fns += [d.func for d in defs]
        for fn in fns:
            if fn is not None and fn not in sources:
                try:
                    sources[fn] = inspect.getsource(fn)
                except (OSError, TypeError):
                    sources[fn] = ""
        if any(call in sources.get(fn, "") for fn in fns for call in SLOW_CALLS):
            item.add_marker(pytest.mark.slow)
