"""Estimated cycles from the QEMU plugin's per-class instruction counts and the cores' published
per-instruction timings (zero wait states, no interrupts).

QEMU does not model time. The counting plugin (c_runtime/targets/plugin/mq_insn_count.c)
classifies every executed instruction by its Thumb/Thumb-2 encoding into the classes below,
counts the registers that LDM/STM/PUSH/POP move, and for every instruction that can write the PC
how often it was taken (the next executed block did not start at its fall-through address) and
how often it landed on a 32-bit instruction straddling a word boundary. An estimate is then
exact arithmetic on those counts:

    cycles = sum(count[c] * issue[c]) + regs * per_reg + agu * agu_stall
             + sum(taken[b] * refill[b] + wide[b] * wide_extra[b])

(`agu`: loads and stores whose address register the data processing or multiply instruction
right before them wrote.)

Sources (Arm Technical Reference Manuals, "Instruction set summary" / "Processor instructions"
tables and, for the M4, the "Load/store timings" section of the same chapter):
  M4:  Cortex-M4 TRM, ARM DDI 0439B, section 3.3, Table 3-1 and 3.3.2 (load/store timings).
  M0+: Cortex-M0+ TRM, ARM DDI 0484C, section 3.3, Table 3.1.
  M33: Arm publishes no per-instruction cycle table for the Cortex-M33 (TRM ARM 100230); the
       M4 table is used as an approximation and marked so in every report.

What the estimate does not model (each can make real hardware slower or, for the M33, faster):
flash wait states and prefetch-buffer effects (the MLPerf boards run from flash with an ART
accelerator/prefetch), LDR-literal fetch contention, a stall after a load whose result the next
instruction uses (not listed in the M4 TRM),
condition-failed instructions in IT blocks (counted at their executed class, cost 1 on hardware),
the M33's limited dual issue, and SDIV/UDIV early termination (taken at the worst case, 12).
"""

from __future__ import annotations

from dataclasses import dataclass

# The plugin's class columns, in its order (CLASS_NAMES in mq_insn_count.c).
CLASSES = ("alu", "mul", "div", "load", "load_pipe", "store_imm", "store_reg", "store_pipe",
           "lsd", "lsm", "barrier", "b", "bl", "bcond", "cbz", "bx", "pc_alu", "pop_pc",
           "ldr_pc", "tbb")
BRANCHES = CLASSES[CLASSES.index("b"):]


@dataclass(frozen=True)
class Row:
    """Cycles of one instruction class: `issue` every execution; when it writes the PC (taken),
    `refill` more (the pipeline refill P) and `wide` more again if the target is a 32-bit
    instruction that is not word aligned. `source` says where the figures come from."""

    cls: str
    issue: int
    source: str
    refill: int = 0
    wide: int = 0


@dataclass(frozen=True)
class Core:
    name: str
    title: str
    reference: str
    rows: tuple[Row, ...]
    per_reg: int  # LDM/STM/PUSH/POP: 1 + N; `per_reg` is the N part, per register moved
    agu_stall: int  # a load/store addressed by the previous data processing result
    agu_source: str
    approximate: bool = False

    def row(self, cls: str) -> Row:
        return next(r for r in self.rows if r.cls == cls)


