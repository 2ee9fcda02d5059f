"""The C runtime and generated folders: C99, warning-free on gcc and clang with strict flags,
no malloc / stdio / libm, no floating point in any kernel."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import IN_CI, REPO

SRC = sorted((REPO / "c_runtime" / "src").glob("*.c"))
HDR = sorted((REPO / "c_runtime" / "include").glob("*.h")) + sorted(
    (REPO / "c_runtime" / "src").glob("*.h"))
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-c"]
ASSETS = REPO / "python" / "microq" / "assets"


def compiler(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not found (apt-get install --no-install-recommends {name})"
        if IN_CI:
            pytest.fail(msg + "; under CI=true this is a failure")
        pytest.skip(msg)
    return path


def compile_all(cc: str, files, include: Path, out: Path, defines=()):
    for f in files:
        r = subprocess.run([cc, *STRICT, *defines, "-I", str(include), str(f), "-o",
                            str(out / (f.stem + ".o"))], capture_output=True, text=True)
        assert r.returncode == 0, f"{cc} {f.name}:\n{r.stderr}"
        assert r.stderr == "", f"{cc} {f.name} printed warnings:\n{r.stderr}"


@pytest.mark.parametrize("cc", ["gcc", "clang"])
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_runtime_compiles_strict(cc, rounding, tmp_path):
    defines = ["-DMQ_SINGLE_ROUNDING=1"] if rounding == "single" else []
    compile_all(compiler(cc), SRC, REPO / "c_runtime" / "include", tmp_path, defines)


@pytest.mark.parametrize("path", SRC + HDR, ids=lambda p: p.name)
def test_no_float_malloc_stdio_libm(path):
    text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)  # comments may say "float"
    for bad in (r"\bfloat\b", r"\bdouble\b", r"\bmalloc\b", r"\bcalloc\b", r"\bfree\s*\(",
                r"#include\s*<stdio\.h>", r"#include\s*<math\.h>", r"#include\s*<stdlib\.h>",
                r"\bprintf\b"):
        assert not re.search(bad, text), f"{path.name} uses {bad}"


@pytest.fixture(scope="module")
def demo_dir(compiled_demo):
    return compiled_demo  # shared (conftest): read-only


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_generated_folder_compiles_strict(cc, demo_dir, tmp_path):
    files = sorted(demo_dir.glob("*.c"))
    assert any(f.name == "digits.c" for f in files)
    compile_all(compiler(cc), files, demo_dir, tmp_path)


def test_generated_model_code_has_no_float(demo_dir):
    for f in sorted(demo_dir.glob("*.c")):
        text = re.sub(r"/\*.*?\*/", "", f.read_text(), flags=re.S)
        assert not re.search(r"\b(float|double)\b", text), f"{f.name} uses floating point"
