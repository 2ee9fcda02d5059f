"""Every kernel case of tests/test_kernel_*.py (named, random, CMSIS-NN conformance, bad
arguments) on the emulated Cortex-M4, with the DSP fast paths (__ARM_FEATURE_DSP,
c_runtime/src/mq_dsp.h) and without them (-DMQ_NO_DSP=1), in both rounding modes: bit-exact
with the recorded numpy-reference results (tests/case_tables.py).

One image per build and one QEMU run per image: the case table is compiled once per rounding
mode (at -O0, it is mostly data) and linked with the runtime built at the production flags
(runtime/mcu.py's COMMON_CFLAGS) and c_runtime/targets/case_harness.c.

Needs gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm: skipped without them,
a failure under CI=true.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from case_tables import TARGETS, case_tables, check_report
from conftest import IN_CI, REPO
from microq.runtime import cbuild, mcu, profile

RUNTIME = REPO / "c_runtime"
TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-objdump", "qemu-system-arm")
TARGET = mcu.TARGETS["cortex-m4"]


def need_tools() -> None:
    missing = [n for n in TOOLS if shutil.which(n) is None]
    if missing:
        msg = (f"{', '.join(missing)} not installed: apt-get install -y "
               f"--no-install-recommends {mcu.ARM_PACKAGES}")
        if IN_CI:
            pytest.fail(msg + " (under CI=true this is a failure)")
        pytest.skip(msg)


def _digest(flags: list[str], files: list[Path]) -> str:
    h = hashlib.sha256(" ".join(flags).encode())
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _compile(gcc: str, flags: list[str], sources: list[Path], incs: list[Path], tag: str) -> Path:
    """Objects of `sources` in a cached folder (by content and flags); returns the folder."""
    headers = [h for d in incs for h in sorted(d.glob("*.h"))]
    out = cbuild.cache_dir() / "mcu_cases" / f"{tag}-{_digest(flags, [*sources, *headers])}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name, dir=out.parent))
    try:
        mcu.run_tool([gcc, *flags, *mcu.BUILD_CFLAGS, *[f"-I{d}" for d in incs], "-c",
                      *map(str, sources)], tmp, f"compiling {tag} for {TARGET.name}")
        try:
            os.replace(tmp, out)
        except OSError:  # built by another worker meanwhile
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def build_image(table, dsp: bool) -> tuple[Path, Path]:
    """(ELF, folder of the runtime objects) of one case-table image."""
    gcc = mcu.tool("arm-none-eabi-gcc")
    defines = [f"-D{k}={v}" for k, v in table.defines.items()]
    flags = [*TARGET.cflags, *mcu.COMMON_CFLAGS, *defines, *([] if dsp else ["-DMQ_NO_DSP=1"])]
    incs = [RUNTIME / "include", RUNTIME / "src", TARGETS]
    runtime = sorted((RUNTIME / "src").glob("*.c"))
    harness = [TARGETS / s for s in ("startup.c", "mq_semihost.c", "vectors.S", "case_harness.c")]
    rt = _compile(gcc, flags, runtime + harness, incs, f"runtime-{'dsp' if dsp else 'nodsp'}")
    plain = [*TARGET.cflags, "-std=c99", "-O0", "-Wall", "-Wextra", "-Werror", *defines]
    cases = _compile(gcc, plain, [table.source], incs, f"cases-{table.variant}")
    scripts = [TARGETS / "mps2_cases.ld", TARGETS / "sections.ld"]
    elf_dir = cbuild.cache_dir() / "mcu_cases" / f"elf-{_digest([str(rt), str(cases)], scripts)}"
    elf = elf_dir / "cases.elf"
    if not elf.exists():
        tmp = Path(tempfile.mkdtemp(prefix=elf_dir.name, dir=elf_dir.parent))
        try:
            objs = sorted(str(p) for d in (rt, cases) for p in d.glob("*.o"))
            mcu.link(gcc, flags, objs, tmp, "mps2_cases.ld", "cases.elf")
            try:
                os.replace(tmp, elf_dir)
            except OSError:
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return elf, rt


@pytest.fixture(scope="module")
def tables():
    need_tools()
    return case_tables()


@pytest.mark.parametrize("dsp", [True, False], ids=["dsp", "portable"])
@pytest.mark.parametrize("variant", ["double", "single"])
def test_m4_runs_every_kernel_case_bit_exact(tables, variant, dsp):
    table = tables[variant]
    elf, _ = build_image(table, dsp)
    cmd = mcu.qemu_command(TARGET, elf)
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{elf}: the emulated case run did not finish in 300 s")
    where = f"Cortex-M4 {'DSP' if dsp else 'portable'} build, {variant} rounding"
    assert "guest fault" not in p.stderr, f"{where}: {p.stderr[-2000:]}"
    check_report(table, p.returncode, p.stdout + p.stderr, where)


def test_m4_case_images_differ_in_the_dsp_path(tables):
    """The DSP image's kernels really use SMLAD code and the portable one's none."""
    need_tools()
    mnemonics = {}
    for dsp in (True, False):
        _, rt = build_image(tables["double"], dsp)
        mnemonics[dsp] = {m for obj in ("mq_conv.o", "mq_fc.o")
                          for insns in profile.disassemble(rt / obj).values()
                          for _, m, _ in insns}
    assert {"smlad", "sxtab16", "sxtb16"} <= mnemonics[True]
    assert not {"smlad", "sxtab16"} & mnemonics[False]
