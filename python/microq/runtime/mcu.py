"""Emulated Cortex-M runner: builds a generated folder with arm-none-eabi-gcc and runs it in QEMU.

The project's own startup, linker scripts and semihosting harness (c_runtime/targets) — no
vendor SDK. Builds are cached by content (not written into the model folder); every run is
under a timeout. Size report and integer-only check: runtime/mcu_size.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MicroqError
from . import cbuild
from .host import load_meta as host_load_meta
from .host import sample_shape
from .locate import targets_dir

TARGETS_DIR = targets_dir()  # runtime/locate.py: checkout or installed wheel
ARM_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
RISCV_PACKAGES = "gcc-riscv64-unknown-elf"
EXIT_IO, EXIT_STATUS, EXIT_FAULT = 2, 3, 70  # c_runtime/targets/mq_target.h
STATUS_NAMES = {1: "MQ_ERR_ARG", 2: "MQ_ERR_SIZE"}
COMMON_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic")
BUILD_CFLAGS = ("-ffunction-sections", "-fdata-sections")
HARNESS_SOURCES = ("startup.c", "mq_semihost.c", "harness.c", "vectors.S")
IMAGE_SECTIONS = (".text", ".ARM.exidx", ".data", ".bss", ".stack")  # sections.ld


@dataclass(frozen=True)
class Target:
    name: str
    board: str  # qemu -M
    cflags: tuple[str, ...]
    linker_script: str  # in c_runtime/targets
    flash: tuple[int, int]  # origin, bytes
    ram: tuple[int, int]
    dsp: bool  # __ARM_FEATURE_DSP is defined for these flags


_MPS2_FLASH, _MPS2_RAM = (0x0, 4 << 20), (0x20000000, 4 << 20)
TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("cortex-m0plus", "microbit", ("-mcpu=cortex-m0plus", "-mthumb"), "microbit.ld",
               (0x0, 256 << 10), (0x20000000, 16 << 10), False),
        Target("cortex-m3", "mps2-an385", ("-mcpu=cortex-m3", "-mthumb"), "mps2.ld",
               _MPS2_FLASH, _MPS2_RAM, False),
        Target("cortex-m4", "mps2-an386",
               ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
               "mps2.ld", _MPS2_FLASH, _MPS2_RAM, True),
        Target("cortex-m7", "mps2-an500",
               ("-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-d16", "-mfloat-abi=hard"),
               "mps2.ld", _MPS2_FLASH, _MPS2_RAM, True),
        Target("cortex-m33", "mps2-an505",
               ("-mcpu=cortex-m33", "-mthumb", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard"),
               "an505.ld", (0x10000000, 4 << 20), (0x38000000, 2 << 20), True),
        Target("cortex-m55", "mps3-an547", ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"),
               "an547.ld", (0x10000000, 512 << 10), (0x30000000, 512 << 10), True),
    )
}
# Cortex-M0+ builds too big for the micro:bit's 16 KiB, for measurement only (tools/bench.py):
# the ARMv6-M image runs on the Cortex-M3 board (a superset ISA), so the executed instruction
# stream, and the counts, are the M0+ build's. Not a CLI target.
BENCH_TARGETS: dict[str, Target] = {
    "cortex-m0plus-mps2": Target("cortex-m0plus-mps2", "mps2-an385",
                                 ("-mcpu=cortex-m0plus", "-mthumb"), "mps2.ld", _MPS2_FLASH,
                                 _MPS2_RAM, False),
}
# Compile-only targets of the cross-compile matrix (no board to run on).
RISCV_CFLAGS = ("-march=rv32imc", "-mabi=ilp32", "-ffreestanding")


def target(name: str) -> Target:
    if name in BENCH_TARGETS:
        return BENCH_TARGETS[name]
    if name not in TARGETS:
        raise MicroqError(f"unknown target '{name}'; choose one of: host, {', '.join(TARGETS)}")
    return TARGETS[name]


def tool(name: str) -> str:
    """Path of a toolchain program, or a MicroqError naming the Debian packages to install."""
    path = shutil.which(name)
    if path is None:
        pkgs = RISCV_PACKAGES if name.startswith("riscv") else ARM_PACKAGES
        raise MicroqError(
            f"{name} not found on PATH; install the toolchain: "
            f"apt-get install -y --no-install-recommends {pkgs}"
        )
    return path


def run_tool(cmd: list[str], cwd: Path, what: str, timeout: float = 300) -> str:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        name = Path(cmd[0]).name
        raise MicroqError(f"{what}: {name} did not finish in {timeout:.0f} s") from None
    if p.returncode != 0:
        raise MicroqError(f"{what} failed:\n{(p.stderr or p.stdout).strip()[-3000:]}")
    return p.stdout


def model_build_inputs(model_dir: Path, meta: dict) -> tuple[list[Path], list[Path]]:
    """(sources, include folders) of a model folder; an external-runtime folder adds the
    installed runtime's files it needs (runtime/locate.py)."""
    from .locate import build_inputs

    return build_inputs(Path(model_dir), meta)


