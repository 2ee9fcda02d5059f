"""The cycle estimate of `microq profile` (runtime/timing.py, the QEMU plugin's class counts).

Hand-written instruction sequences, assembled with arm-none-eabi-gcc and run under the counting
plugin, pin both halves: the plugin's decoding (class counts, taken branches, registers moved,
branch targets that straddle a word) and the timing tables (cycles computed by hand from the
TRM rows quoted in the comments). On the demo the class counts add up to the exact instruction
count and the estimate is reported per layer and in total, with --clock in milliseconds.

Needs gcc-arm-none-eabi and qemu-system-arm: skipped without them, a failure under CI=true.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IN_CI
from microq.runtime import mcu, profile, timing

TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-nm", "qemu-system-arm", "gcc")


def need_tools() -> None:
    missing = [n for n in TOOLS if shutil.which(n) is None]
    if missing:
        msg = (f"{', '.join(missing)} not installed: apt-get install -y "
               f"--no-install-recommends {mcu.ARM_PACKAGES}")
        if IN_CI:
            pytest.fail(msg + " (under CI=true this is a failure)")
        pytest.skip(msg)


# A bare image: vector table, registers set up, the measured code between the labels `start`
# and `stop`, then semihosting SYS_EXIT (0x18) with ADP_Stopped_ApplicationExit (status 0);
# any fault exits with status 1.
IMAGE = """
    .syntax unified
    .thumb
    .text
    .word {ram} + 0x1000
    .word reset + 1
    .rept 14
    .word fault + 1
    .endr
    .thumb_func
