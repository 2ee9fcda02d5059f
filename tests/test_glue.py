"""Build glue generated with each folder (issue 10): the Makefile and CMakeLists.txt build the model
library and example/main.c for the host (and the example runs) and for arm-none-eabi (toolchain
file); the shared-runtime variants; the Arduino library layout compiles with arm-none-eabi-gcc."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import IN_CI, REPO
from microq import api

ASSETS = REPO / "python" / "microq" / "assets"
ARM_MAGIC = b"\x7fELF\x01\x01\x01"  # 32-bit little-endian ELF
STRICT = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"]


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        msg = (f"{', '.join(missing)} not installed (apt-get install make cmake "
               "gcc-arm-none-eabi libnewlib-arm-none-eabi)")
        if IN_CI:
            pytest.fail(msg + "; under CI=true this is a failure")
        pytest.skip(msg)


def sh(cmd, cwd: Path) -> str:
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, f"{cmd} failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def is_arm_elf(path: Path) -> bool:
    head = path.read_bytes()[:20]
    return head.startswith(ARM_MAGIC) and int.from_bytes(head[18:20], "little") == 40  # EM_ARM


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    api.compile_model(ASSETS / "digits_cnn.onnx", ASSETS / "digits_calib.npz", root / "digits",
                      name="digits")
    api.write_runtime(root / "rt")
    api.compile_model(ASSETS / "digits_cnn.onnx", ASSETS / "digits_calib.npz", root / "ext",
                      name="digits", runtime="external")
    api.compile_model(ASSETS / "digits_cnn.onnx", ASSETS / "digits_calib.npz", root / "ard",
                      name="digits", layout="arduino", rounding="single")
    return root


def test_flat_folder_has_the_glue_files(folders):
    d = folders / "digits"
    for f in ("CMakeLists.txt", "Makefile", "arm-none-eabi.cmake", "example/main.c"):
        assert (d / f).is_file(), f
    cmake = (d / "CMakeLists.txt").read_text()
    assert "add_library(digits STATIC" in cmake and "mq_conv.c" in cmake


def test_makefile_builds_host_and_arm(folders, tmp_path):
    need("make", "gcc", "arm-none-eabi-gcc")
    src = tmp_path / "m"
    shutil.copytree(folders / "digits", src)
    sh(["make", "-s", f"CFLAGS={' '.join(STRICT)}"], src)
    assert subprocess.run([src / "build" / "digits_example"], timeout=30).returncode == 0
    sh(["make", "-s", "clean"], src)
    sh(["make", "-s", "CROSS=arm-none-eabi-", "CPU=cortex-m0plus"], src)
    assert is_arm_elf(src / "build" / "digits_example")


def test_cmake_builds_host_and_arm_toolchain(folders, tmp_path):
    need("cmake", "make", "gcc", "arm-none-eabi-gcc")
    src = folders / "digits"
    host, arm = tmp_path / "host", tmp_path / "arm"
    sh(["cmake", "-S", src, "-B", host, "-DCMAKE_C_FLAGS=" + " ".join(STRICT[1:])], tmp_path)
    sh(["cmake", "--build", host], tmp_path)
    assert subprocess.run([host / "digits_example"], timeout=30).returncode == 0
    assert (host / "libdigits.a").is_file()
    sh(["cmake", "-S", src, "-B", arm, f"-DCMAKE_TOOLCHAIN_FILE={src / 'arm-none-eabi.cmake'}"],
       tmp_path)
    sh(["cmake", "--build", arm], tmp_path)
    assert is_arm_elf(arm / "digits_example")


def test_shared_runtime_glue(folders, tmp_path):
    """A --runtime external folder builds against the runtime folder (Make and CMake) and says
    what is missing without it."""
    need("cmake", "make", "gcc")
    ext, rt = folders / "ext", folders / "rt"
    assert not list(ext.glob("mq_*.c"))
    src = tmp_path / "ext"
    shutil.copytree(ext, src)
    p = subprocess.run(["make", "-s"], cwd=src, capture_output=True, text=True)
    assert p.returncode != 0 and "MQ_RUNTIME_DIR" in p.stderr
    sh(["make", "-s", f"MQ_RUNTIME_DIR={rt}"], src)
    assert subprocess.run([src / "build" / "digits_example"], timeout=30).returncode == 0
    b = tmp_path / "b"
    p = subprocess.run(["cmake", "-S", ext, "-B", tmp_path / "nort"], capture_output=True,
                       text=True)
    assert p.returncode != 0 and "MQ_RUNTIME_DIR" in p.stdout + p.stderr
    sh(["cmake", "-S", ext, "-B", b, f"-DMQ_RUNTIME_DIR={rt}"], tmp_path)
    sh(["cmake", "--build", b], tmp_path)
    assert subprocess.run([b / "digits_example"], timeout=30).returncode == 0
    assert (rt / "CMakeLists.txt").read_text().count("add_library(mq_runtime STATIC") == 1


def test_arduino_layout_compiles_with_arm_gcc(folders, tmp_path):
    need("arm-none-eabi-gcc")
    d = folders / "ard"
    props = dict(line.split("=", 1) for line in (d / "library.properties").read_text().splitlines()
                 if line)
    assert props["name"] == "digits" and props["includes"] == "digits.h"
    assert (d / "examples" / "digits_example" / "digits_example.ino").is_file()
    assert not list(d.glob("*.c")) and (d / "src" / "digits.c").is_file()
    # Arduino has no per-library -D: --rounding single is the header copy's default
    assert "#define MQ_SINGLE_ROUNDING 1" in (d / "src" / "mq_requant.h").read_text()
    sources = sorted((d / "src").glob("*.c"))
    sh(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", *STRICT, f"-I{d / 'src'}", "-c",
        *sources], tmp_path)
    assert len(list(tmp_path.glob("*.o"))) == len(sources)
    # the sketch itself, as C++ against a minimal stand-in for the Arduino core
    if shutil.which("arm-none-eabi-g++"):
        (tmp_path / "Arduino.h").write_text(
            "struct SerialT { void begin(long) {} void print(const char *) {} void print(int) {}"
            " void println(unsigned long) {} };\nstatic SerialT Serial;\n"
            "unsigned long micros();\nvoid delay(unsigned long);\n")
        ino = tmp_path / "sketch.cpp"
        ino.write_text('#include "Arduino.h"\n' + (d / "examples" / "digits_example" /
                                                    "digits_example.ino").read_text())
        sh(["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-Wall", "-Wextra", "-Werror",
            f"-I{d / 'src'}", f"-I{tmp_path}", "-c", ino, "-o", tmp_path / "sketch.o"], tmp_path)


def test_arduino_folder_runs_like_the_flat_one(folders):
    """microq's own tools read the Arduino layout (sources in src/): host output equals a flat
    folder compiled the same way (single rounding is baked into the library's mq_requant.h)."""
    x = np.load(ASSETS / "digits_test.npz")["input"][:16]
    flat = folders / "flat_single"
    api.compile_model(ASSETS / "digits_cnn.onnx", ASSETS / "digits_calib.npz", flat,
                      name="digits", rounding="single")
    a = api.run(folders / "ard", {"input": x}, raw=True)["probs"]
    b = api.run(flat, {"input": x}, raw=True)["probs"]
    np.testing.assert_array_equal(a, b)
