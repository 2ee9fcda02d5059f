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