load_meta = host_load_meta  # the one NAME.json reader (runtime/host.py)


def _itemsize(spec: dict) -> int:
    """Bytes per element of an I/O tensor: 2 for a 16x8 (int16) one, else 1."""
    return 2 if spec.get("dtype") == "int16" else 1


def _model_glue(meta: dict) -> str:
    """mq_model.h: what the harness needs to know about the model (see harness.c)."""
    ins = [int(s["size"]) * _itemsize(s) for s in meta["inputs"]]  # bytes
    outs = [int(s["size"]) * _itemsize(s) for s in meta["outputs"]]
    return "\n".join([
        "/* Generated by microq.runtime.mcu for c_runtime/targets/harness.c. */",
        f'#include "{meta["name"]}.h"',
        f"#define MQ_MODEL_INVOKE {meta['name']}_invoke_multi",
        f"#define MQ_MODEL_NUM_INPUTS {len(ins)}",
        f"#define MQ_MODEL_NUM_OUTPUTS {len(outs)}",
        f"#define MQ_MODEL_INPUT_SIZES {{{', '.join(map(str, ins))}}}",
        f"#define MQ_MODEL_OUTPUT_SIZES {{{', '.join(map(str, outs))}}}",
        f"#define MQ_MODEL_INPUT_BYTES {sum(ins)}",
        f"#define MQ_MODEL_OUTPUT_BYTES {sum(outs)}",
        "",
    ])


def model_cflags(meta: dict, tgt: Target, dsp: bool | None) -> list[str]:
    """Target flags plus the model's build switches. dsp=False builds the portable kernels
    (-DMQ_NO_DSP=1) on a DSP core; None takes the core's default."""
    if dsp and not tgt.dsp:
        raise MicroqError(f"{tgt.name} has no DSP extension; build it with dsp=False")
    flags = [*tgt.cflags, *COMMON_CFLAGS]
    if meta.get("rounding") == "single":
        flags.append("-DMQ_SINGLE_ROUNDING=1")
    if tgt.dsp and dsp is False:
        flags.append("-DMQ_NO_DSP=1")
    return flags


def _digest(parts: list[str], files: list[Path]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() + b"\0")
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def build(model_dir: str | Path, target_name: str, dsp: bool | None = None) -> Path:
    """Compile and link the model folder for `target_name`; returns the ELF (cached by content,
    in the microq cache, never in model_dir). A model too big for the board is a MicroqError
    that gives the sizes needed and available."""
    model_dir = Path(model_dir).resolve()
    meta = load_meta(model_dir)
    tgt = target(target_name)
    gcc = tool("arm-none-eabi-gcc")
    flags = model_cflags(meta, tgt, dsp)
    sources, includes = model_build_inputs(model_dir, meta)
    inputs = sorted({*sources, *(h for d in includes for h in d.glob("*.h"))})
    inputs += sorted(p for p in TARGETS_DIR.iterdir() if p.is_file())
    glue = _model_glue(meta)
    key = _digest([tgt.name, " ".join(flags), glue], inputs)
    out = cbuild.cache_dir() / "mcu" / f"{meta['name']}-{tgt.name}-{key}"
    elf = out / "prog.elf"
    if elf.exists():
        return elf
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name, dir=out.parent))
    try:
        objs = compile_objects(gcc, flags, model_dir, meta, tmp, f"{model_dir} for {tgt.name}")
        try:
            link(gcc, flags, objs, tmp, tgt.linker_script, "prog.elf")
        except MicroqError as e:
            if "overflowed" not in str(e):
                raise
            raise MicroqError(_too_big_message(gcc, flags, objs, tmp, tgt, meta["name"])) from None
        try:
            os.replace(tmp, out)
        except OSError:  # another process built the same key first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return elf