_M4_REF = "Cortex-M4 TRM (ARM DDI 0439B) 3.3 Table 3-1"
_M4_LS = "Cortex-M4 TRM (ARM DDI 0439B) 3.3.2 load/store timings"
# P (pipeline refill) is 1 to 3 in the TRM "depending on the alignment and width of the target
# instruction, and whether the processor manages to speculate the address early". We take:
# 1 for direct branches (target known at decode, fetched speculatively), 2 for a register target
# (BX, MOV/ADD PC: no early speculation), 3 for a target loaded from memory (the TRM's own
# figure for LDR PC and TBB/TBH: "three cycles for the pipeline reload"), plus 1 when the
# target is a 32-bit instruction that straddles a word (two fetches), at most 3 in total.
M4_ROWS = (
    Row("alu", 1, f"{_M4_REF}: MOV, ADD, SUB, logical, shift, compare, extend (SXTB16, SXTAB16), "
        "saturate, bit field, parallel add/subtract, reverse, IT, NOP: 1"),
    Row("mul", 1, f"{_M4_REF}: MUL, MLA, MLS, SMULL/UMULL, SMLAL/UMLAL and every DSP multiply "
        "(SMLAD, SMLABB, SMUAD, SMLALD, ...): 1"),
    Row("div", 12, f"{_M4_REF}: SDIV/UDIV 2 to 12 (early termination); worst case taken"),
    Row("load", 2, f"{_M4_REF}: LDR, LDRB, LDRH, LDRSB, LDRSH, LDREX: 2"),
    Row("load_pipe", 1, f"{_M4_LS}: a load right after a single load whose destination is not "
        "its address register pipelines, one cycle less: 1"),
    Row("store_imm", 1, f"{_M4_LS}: STR Rx,[Ry,#imm] is always one cycle: 1"),
    Row("store_reg", 2, f"{_M4_REF}: STR (register offset), STREX: 2"),
    Row("store_pipe", 1, f"{_M4_LS}: a store right after a single load pipelines: 1"),
    Row("lsd", 3, f"{_M4_REF}: LDRD/STRD 1 + N with N = 2, never pipelined: 3"),
    Row("lsm", 1, f"{_M4_REF}: LDM, STM, PUSH, POP 1 + N (the N in per_reg)"),
    Row("barrier", 1, f"{_M4_REF}: DMB, DSB, ISB 1 + B; B minimum 0 taken"),
    Row("b", 1, f"{_M4_REF}: B 1 + P, P = 1 for a direct target", refill=1, wide=1),
    Row("bl", 1, f"{_M4_REF}: BL 1 + P, P = 1 for a direct target", refill=1, wide=1),
    Row("bcond", 1, f"{_M4_REF}: B<cond> 1 not taken, 1 + P taken", refill=1, wide=1),
    Row("cbz", 1, f"{_M4_REF}: CBZ/CBNZ 1 not taken, 1 + P taken", refill=1, wide=1),
    Row("bx", 1, f"{_M4_REF}: BX, BLX 1 + P, P = 2 for a register target", refill=2, wide=1),
    Row("pc_alu", 1, f"{_M4_REF}: MOV PC / ADD PC 1 + P, P = 2 for a register target",
        refill=2, wide=1),
    Row("pop_pc", 1, f"{_M4_REF}: POP/LDM with PC 1 + N + P, P = 3 for a loaded target",
        refill=3),
    Row("ldr_pc", 2, f"{_M4_LS}: LDR PC two cycles for the load, three for the reload",
        refill=3),
    Row("tbb", 2, f"{_M4_REF}: TBB/TBH 2 + P, P = 3 (3.3.2: three cycles for the reload)",
        refill=3),
)

_M0P_REF = "Cortex-M0+ TRM (ARM DDI 0484C) 3.3 Table 3.1"
_V6M = "not in ARMv6-M (never executed on this core)"
M0PLUS_ROWS = (
    Row("alu", 1, f"{_M0P_REF}: MOVS, ADDS, SUBS, logical, shifts, compare, extend, reverse: 1"),
    Row("mul", 1, f"{_M0P_REF}: MULS 1 or 32; 1 (the fast-multiplier option, as in STM32G0)"),
    Row("div", 1, _V6M),
    Row("load", 2, f"{_M0P_REF}: LDR, LDRB, LDRH, LDRSB, LDRSH (any addressing): 2"),
    Row("load_pipe", 2, f"{_M0P_REF}: loads are not pipelined on the M0+: 2"),
    Row("store_imm", 2, f"{_M0P_REF}: STR, STRB, STRH (immediate offset): 2"),
    Row("store_reg", 2, f"{_M0P_REF}: STR, STRB, STRH (register offset): 2"),
    Row("store_pipe", 2, f"{_M0P_REF}: stores are not pipelined on the M0+: 2"),
    Row("lsd", 3, _V6M),
    Row("lsm", 1, f"{_M0P_REF}: LDM, STM, PUSH, POP 1 + N (the N in per_reg)"),
    Row("barrier", 3, f"{_M0P_REF}: DMB, DSB, ISB: 3"),
    Row("b", 1, f"{_M0P_REF}: B 2", refill=1),
    Row("bl", 2, f"{_M0P_REF}: BL 3 (a 32-bit instruction)", refill=1),
    Row("bcond", 1, f"{_M0P_REF}: B<cond> 1 not taken, 2 taken", refill=1),
    Row("cbz", 1, _V6M, refill=1),
    Row("bx", 1, f"{_M0P_REF}: BX, BLX 2", refill=1),
    Row("pc_alu", 1, f"{_M0P_REF}: MOV PC, ADD PC 2", refill=1),
    Row("pop_pc", 1, f"{_M0P_REF}: POP with PC 3 + N", refill=2),
    Row("ldr_pc", 2, _V6M, refill=2),
    Row("tbb", 2, _V6M, refill=2),
)