reset:
    movs r0, #0
    movs r4, #3
    movs r5, #7
    ldr r1, ={ram} + 0x100
    str r5, [r1]
    str r4, [r1, #4]
    b start
    .balign 4
start:
{body}
stop:
    movs r0, #0x18
    ldr r1, =0x20026
    bkpt 0xab
    .thumb_func
fault:
    movs r0, #0x18
    ldr r1, =0x20024
    bkpt 0xab
{funcs}
    .ltorg
"""

FUNCS = """
    .thumb_func
func_pop:
    push {lr}
    pop {pc}
    .thumb_func
func_bx:
    bx lr
"""

# Cortex-M4: every class of the table, pipelined and not, taken and not, one taken branch onto
# a 32-bit instruction at an address = 2 (mod 4).
M4_BODY = """
    movs r6, #3             @ alu
    ldr r1, ={ram} + 0x100  @ load: after an ALU instruction
    ldr r2, [r1]            @ load: its base is the previous load's destination
    ldr r3, [r1, #4]        @ load_pipe
    ldr r7, [r1, r0]        @ load_pipe (register offset)
    str r7, [r1, #8]        @ store_imm
    ldr r2, [r1]            @ load: after a store
    str r2, [r1, r0]        @ store_pipe: register offset right after a load
    str r2, [r1, r0]        @ store_reg: after a store
    ldrd r2, r3, [r1]       @ lsd
    push {r4, r5}           @ lsm, 2 registers
    pop {r4, r5}            @ lsm, 2 registers
    mul r2, r3, r2          @ mul
    smlad r2, r3, r4, r2    @ mul
    smlal r2, r3, r4, r5    @ mul
    sdiv r2, r5, r4         @ div
    cmp r0, #0              @ alu
    it eq                   @ alu
    moveq r2, r3            @ alu
    adds r7, r1, #4         @ alu
    ldr r2, [r7]            @ load, addressed by the ALU result just before: one stall cycle
loop:
    subs r6, #1             @ alu x3
    bne loop                @ bcond x3, taken twice
    b fwd                   @ b, taken
    nop
    .balign 4
fwd:
    bl func_pop             @ bl, taken; func_pop: push {lr} (lsm, 1 register), pop {pc}
    bl func_bx              @ bl, taken; func_bx: bx lr
    cbz r6, skip            @ cbz, taken (r6 == 0)
    nop
    .balign 4
skip:
    tbb [pc, r0]            @ tbb, taken (entry 0 jumps over the table)
tbl:
    .byte (t0 - tbl) / 2
    .byte 0
t0:
    b wtgt                  @ b, taken, onto a 32-bit instruction at 2 mod 4
    .balign 4
    nop
wtgt:
    add.w r0, r0, #0        @ alu
"""
M4_CLASSES = {"alu": 9, "load": 4, "load_pipe": 2, "store_imm": 1, "store_pipe": 1,
              "store_reg": 1, "lsd": 1, "lsm": 3, "mul": 3, "div": 1, "bcond": 3, "b": 2,
              "bl": 2, "bx": 1, "pop_pc": 1, "cbz": 1, "tbb": 1}
M4_TAKEN = {"bcond": 2, "b": 2, "bl": 2, "bx": 1, "pop_pc": 1, "cbz": 1, "tbb": 1}
M4_REGS = 6  # push/pop {r4, r5} 2 + 2, push {lr} 1, pop {pc} 1
# By hand from the Cortex-M4 TRM rows: alu 9x1 = 9; load 4x2 = 8 + 1 address stall (ldr after
# the adds that computed its base) = 9; load_pipe 2x1 = 2; str imm 1,
# pipelined 1, reg 2 = 4; ldrd 3; push/pop 3x1 + pop {pc} 1 + 6 registers + pop-pc refill 3 =
# 13; mul 3x1 + sdiv 12 = 15; bne 3 + 2 taken x P1 = 5; b 2 + 2 x P1 + 1 misaligned wide
# target = 5; bl 2 + 2 x P1 = 4; bx 1 + P2 = 3; cbz 1 + P1 = 2; tbb 2 + P3 = 5. Sum 79.
M4_CYCLES = 79

# Cortex-M0+ (ARMv6-M instructions only).
M0_BODY = """
    movs r6, #3             @ alu
    ldr r1, ={ram} + 0x100  @ load
    ldr r2, [r1]            @ load (depends on r1)
    ldr r3, [r1, #4]        @ load_pipe class: still 2 cycles on the M0+
    str r3, [r1, #8]        @ store_imm
    str r3, [r1, r0]        @ store_reg
    muls r2, r3, r2         @ mul
    push {r4, r5}           @ lsm, 2 registers
    pop {r4, r5}            @ lsm, 2 registers
loop:
    subs r6, #1             @ alu x3
    bne loop                @ bcond x3, taken twice
    b fwd                   @ b, taken
    nop
fwd:
    bl func_pop             @ bl; push {lr} (lsm, 1 register), pop {pc} (pop_pc, 1 register)
    bl func_bx              @ bl; bx lr
    ldmia r1!, {r2, r3}     @ lsm, 2 registers
"""
M0_CLASSES = {"alu": 4, "load": 2, "load_pipe": 1, "store_imm": 1, "store_reg": 1, "mul": 1,
              "lsm": 4, "pop_pc": 1, "bcond": 3, "b": 1, "bl": 2, "bx": 1}
M0_TAKEN = {"bcond": 2, "b": 1, "bl": 2, "bx": 1, "pop_pc": 1}
M0_REGS = 8
# By hand from the Cortex-M0+ TRM Table 3.1: alu 4; loads 3x2 = 6; stores 2x2 = 4; muls 1;
# push/pop/ldm 4 x (1 + N) with N = 2, 2, 1, 2 = 11; pop {pc} 3 + 1 = 4; bne 3 x 1 + 2 taken
# x 1 = 5; b 2; bl 2 x 3 = 6; bx 2. Sum 45. The M0+ has no misaligned-target penalty: `b fwd`
# and the return of pop {pc} land on the 32-bit BL at 2 mod 4 (counted as wide, costing 0).
M0_CYCLES = 45


def run_sequence(tmp_path: Path, target: str, body: str) -> dict:
    """Class counts of the instructions from `start` to `stop` of IMAGE on the emulated core."""
    tgt = mcu.target(target)
    src = tmp_path / "seq.S"
    ram = f"{tgt.ram[0]:#x}"
    src.write_text(IMAGE.format(body=body.replace("{ram}", ram), funcs=FUNCS, ram=ram))
    elf = tmp_path / "seq.elf"
    subprocess.run([mcu.tool("arm-none-eabi-gcc"), *tgt.cflags, "-nostdlib",
                    f"-Wl,-Ttext={tgt.flash[0]:#x}",
                    "-Wl,-e,reset", "-o", str(elf), str(src)], check=True, capture_output=True)
    syms = {parts[2]: int(parts[0], 16) for parts in
            (line.split() for line in subprocess.run(
                [mcu.tool("arm-none-eabi-nm"), str(elf)], check=True, capture_output=True,
                text=True).stdout.splitlines()) if len(parts) == 3}
    log = tmp_path / "counts.txt"
    markers = {syms["start"], syms["stop"]}
    p = subprocess.run(mcu.qemu_command(tgt, elf, profile.plugin_args(log, markers)),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode()[-500:]
    hits, total = profile.read_log(log)
    assert total is not None
    at = {addr: (count, cls) for addr, count, cls in hits}
    n = at[syms["stop"]][0] - at[syms["start"]][0]
    counts = timing.subtract(at[syms["stop"]][1], at[syms["start"]][1])
    assert sum(counts["classes"].values()) == n, "every instruction is in exactly one class"
    counts["instructions"] = n
    return counts


def nonzero(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}


@pytest.mark.parametrize("target, body, classes, taken, regs, wide, cycles", [
    ("cortex-m4", M4_BODY, M4_CLASSES, M4_TAKEN, M4_REGS, {"b": 1}, M4_CYCLES),
    ("cortex-m0plus", M0_BODY, M0_CLASSES, M0_TAKEN, M0_REGS, {"b": 1, "pop_pc": 1}, M0_CYCLES),
], ids=["m4", "m0plus"])
def test_hand_written_sequence_classes_and_cycles(tmp_path, target, body, classes, taken, regs,
                                                  wide, cycles):
    need_tools()
    counts = run_sequence(tmp_path, target, body)
    # the exact instruction count (the profile's figure of record) is the hand count: 37 on the
    # M4 sequence, 22 on the M0+ one (the functions' instructions included)
    assert counts["instructions"] == {"cortex-m4": 37, "cortex-m0plus": 22}[target]
    assert nonzero(counts["classes"]) == classes
    assert nonzero(counts["taken"]) == taken
    assert counts["regs"] == regs
    assert counts["agu"] == (1 if target == "cortex-m4" else 0)
    assert nonzero(counts["wide"]) == wide
    assert timing.estimate(counts, timing.core(target)) == cycles


def test_m33_uses_the_m4_table_and_says_so(tmp_path):
    need_tools()
    counts = run_sequence(tmp_path, "cortex-m33", M4_BODY)
    assert nonzero(counts["classes"]) == M4_CLASSES
    core = timing.core("cortex-m33")
    assert core.approximate and core.rows == timing.core("cortex-m4").rows
    assert timing.estimate(counts, core) == M4_CYCLES


def test_tables_cover_every_plugin_class_with_a_source():
    plugin = profile.PLUGIN_SOURCE.read_text()
    names = plugin[plugin.index("CLASS_NAMES[N_CLASSES] = {"):].split("};")[0]
    assert tuple(n.strip().strip('"') for n in names.split("{", 1)[1].split(",")
                 if n.strip()) == timing.CLASSES
    for name in ("cortex-m4", "cortex-m0plus", "cortex-m33"):
        core = timing.core(name)
        assert [r.cls for r in core.rows] == list(timing.CLASSES)
        assert all(r.source for r in core.rows)
    m4, m0 = timing.core("cortex-m4"), timing.core("cortex-m0plus")
    assert (m4.row("load").issue, m4.row("load_pipe").issue, m4.row("store_imm").issue) == (2, 1, 1)
    assert (m0.row("load").issue, m0.row("load_pipe").issue, m0.row("bl").issue
            + m0.row("bl").refill) == (2, 2, 3)
    assert timing.core("cortex-m7") is None


def test_demo_profile_reports_cycles_consistent_with_instructions(compiled_demo):
    """The class counts of the whole inference add up to the exact instruction count (plus the
    call that enters it), every layer has an estimate, and the estimate is at least one cycle
    per instruction (no class costs less than 1 on the M4)."""
    need_tools()
    rep = profile.profile(compiled_demo, "cortex-m4")
    cls = rep["instruction_classes"]
    assert sum(cls["classes"].values()) == rep["total_instructions"] + 1
    assert rep["estimated_cycles"] == sum(rep["cycles_by_class"].values())
    assert rep["estimated_cycles"] > rep["total_instructions"]
    kernels = [row for row in rep["layers"] if row["instructions"]]
    assert all(row["cycles"] > row["instructions"] for row in kernels)
    assert sum(row["cycles"] for row in rep["layers"]) < rep["estimated_cycles"]
    assert all(cls["taken"][b] <= cls["classes"][b] for b in timing.BRANCHES)


def test_cli_profile_clock_prints_milliseconds(compiled_demo):
    need_tools()
    env_py = [sys.executable, "-m", "microq", "profile", str(compiled_demo), "--target",
              "cortex-m0plus"]
    p = subprocess.run(env_py + ["--clock", "64", "--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["clock_mhz"] == 64
    assert rep["estimated_ms"] == round(rep["estimated_cycles"] / 64e3, 4)
    assert all("estimated_ms" in row for row in rep["layers"])
    text = subprocess.run(env_py + ["--clock", "64"], capture_output=True, text=True)
    assert text.returncode == 0 and " ms at 64 MHz" in text.stdout
    bad = subprocess.run(env_py + ["--clock", "0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--clock" in bad.stderr and "Traceback" not in bad.stderr


def test_m0plus_bench_board_counts_equal_the_microbit(compiled_demo):
    """tools/bench.py runs M0+ builds that need more than 16 KiB on the Cortex-M3 board
    (cortex-m0plus-mps2): the same ARMv6-M image must give the micro:bit's exact counts."""
    need_tools()
    a = profile.profile(compiled_demo, "cortex-m0plus")
    b = profile.profile(compiled_demo, "cortex-m0plus-mps2")
    assert a["total_instructions"] == b["total_instructions"]
    assert [r["instructions"] for r in a["layers"]] == [r["instructions"] for r in b["layers"]]
    assert a["instruction_classes"] == b["instruction_classes"]
    assert a["estimated_cycles"] == b["estimated_cycles"] > a["total_instructions"]


# --- the plugin's decoder against binutils' on whole images ---------------------------------
REG = {**{f"r{i}": i for i in range(13)}, "sb": 9, "sl": 10, "fp": 11, "ip": 12, "sp": 13,
       "lr": 14, "pc": 15}
COND = ("eq", "ne", "cs", "cc", "hs", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt",
        "le")
MUL = ("mul", "mla", "mls", "smul", "smla", "smls", "smmul", "smmla", "smmls", "umull", "umlal",
       "umaal", "smuad", "smusd", "usad8", "usada8", "smlal", "smull")
DP = {"add", "adds", "addw", "sub", "subs", "subw", "mov", "movs", "movw", "movt", "and", "ands",
      "orr", "orrs", "eor", "eors", "bic", "bics", "lsl", "lsls", "lsr", "lsrs", "asr", "asrs",
      "ror", "rors", "mvn", "mvns", "rsb", "rsbs", "adc", "adcs", "sbc", "sbcs", "sxtb", "sxth",
      "uxtb", "uxth", "sxtb16", "sxtab16", "sxtab", "sxtah", "uxtab", "ssat", "usat", "ssat16",
      "ubfx", "sbfx", "bfi", "bfc", "clz", "rev", "rev16", "qadd", "qsub", "orn", "pkhbt",
      "pkhtb", "sadd16", "ssub16", "qadd16", "negs", "mul", "muls", "mla", "mls", "smlad",
      "smladx", "smuad", "smlabb", "smulbb", "sdiv", "udiv"}


def _root(mn: str) -> str:
    """The mnemonic without .w/.n and without an IT-block condition suffix."""
    m = mn.split(".")[0]
    known = {"b", "bl", "bx", "blx", "cbz", "cbnz", "bls", "bics", "movs", "muls", "mls"}
    if m not in known and len(m) > 2 and m[-2:] in COND and not m.startswith(("tst", "teq")):
        return m[:-2]
    return m


def _expected(mn: str, ops: str) -> set[str]:
    m, first = _root(mn), ops.split(",")[0].strip()
    if m in ("b",) or (mn.split(".")[0][:1] == "b" and mn.split(".")[0][1:] in COND):
        return {"b", "bcond"}  # in an IT block a b<cond> may use the unconditional encoding
    table = {"bl": "bl", "bx": "bx", "blx": "bx", "cbz": "cbz", "cbnz": "cbz", "tbb": "tbb",
             "tbh": "tbb", "ldrd": "lsd", "strd": "lsd", "sdiv": "div", "udiv": "div",
             "dmb": "barrier", "dsb": "barrier", "isb": "barrier", "pld": "alu", "pli": "alu"}
    if m in table:
        return {table[m]}
    if m.startswith(("ldm", "pop")):
        return {"pop_pc" if "pc" in ops else "lsm"}
    if m.startswith(("stm", "push")):
        return {"lsm"}
    if m.startswith("ldr"):
        return {"ldr_pc" if first == "pc" else "load"}
    if m.startswith("strex"):
        return {"store_reg"}
    if m.startswith("str"):
        addr = ops[ops.index("[") + 1:].split("]")[0].split(",")
        return {"store_reg" if len(addr) > 1 and addr[1].strip() in REG else "store_imm"}
    if m.startswith(MUL):
        return {"mul"}
    if m in ("mov", "add") and first == "pc":
        return {"pc_alu"}
    return {"alu"}


def _reg_list(ops: str) -> int:
    n = 0
    for part in ops[ops.index("{") + 1:ops.index("}")].split(","):
        a, _, b = part.strip().partition("-")
        n += REG[b.strip()] - REG[a] + 1 if b else 1
    return n


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m0plus"])
def test_decoder_agrees_with_objdump_on_the_demo_image(compiled_demo, target):
    """Every instruction of the linked demo image (kernels, harness, libgcc): the plugin's class
    equals the one its objdump mnemonic implies, LDM/STM/PUSH/POP move the listed registers,
    and data processing instructions write the register objdump names first."""
    import ctypes
    import os

    need_tools()
    elf = mcu.build(compiled_demo, target)
    lib = ctypes.CDLL(str(profile.build_plugin()), mode=os.RTLD_LAZY)  # QEMU's API unused
    text = subprocess.run([mcu.tool("arm-none-eabi-objdump"), "-d", str(elf)], check=True,
                          capture_output=True, text=True).stdout
    seen, bad = 0, []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or not parts[0].strip().endswith(":"):
            continue
        raw, mn, ops = parts[1].split(), parts[2].strip(), (parts[3] if len(parts) > 3 else "")
        ops = ops.split(";")[0].split("@")[0].strip()
        if mn.startswith(".") or mn in ("udf", "bkpt", "svc") or not raw:
            continue
        data = b"".join(int(h, 16).to_bytes(2, "little") for h in raw)
        regs, addr, dest = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        cls = timing.CLASSES[lib.mq_classify(data, len(data), ctypes.byref(regs),
                                             ctypes.byref(addr), ctypes.byref(dest))]
        seen += 1
        want = _expected(mn, ops)
        if cls not in want:
            bad.append(f"{line.strip()}: {cls}, expected {want}")
        elif cls in ("lsm", "pop_pc") and regs.value != _reg_list(ops):
            bad.append(f"{line.strip()}: {regs.value} registers")
        elif _root(mn) in DP and ops.split(",")[0].strip() in REG:
            rd = REG[ops.split(",")[0].strip()]
            if rd != 15 and not dest.value & (1 << rd):
                bad.append(f"{line.strip()}: writes {dest.value:#x}, expected r{rd}")
    assert seen > 1000
    assert not bad, f"{len(bad)} of {seen} disagree, e.g. {bad[:8]}"