def compile_objects(gcc: str, flags: list[str], model_dir: Path, meta: dict, cwd: Path,
                    what: str) -> list[str]:
    """Compile the model folder and the harness into `cwd`; returns the object names."""
    (cwd / "mq_model.h").write_text(_model_glue(meta))
    model_sources, model_incs = model_build_inputs(model_dir, meta)
    sources = model_sources + [TARGETS_DIR / s for s in HARNESS_SOURCES]
    incs = [f"-I{Path(d).resolve()}" for d in (cwd, *model_incs, TARGETS_DIR)]
    run_tool([gcc, *flags, *BUILD_CFLAGS, *incs, "-c", *map(str, sources)], cwd,
              f"compiling {what}")
    return sorted(p.name for p in cwd.glob("*.o"))


def link(gcc: str, flags: list[str], objs: list[str], cwd: Path, script: str, elf: str,
         libs: tuple[str, ...] = ("-nostdlib", "-lgcc")) -> None:
    run_tool([gcc, *flags, "-Wl,--gc-sections", f"-L{TARGETS_DIR}", "-T", script,
               f"-Wl,-Map={Path(elf).stem}.map", "-o", elf, *objs, *libs], cwd,
              f"linking {elf}")


def section_sizes(elf: Path) -> dict[str, int]:
    """{section: bytes} of the allocated sections, from arm-none-eabi-size -A."""
    text = run_tool([tool("arm-none-eabi-size"), "-A", str(elf)], elf.parent, "size")
    sizes = {}
    for line in text.splitlines():
        m = re.match(r"^(\.\S+)\s+(\d+)\s+(\d+)\s*$", line)
        if m and m.group(1) in IMAGE_SECTIONS:
            sizes[m.group(1)] = int(m.group(2))
    return sizes


def flash_ram(sizes: dict[str, int]) -> tuple[int, int]:
    """(flash, RAM) bytes of a linked image; RAM includes the reserved minimum stack."""
    flash = sum(sizes.get(s, 0) for s in (".text", ".ARM.exidx", ".data"))
    ram = sum(sizes.get(s, 0) for s in (".data", ".bss", ".stack"))
    return flash, ram


def big_script(tgt: Target, cwd: Path) -> str:
    """A linker script with the board's origins and 128 MiB regions: measures what a model
    needs when it does not fit."""
    (cwd / "big.ld").write_text(
        f"MEMORY\n{{\n    FLASH (rx) : ORIGIN = {tgt.flash[0]:#x}, LENGTH = 128M\n"
        f"    RAM (rwx) : ORIGIN = {tgt.ram[0]:#x}, LENGTH = 128M\n}}\n\nINCLUDE sections.ld\n"
    )
    return "big.ld"


def _too_big_message(gcc, flags, objs, cwd: Path, tgt: Target, name: str) -> str:
    link(gcc, flags, objs, cwd, big_script(tgt, cwd), "big.elf")
    flash, ram = flash_ram(section_sizes(cwd / "big.elf"))
    parts = []
    if ram > tgt.ram[1]:
        parts.append(f"RAM needs {ram} B (data, bss incl. arena, 2048 B minimum stack), "
                     f"the board has {tgt.ram[1]} B")
    if flash > tgt.flash[1]:
        parts.append(f"flash needs {flash} B, the board has {tgt.flash[1]} B")
    return (f"model {name} does not fit {tgt.name} ({tgt.board}): {'; '.join(parts)}. "
            "Choose a bigger target or a smaller model.")


