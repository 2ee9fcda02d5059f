"""Cross-compile matrix: the generated folders of the test models (the demo, the five MLPerf
Tiny models, the two transformers) compile with -std=c99 -Wall -Wextra -Werror
-pedantic for every Cortex-M target (hard float on M4/M7/M33/M55) and for rv32imc.

Needs gcc-arm-none-eabi and gcc-riscv64-unknown-elf: skipped without them, a failure under
CI=true.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import IN_CI
from microq.runtime import mcu
from microq.runtime.mcu_size import CROSS_TARGETS, cross_compile

ASSETS = Path(__file__).resolve().parents[1] / "python" / "microq" / "assets"


def need_compiler(target: str) -> None:
    name = "riscv64-unknown-elf-gcc" if target == "rv32imc" else "arm-none-eabi-gcc"
    if shutil.which(name) is None:
        pkgs = mcu.RISCV_PACKAGES if target == "rv32imc" else mcu.ARM_PACKAGES
        msg = f"{name} not installed: apt-get install -y --no-install-recommends {pkgs}"
        if IN_CI:
            pytest.fail(msg + " (under CI=true this is a failure)")
        pytest.skip(msg)


@pytest.fixture(scope="module")
def demo(compiled_demo) -> Path:
    return compiled_demo  # shared (conftest): read-only


MODELS = ["ic01", "vww01", "kws01", "ad01", "sww01", "vit_digits", "kws_transformer"]


@pytest.fixture(scope="module")
def folders(compiled_model):
    return compiled_model  # key -> shared compiled folder (conftest), read-only


@pytest.mark.parametrize("target", CROSS_TARGETS)
@pytest.mark.parametrize("key", MODELS)
def test_model_folder_compiles_warning_free(folders, key, target):
    need_compiler(target)
    folder = folders(key)
    objects = cross_compile(folder, target)
    assert objects == sorted(p.with_suffix(".o").name for p in folder.glob("*.c"))


def test_matrix_is_complete():
    assert set(CROSS_TARGETS) == {"cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7",
                                  "cortex-m33", "cortex-m55", "rv32imc"}
    assert "-mfloat-abi=hard" in mcu.TARGETS["cortex-m4"].cflags


@pytest.mark.parametrize("target", CROSS_TARGETS)
def test_demo_folder_compiles_warning_free(demo, target):
    need_compiler(target)
    objects = cross_compile(demo, target)
    assert objects == sorted(p.with_suffix(".o").name for p in demo.glob("*.c"))


def test_a_warning_fails_the_build(demo, tmp_path):
    need_compiler("cortex-m0plus")
    folder = tmp_path / "digits"
    shutil.copytree(demo, folder)
    with open(folder / "digits.c", "a") as f:
        f.write("static int unused_helper(void) { return 0; }\n")
    with pytest.raises(Exception, match="unused_helper"):
        cross_compile(folder, "cortex-m0plus")


def test_a_warning_in_a_cached_runtime_file_still_fails_the_build(demo, tmp_path):
    """cross_compile caches objects by content: the demo's runtime files are cached after the
    first build, and an edited copy of one must compile again (and fail), never hit the cache."""
    need_compiler("cortex-m0plus")
    cross_compile(demo, "cortex-m0plus")  # every object of the demo now in the cache
    folder = tmp_path / "digits"
    shutil.copytree(demo, folder)
    runtime = sorted(p for p in folder.glob("mq_*.c"))[0]
    with open(runtime, "a") as f:
        f.write("static int unused_runtime_helper(void) { return 0; }\n")
    with pytest.raises(Exception, match="unused_runtime_helper"):
        cross_compile(folder, "cortex-m0plus")
    shutil.copy(demo / runtime.name, runtime)  # restored: the cached object is valid again
    assert cross_compile(folder, "cortex-m0plus") == cross_compile(demo, "cortex-m0plus")
