"""Emulated-target reports: flash/RAM split of a linked image, the integer-only symbol check
and the compile-only cross matrix. Builds through runtime/mcu.py."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ..errors import MicroqError
from . import cbuild, mcu

HARNESS_OBJECTS = {"harness.o", "startup.o", "vectors.o", "mq_semihost.o"}
# Output section (sections.ld) -> where its bytes live.
SECTION_HOME = {".text": "flash", ".ARM.exidx": "flash", ".data": "both", ".bss": "ram"}
FLOAT_HELPER = re.compile(r"^__aeabi_(?:[fd]\w+|\w+2[fd])$|^__\w+[sd]f\d?$|^__(?:float|fix)\w+$")
FORBIDDEN_CALL = re.compile(
    r"^_?_?(?:malloc|calloc|realloc|free|sbrk|_sbrk_r|\w*printf\w*|puts|putchar)(?:_r)?$"
)
CROSS_TARGETS = (*mcu.TARGETS, "rv32imc")


def map_contributions(map_file: Path) -> list[tuple[str, str, int]]:
    """(output section, object, bytes) for each input section of a GNU ld map file."""
    rows: list[tuple[str, str, int]] = []
    text = map_file.read_text()
    text = text[text.index("Linker script and memory map") :]
    out_section, pending = None, None
    for line in text.splitlines():
        m = re.match(r"^(\.\S+)", line)
        if m:
            out_section = m.group(1)
            continue
        m = re.match(r"^ (\.\S+|COMMON)\s*$", line)
        if m:
            pending = m.group(1)
            continue
        m = re.match(r"^ (\.\S+|COMMON)?\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S.*)$", line)
        if m and (m.group(1) or pending) and out_section in SECTION_HOME:
            rows.append((out_section, m.group(3).strip(), int(m.group(2), 16)))
        pending = None
    return rows


def _category(obj: str, name: str) -> str:
    base = Path(obj).name
    if base == f"{name}_weights.o":
        return "weights"
    if base == f"{name}.o":
        return "model"
    if base in HARNESS_OBJECTS:
        return "harness"
    return "runtime"  # the mq_* kernels and libgcc's integer helpers they call


def size_report(model_dir: str | Path, target_name: str, dsp: bool | None = None) -> dict:
    """Flash and RAM of the linked image (arm-none-eabi-size) split into runtime code, model
    code, weights, arena and stack. The stack is measured: the harness paints the stack before
    one inference (input: zero points) and finds the deepest word written."""
    model_dir = Path(model_dir).resolve()
    meta = mcu.load_meta(model_dir)
    tgt = mcu.target(target_name)
    elf = mcu.build(model_dir, target_name, dsp)
    sections = mcu.section_sizes(elf)
    split = {"flash": {}, "ram": {}}
    for out_section, obj, size in map_contributions(elf.with_suffix(".map")):
        cat = _category(obj, meta["name"])
        home = SECTION_HOME[out_section]
        if home in ("flash", "both"):
            split["flash"][cat] = split["flash"].get(cat, 0) + size
        if home in ("ram", "both"):
            split["ram"][cat] = split["ram"].get(cat, 0) + size
    zeros = {
        s["name"]: np.full((1, *s["shape"][1:]), s["zero_point"],
                           dtype=np.int16 if s.get("dtype") == "int16" else np.int8)
        for s in meta["inputs"]
    }
    data, n = mcu.pack_inputs(meta, zeros)
    _, stats = mcu.run_elf(tgt, elf, meta, data, n, timeout=60.0)
    stack = stats[2]
    flash_total = sum(sections.get(s, 0) for s in (".text", ".ARM.exidx", ".data"))
    static_ram = sections.get(".data", 0) + sections.get(".bss", 0)
    f, r = split["flash"], split["ram"]
    flash = {
        "runtime_code": f.get("runtime", 0),
        "model_code": f.get("model", 0),
        "weights": f.get("weights", 0),
    }
    flash["harness"] = flash_total - sum(flash.values())  # startup, semihosting, alignment
    ram = {"arena": r.get("model", 0), "runtime": r.get("runtime", 0) + r.get("weights", 0)}
    ram["harness"] = static_ram - sum(ram.values())  # sample buffers, alignment
    ram["stack"] = stack
    return {
        "model": meta["name"],
        "target": tgt.name,
        "board": tgt.board,
        "flash": {**flash, "total": flash_total, "available": tgt.flash[1]},
        "ram": {**ram, "total": static_ram + stack, "available": tgt.ram[1]},
        "sections": sections,
        "stack_method": "painted on the emulator, one inference",
    }


def check_integer_only(model_dir: str | Path) -> list[str]:
    """Symbols of the model linked for cortex-m0plus (with newlib and libm available, so any
    dependency is pulled in and visible) that betray float or heap or stdio use: soft-float
    helpers (__aeabi_f*, __aeabi_d*, __aeabi_*2f, __addsf3...), malloc/free, printf/puts."""
    model_dir = Path(model_dir).resolve()
    meta = mcu.load_meta(model_dir)
    tgt = mcu.TARGETS["cortex-m0plus"]
    gcc = mcu.tool("arm-none-eabi-gcc")
    flags = mcu.model_cflags(meta, tgt, None)
    with tempfile.TemporaryDirectory(prefix="mq_intcheck") as d:
        cwd = Path(d)
        objs = mcu.compile_objects(gcc, flags, model_dir, meta, cwd, f"{model_dir} (m0plus)")
        libs = ("-nostartfiles", "--specs=nosys.specs",
                "-Wl,--start-group", "-lc", "-lm", "-lgcc", "-Wl,--end-group")
        mcu.link(gcc, flags, objs, cwd, mcu.big_script(tgt, cwd), "check.elf", libs)
        nm = mcu.run_tool([mcu.tool("arm-none-eabi-nm"), "check.elf"], cwd, "nm")
    names = {line.split()[-1] for line in nm.splitlines() if line.strip()}
    return sorted(n for n in names if FLOAT_HELPER.match(n) or FORBIDDEN_CALL.match(n))


def cross_compile(model_dir: str | Path, target_name: str) -> list[str]:
    """Compile every .c of the folder (no link) for one entry of CROSS_TARGETS with -std=c99
    -Wall -Wextra -Werror -pedantic; returns the object names. A warning is a MicroqError.

    Objects are cached by content (compiler, flags, the source and every header it includes,
    as cbuild.build_executable does for host objects): the same runtime file in several model
    folders compiles once per target. Only an object that compiled warning-free with -Werror
    is ever cached, so a cache hit means that exact input is warning-free with these flags."""
    model_dir = Path(model_dir).resolve()
    meta = mcu.load_meta(model_dir)
    if target_name == "rv32imc":
        cc = mcu.tool("riscv64-unknown-elf-gcc")
        flags = [*mcu.RISCV_CFLAGS, *mcu.COMMON_CFLAGS]
        if meta.get("rounding") == "single":
            flags.append("-DMQ_SINGLE_ROUNDING=1")
    else:
        cc = mcu.tool("arm-none-eabi-gcc")
        flags = mcu.model_cflags(meta, mcu.target(target_name), None)
    sources, includes = mcu.model_build_inputs(model_dir, meta)
    if not sources:
        raise MicroqError(f"{model_dir}: no .c files to compile")
    incs = [Path(i).resolve() for i in includes]
    cache = cbuild.cache_dir() / "cross"
    todo: dict[Path, Path] = {}  # source -> its cached object path, for the misses
    for src in (Path(s).resolve() for s in sources):
        obj = cache / f"{src.stem}-{_object_key(cc, flags, src, incs)}.o"
        if not obj.exists():
            todo[src] = obj
    if todo:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="mq_cross", dir=cache) as d:
            mcu.run_tool([cc, *flags, *(f"-I{i}" for i in incs), "-c", *map(str, todo)],
                         Path(d), f"compiling {model_dir} for {target_name}")
            for src, obj in todo.items():
                os.replace(Path(d) / f"{src.stem}.o", obj)  # atomic: never half-written
    return sorted(Path(s).with_suffix(".o").name for s in sources)


def _object_key(cc: str, flags: list[str], src: Path, includes: list[Path]) -> str:
    st = os.stat(cc)
    h = hashlib.sha256("\0".join([cc, str(st.st_size), str(st.st_mtime_ns), *flags]).encode())
    for f in (src, *cbuild._included(src, includes)):
        h.update(b"\0" + f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]
