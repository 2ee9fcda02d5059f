"""Does the model fit a real part? Flash and RAM of common microcontrollers (from their
datasheets) against what the model needs: runtime code + model code + weights in flash, arena +
runtime data + measured stack in RAM (the emulated core of the same architecture measures them;
the test harness's own bytes are left out).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import MicroqError
from . import mcu

KIB = 1024


@dataclass(frozen=True)
class Board:
    key: str
    part: str
    core: str  # an emulated target of the same instruction set, or "rv32imc"
    flash: int  # bytes
    ram: int  # bytes
    note: str  # where the numbers come from


BOARDS: dict[str, Board] = {b.key: b for b in (
    Board("stm32f411", "STM32F411xE", "cortex-m4", 512 * KIB, 128 * KIB,
          "Cortex-M4F 100 MHz; 512 KB flash, 128 KB SRAM (the xC variant has 256 KB flash)"),
    Board("stm32l4r5", "STM32L4R5xI", "cortex-m4", 2048 * KIB, 640 * KIB,
          "Cortex-M4F 120 MHz; 2 MB flash, 640 KB SRAM (SRAM1 192 + SRAM2 64 + SRAM3 384 KB)"),
    Board("nrf52840", "nRF52840", "cortex-m4", 1024 * KIB, 256 * KIB,
          "Cortex-M4F 64 MHz; 1 MB flash, 256 KB RAM"),
    Board("rp2040", "RP2040 (Raspberry Pi Pico)", "cortex-m0plus", 2048 * KIB, 264 * KIB,
          "Cortex-M0+ 133 MHz; 264 KB SRAM; no internal flash: the Pico's 2 MB QSPI flash"),
    Board("esp32c3", "ESP32-C3 (4 MB flash)", "rv32imc", 4096 * KIB, 384 * KIB,
          "RISC-V rv32imc 160 MHz; 400 KB SRAM of which 16 KB is cache; 4 MB flash "
          "(ESP32-C3FH4 / common modules)"),
    Board("microbit", "micro:bit v2 (nRF52833)", "cortex-m4", 512 * KIB, 128 * KIB,
          "Cortex-M4F 64 MHz; 512 KB flash, 128 KB RAM"),
    Board("microbit-v1", "micro:bit v1 (nRF51822)", "cortex-m0plus", 256 * KIB, 16 * KIB,
          "Cortex-M0 16 MHz; 256 KB flash, 16 KB RAM (the emulated cortex-m0plus board)"),
)}


def board(key: str) -> Board:
    if key not in BOARDS:
        raise MicroqError(f"unknown board '{key}'; choose one of: {', '.join(BOARDS)}")
    return BOARDS[key]


def _linked_split(model_dir: Path, core: str) -> tuple[dict, dict]:
    """Flash and static RAM per category of an image linked with 128 MiB regions (no run)."""
    from .mcu_size import SECTION_HOME, _category, map_contributions

    meta = mcu.load_meta(model_dir)
    tgt = mcu.target(core)
    gcc = mcu.tool("arm-none-eabi-gcc")
    flags = mcu.model_cflags(meta, tgt, None)
    flash: dict[str, int] = {}
    ram: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="mq_board") as d:
        cwd = Path(d)
        objs = mcu.compile_objects(gcc, flags, model_dir, meta, cwd, f"{model_dir} ({core})")
        mcu.link(gcc, flags, objs, cwd, mcu.big_script(tgt, cwd), "board.elf")
        for section, obj, size in map_contributions(cwd / "board.map"):
            cat, home = _category(obj, meta["name"]), SECTION_HOME[section]
            if home in ("flash", "both"):
                flash[cat] = flash.get(cat, 0) + size
            if home in ("ram", "both"):
                ram[cat] = ram.get(cat, 0) + size
    return flash, ram


def _riscv_sizes(model_dir: Path) -> tuple[dict, dict]:
    """Flash/RAM of the model's objects compiled for rv32imc (before linking: an upper bound,
    unused functions of a runtime file are not removed)."""
    meta = mcu.load_meta(model_dir)
    cc = mcu.tool("riscv64-unknown-elf-gcc")
    size = mcu.tool("riscv64-unknown-elf-size")
    flags = [*mcu.RISCV_CFLAGS, *mcu.COMMON_CFLAGS]
    if meta.get("rounding") == "single":
        flags.append("-DMQ_SINGLE_ROUNDING=1")
    sources, includes = mcu.model_build_inputs(model_dir, meta)
    flash: dict[str, int] = {}
    ram: dict[str, int] = {}
    name = meta["name"]
    with tempfile.TemporaryDirectory(prefix="mq_board_rv") as d:
        cwd = Path(d)
        mcu.run_tool([cc, *flags, *(f"-I{i.resolve()}" for i in includes), "-c",
                      *map(str, sources)], cwd, f"compiling {model_dir} for rv32imc")
        for obj in sorted(cwd.glob("*.o")):
            cat = "weights" if obj.name == f"{name}_weights.o" else (
                "model" if obj.name == f"{name}.o" else "runtime")
            for line in mcu.run_tool([size, "-A", str(obj)], cwd, "size").splitlines():
                m = re.match(r"^(\.\S+)\s+(\d+)", line)
                if not m:
                    continue
                sec, n = m.group(1), int(m.group(2))
                if re.match(r"^\.(text|rodata|srodata)", sec):
                    flash[cat] = flash.get(cat, 0) + n
                elif re.match(r"^\.(s?data)", sec):
                    flash[cat] = flash.get(cat, 0) + n
                    ram[cat] = ram.get(cat, 0) + n
                elif re.match(r"^\.(s?bss)", sec):
                    ram[cat] = ram.get(cat, 0) + n
    return flash, ram


def _stack_estimate(model_dir: Path) -> tuple[int | None, str]:
    """The stack measured on the emulated Cortex-M4 (4 MiB RAM): an estimate for a core whose
    own emulated board is too small or absent (the kernels' frames are similar in size)."""
    from .mcu_size import size_report

    try:
        return size_report(model_dir, "cortex-m4")["ram"]["stack"], "estimated: measured on " \
            "the emulated cortex-m4"
    except MicroqError as e:
        if "does not fit" not in str(e):
            raise
        return None, "not measured (too big for every emulated board); add it yourself"


def fit_report(model_dir: str | Path, key: str) -> dict:
    """What the model needs on board `key` and whether it fits, by how many bytes over."""
    b = board(key)
    model_dir = Path(model_dir).resolve()
    stack, stack_note = None, ""
    if b.core == "rv32imc":
        flash, ram = _riscv_sizes(model_dir)
        stack, stack_note = _stack_estimate(model_dir)
        method = "rv32imc objects before linking (upper bound)"
    else:
        from .mcu_size import size_report

        try:
            rep = size_report(model_dir, b.core)
            flash = {"runtime": rep["flash"]["runtime_code"], "model": rep["flash"]["model_code"],
                     "weights": rep["flash"]["weights"]}
            ram = {"model": rep["ram"]["arena"], "runtime": rep["ram"]["runtime"]}
            stack = rep["ram"]["stack"]
            stack_note = f"measured on the emulated {b.core}"
        except MicroqError as e:
            if "does not fit" not in str(e):
                raise
            flash, ram = _linked_split(model_dir, b.core)
            stack, stack_note = _stack_estimate(model_dir)
        method = f"linked for {b.core} (arm-none-eabi-gcc -O2), without the test harness"
    need_flash = sum(flash.get(c, 0) for c in ("runtime", "model", "weights"))
    arena = ram.get("model", 0)
    static = sum(ram.get(c, 0) for c in ("runtime", "model", "weights"))
    need_ram = static + (stack or 0)
    return {
        "model": mcu.load_meta(model_dir)["name"],
        "board": b.key,
        "part": b.part,
        "core": b.core,
        "datasheet": b.note,
        "method": method,
        "flash": {"runtime_code": flash.get("runtime", 0), "model_code": flash.get("model", 0),
                  "weights": flash.get("weights", 0), "total": need_flash,
                  "available": b.flash, "over": max(0, need_flash - b.flash)},
        "ram": {"arena": arena, "other_static": static - arena, "stack": stack,
                "total": need_ram, "available": b.ram, "over": max(0, need_ram - b.ram)},
        "stack_note": stack_note,
        "fits": need_flash <= b.flash and need_ram <= b.ram,
    }


def fit_lines(rep: dict) -> str:
    head = (f"{rep['model']} on {rep['part']} ({rep['core']}, {rep['flash']['available']:,} B "
            f"flash, {rep['ram']['available']:,} B RAM): "
            + ("fits" if rep["fits"] else "DOES NOT FIT"))
    lines = [head]
    f, r = rep["flash"], rep["ram"]
    stack = "?" if r["stack"] is None else f"{r['stack']:,}"
    for kind, part, detail in (
        ("flash", f, f"runtime {f['runtime_code']:,}, model {f['model_code']:,}, "
                     f"weights {f['weights']:,}"),
        ("RAM", r, f"arena {r['arena']:,}, other {r['other_static']:,}, stack {stack} "
                   f"({rep['stack_note']})"),
    ):
        pct = 100.0 * part["total"] / part["available"]
        over = f"  {part['over']:,} B over" if part["over"] else ""
        lines.append(f"  {kind:5} {part['total']:>9,} B of {part['available']:,} ({pct:.1f}%)"
                     f"{over}: {detail}")
    return "\n".join(lines)


def misfit_message(rep: dict) -> str:
    parts = []
    for kind in ("flash", "ram"):
        p = rep[kind]
        if p["over"]:
            parts.append(f"{'RAM' if kind == 'ram' else 'flash'} needs {p['total']:,} B, "
                         f"{p['over']:,} B more than the {p['available']:,} B it has")
    return (f"model {rep['model']} does not fit {rep['part']}: {'; '.join(parts)}. "
            "Choose a bigger part or a smaller model.")