def pack_inputs(meta: dict, inputs: dict[str, np.ndarray]) -> tuple[bytes, int]:
    """Samples back to back, each the model's inputs in order (the harness's mq_in.bin)."""
    xs, n = [], None
    for spec in meta["inputs"]:
        if spec["name"] not in inputs:
            raise MicroqError(f"model {meta['name']}: missing input '{spec['name']}'")
        x = np.asarray(inputs[spec["name"]])
        want = sample_shape(spec["shape"])
        dt = np.dtype(np.int16 if _itemsize(spec) == 2 else np.int8)
        if x.dtype != dt or x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
            raise MicroqError(f"model {meta['name']}: input '{spec['name']}' must be {dt.name} "
                              f"(N, {', '.join(map(str, want))}), got {x.dtype} {x.shape}")
        if n is not None and x.shape[0] != n:
            raise MicroqError(f"model {meta['name']}: inputs have different batch sizes")
        n = x.shape[0]
        xs.append(np.ascontiguousarray(x).reshape(n, -1).view(np.int8))  # bytes
    n = n or 0
    return (np.concatenate(xs, axis=1).tobytes() if n else b""), n


def qemu_command(tgt: Target, elf: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return [tool("qemu-system-arm"), "-M", tgt.board, "-nographic", "-monitor", "none",
            "-semihosting-config", "enable=on,target=native", "-kernel", str(elf), *extra]


def run_elf(tgt: Target, elf: Path, meta: dict, data: bytes, n: int, timeout: float,
            extra: tuple[str, ...] = ()) -> tuple[bytes, list[int]]:
    """Run the harness on `data`; returns (mq_out.bin, [samples, status, stack bytes])."""
    with tempfile.TemporaryDirectory(prefix="mq_qemu") as d:
        work = Path(d)
        (work / "mq_in.bin").write_bytes(data)
        cmd = qemu_command(tgt, elf, extra)
        where = f"model {meta['name']} on {tgt.name} ({tgt.board})"
        try:
            p = subprocess.run(cmd, cwd=work, stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise MicroqError(f"{where}: timeout, the emulated run did not finish within "
                              f"{timeout:g} s (pass a larger --timeout for big models or many "
                              "samples)") from None
        msg = (p.stderr + p.stdout).strip()[-2000:]
        if p.returncode == EXIT_FAULT:
            raise MicroqError(f"{where}: the guest faulted (HardFault): {msg}")
        stats_file = work / "mq_stats.bin"
        stats = list(np.frombuffer(stats_file.read_bytes(), "<u4")) if stats_file.exists() else []
        if p.returncode == EXIT_STATUS and len(stats) == 3:
            status = int(stats[1])
            raise MicroqError(f"{where}: a kernel returned {STATUS_NAMES.get(status, '?')} "
                              f"({status}) on sample {int(stats[0])}")
        if p.returncode != 0 or len(stats) != 3 or stats[0] != n:
            raise MicroqError(f"{where}: the emulated run failed (QEMU exit status "
                              f"{p.returncode}): {msg or 'no output'}")
        return (work / "mq_out.bin").read_bytes(), [int(s) for s in stats]


def run_int8(model_dir: str | Path, target_name: str, inputs: dict[str, np.ndarray],
             dsp: bool | None = None, timeout: float = 60.0) -> dict[str, np.ndarray]:
    """Run N samples on the emulated core: inputs[name] is int8 (N, *physical[1:]); returns the
    outputs in the same form as the host runner (HostModel.run_int8)."""
    meta = load_meta(Path(model_dir))
    tgt = target(target_name)
    data, n = pack_inputs(meta, inputs)
    elf = build(model_dir, target_name, dsp)
    raw, _ = run_elf(tgt, elf, meta, data, n, timeout)
    flat = np.frombuffer(raw, dtype=np.int8).reshape(n, -1)
    outs, pos = {}, 0
    for spec in meta["outputs"]:
        size = int(spec["size"]) * _itemsize(spec)  # bytes
        rows = np.ascontiguousarray(flat[:, pos : pos + size])
        if _itemsize(spec) == 2:
            rows = rows.view("<i2")  # the little-endian Cortex-M's int16
        outs[spec["name"]] = rows.reshape(n, *sample_shape(spec["shape"])).astype(
            rows.dtype.newbyteorder("="))
        pos += size
    return outs