_M4_AGU = (f"{_M4_LS}: a load or store whose address depends on the result of the preceding "
           "data processing operation stalls one cycle (no forwarding path)")
CORES: dict[str, Core] = {
    c.name: c
    for c in (
        Core("cortex-m4", "Cortex-M4", "ARM DDI 0439B", M4_ROWS, per_reg=1, agu_stall=1,
             agu_source=_M4_AGU),
        Core("cortex-m0plus", "Cortex-M0+", "ARM DDI 0484C", M0PLUS_ROWS, per_reg=1,
             agu_stall=0, agu_source=f"{_M0P_REF}: fixed counts, no such stall listed"),
        Core("cortex-m33", "Cortex-M33 (approximated by the Cortex-M4 table)",
             "ARM DDI 0439B (M4; the M33 TRM ARM 100230 has no instruction timing table)",
             M4_ROWS, per_reg=1, agu_stall=1, agu_source=_M4_AGU, approximate=True),
    )
}
assert all(tuple(r.cls for r in c.rows) == CLASSES for c in CORES.values())


def core(target: str) -> Core | None:
    """The timing table of a target, or None when there is none (M3, M7, M55)."""
    return CORES.get({"cortex-m0plus-mps2": "cortex-m0plus"}.get(target, target))


def counts_from_fields(fields: list[str], values: list[int]) -> dict:
    """The plugin's log columns (after the count) as {"classes": {...}, "regs": N,
    "taken": {...}, "wide": {...}}; a column the plugin does not print is a clear error."""
    col = dict(zip(fields, values))
    missing = [c for c in CLASSES if c not in col]
    if missing:
        raise ValueError(f"the counting plugin printed no columns {missing}; rebuild it")
    return {
        "classes": {c: col[c] for c in CLASSES},
        "regs": col.get("regs", 0),
        "agu": col.get("agu", 0),
        "taken": {b: col.get(f"taken_{b}", 0) for b in BRANCHES},
        "wide": {b: col.get(f"wide_{b}", 0) for b in BRANCHES},
    }


def subtract(a: dict, b: dict) -> dict:
    """Counts a - b (between two marker hits)."""
    return {
        "classes": {c: a["classes"][c] - b["classes"][c] for c in CLASSES},
        "regs": a["regs"] - b["regs"],
        "agu": a["agu"] - b["agu"],
        "taken": {k: a["taken"][k] - b["taken"][k] for k in BRANCHES},
        "wide": {k: a["wide"][k] - b["wide"][k] for k in BRANCHES},
    }


def cycles_by_class(counts: dict, c: Core) -> dict[str, int]:
    """Estimated cycles of each class (registers of LDM/STM/PUSH/POP under "regs")."""
    out = {}
    for r in c.rows:
        n = counts["classes"][r.cls] * r.issue
        if r.cls in BRANCHES:
            n += counts["taken"][r.cls] * r.refill + counts["wide"][r.cls] * r.wide
        out[r.cls] = n
    out["regs"] = counts["regs"] * c.per_reg
    out["agu"] = counts["agu"] * c.agu_stall
    return out


def estimate(counts: dict, c: Core) -> int:
    """Estimated cycles of the counted instructions on core `c`."""
    return sum(cycles_by_class(counts, c).values())


def milliseconds(cycles: int, clock_mhz: float) -> float:
    return cycles / (clock_mhz * 1e3)


def table_rows(c: Core) -> list[list[str]]:
    """The table as text rows (class, cycles, taken extra, misaligned-target extra, source)."""
    rows = []
    for r in c.rows:
        issue = f"{r.issue} + N" if r.cls in ("lsm", "pop_pc") else str(r.issue)
        rows.append([r.cls, issue, str(r.refill) if r.cls in BRANCHES else "-",
                     str(r.wide) if r.cls in BRANCHES else "-", r.source])
    return rows
