"""Test helpers for the CMSIS-NN int8 conformance cases in ../shared (see its README): a loader
and the exact-comparison assertion shared by the kernel tests.

Each case is `<family>/<name>.npz` (flat arrays in C initializer order; a NULL C array has
length 0) plus `<name>.json` (the case's #defines). Reshaping is left to the test, which knows
the family's layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import CONFORMANCE, require


def family_dir(family: str) -> Path:
    """The folder of one kernel family; skips (or fails under CI=true) when it is missing."""
    return require(CONFORMANCE / family, f"CMSIS-NN conformance family {family!r}")


def list_cases(family: str) -> list[str]:
    """Sorted case names of a family, or [] when the folder is missing.

    Safe at collection time (for parametrize): it never skips. Pair it with a test that calls
    `family_dir` and checks the expected count, so a missing folder fails under CI=true.
    """
    folder = CONFORMANCE / family
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json"))


def load_case(family: str, name: str) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, cfg) of one case: every npz array (flat) and the json #defines."""
    folder = family_dir(family)
    with np.load(folder / f"{name}.npz") as z:
        arrays = {k: z[k] for k in z.files}
    cfg = json.loads((folder / f"{name}.json").read_text())
    return arrays, cfg


def assert_exact(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    """np.array_equal, or fail naming the first mismatching index and the mismatch count."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if not np.array_equal(actual, expected):
        bad = np.argwhere(actual != expected)
        idx = tuple(int(i) for i in bad[0])
        raise AssertionError(
            f"{what}: {len(bad)} of {actual.size} differ; first at {idx}: "
            f"got {int(actual[idx])}, expected {int(expected[idx])}"
        )


def weighted_args(ffi, p) -> tuple[object, object, object, list]:
    """cffi arguments shared by conv/depthwise/FC calls: (params struct, mq_per_channel_quant,
    bias pointer or NULL, numpy buffers the caller keeps alive during the call). `p` is a
    ConvParams or FCParams; the C struct takes every scalar field of it."""
    from cabi import Abi

    abi = Abi((ffi, None))
    cp, quant, bias = abi.weighted(p)
    return cp, quant, bias, abi.keep
