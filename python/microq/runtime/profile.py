"""Instruction counts on the emulated core: exact and repeatable, the performance figure of record.

A QEMU TCG plugin (c_runtime/targets/plugin, built here with the host gcc) counts every guest
instruction and logs the running count at marker addresses. Markers are call sites, found in
the disassembly: main's call of NAME_invoke_multi and its return address give the total; each
direct call from NAME_invoke_multi (and the parts gcc split off it) to a kernel, and its return
address, give that kernel call's count. Calls are matched to layers in order, by the kernel
function each layer's comment-tagged call names in NAME.c.

The plugin also counts by instruction class (load, store, multiply, taken branch, ...): with the
core's timing table (runtime/timing.py) that gives an estimated cycle count beside the exact
instruction count, per layer and in total.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

from ..errors import MicroqError
from . import cbuild, mcu, timing

PLUGIN_SOURCE = mcu.TARGETS_DIR / "plugin" / "mq_insn_count.c"
_BRANCH = re.compile(r"^(bl|b(?:eq|ne|cs|cc|mi|pl|vs|vc|hi|ls|ge|lt|gt|le)?(?:\.w|\.n)?)$")


def build_plugin() -> Path:
    """Compile the counting plugin with the host C compiler (cached by source hash)."""
    import hashlib
    import shutil

    src = PLUGIN_SOURCE.read_bytes()
    key = hashlib.sha256(src).hexdigest()[:16]
    so = cbuild.cache_dir() / "mcu" / f"libmq_insn_count-{key}.so"
    if so.exists():
        return so
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise MicroqError("a host C compiler (gcc) is needed to build the profiling plugin")
    so.parent.mkdir(parents=True, exist_ok=True)
    tmp = so.with_suffix(".tmp.so")
    mcu.run_tool([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                   "-o", str(tmp), str(PLUGIN_SOURCE)], so.parent, "building the QEMU plugin")
    tmp.replace(so)
    return so


def disassemble(elf: Path) -> dict[str, list[tuple[int, str, str]]]:
    """{function: [(address, mnemonic, branch target symbol or "")]} from objdump -d."""
    text = mcu.run_tool([mcu.tool("arm-none-eabi-objdump"), "-d", "--no-show-raw-insn",
                          str(elf)], elf.parent, "objdump")
    funcs: dict[str, list[tuple[int, str, str]]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^([0-9a-f]+) <(.+)>:$", line)
        if m:
            current = funcs.setdefault(m.group(2), [])
            continue
        m = re.match(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
        if m and current is not None:
            t = re.search(r"<([^>+]+)>\s*$", m.group(3))
            current.append((int(m.group(1), 16), m.group(2), t.group(1) if t else ""))
    return funcs


def layer_calls(model_dir: Path, meta: dict) -> list[tuple[int, str]]:
    """(layer index, kernel function) for each layer with a call, from NAME.c's invoke."""
    from .locate import source_dir

    src = (source_dir(model_dir, meta) / f"{meta['name']}.c").read_text()
    start = f"int {meta['name']}_invoke_multi_with("  # the layers' body (older folders: _multi)
    body = src[src.index(start if start in src else f"int {meta['name']}_invoke_multi(") :]
    calls = []
    for m in re.finditer(r"/\* L(\d+) .*?\*/(.*?)(?=/\* L\d+ |\Z)", body, flags=re.S):
        f = re.search(r"\b(mq_\w+)\s*\(", m.group(2))
        if f:
            calls.append((int(m.group(1)), f.group(1)))
    return calls


def _call_sites(funcs, name: str) -> tuple[list[tuple[int, int, str]], tuple[int, int]]:
    """Kernel call sites [(address, return address or -1 for a tail call, callee)] of the
    invoke function and its split parts, and main's (call, return) of the invoke."""
    entry = (f"{name}_invoke_multi", f"{name}_invoke_multi_with")  # wrapper, body
    region = {f for f in funcs if f in entry or f.startswith(tuple(e + "." for e in entry))}
    sites = []
    for f in sorted(region):
        insns = funcs[f]
        for k, (addr, mnem, target) in enumerate(insns):
            if target and target not in region and target in funcs and _BRANCH.match(mnem):
                ret = insns[k + 1][0] if mnem == "bl" and k + 1 < len(insns) else -1
                sites.append((addr, ret, target))
    main = [(a, funcs["main"][k + 1][0]) for k, (a, m, t) in enumerate(funcs.get("main", []))
            if m == "bl" and t == f"{name}_invoke_multi"]
    if len(main) != 1:
        raise MicroqError("profile: main must call the invoke function exactly once")
    return sites, main[0]


def profile(model_dir: str | Path, target_name: str, inputs: dict | None = None,
            dsp: bool | None = None, timeout: float = 120.0) -> dict:
    """Instructions of one inference on the emulated core, in total and per layer, and per MAC.
    `inputs`: one int8 sample per input (N=1); default: fixed-seed random int8."""
    model_dir = Path(model_dir).resolve()
    meta = mcu.load_meta(model_dir)
    tgt = mcu.target(target_name)
    if inputs is None:
        rng = np.random.default_rng(0)
        inputs = {s["name"]: rng.integers(-128, 128, (1, *s["shape"][1:]), dtype=np.int8)
                  if s.get("dtype") != "int16" else  # a 16x8 input: full int16 range
                  rng.integers(-32768, 32768, (1, *s["shape"][1:]), dtype=np.int16)
                  for s in meta["inputs"]}
    data, n = mcu.pack_inputs(meta, inputs)
    if n != 1:
        raise MicroqError(f"profile runs one sample, got {n}")
    elf = mcu.build(model_dir, target_name, dsp)
    sites, (main_call, main_ret) = _call_sites(disassemble(elf), meta["name"])
    markers = {main_call, main_ret} | {a for a, _, _ in sites} | {r for _, r, _ in sites if r >= 0}
    with tempfile.TemporaryDirectory(prefix="mq_prof") as d:
        log = Path(d) / "counts.txt"
        mcu.run_elf(tgt, elf, meta, data, n, timeout, plugin_args(log, markers))
        hits, _ = read_log(log)
    site_of = {a: (r, callee) for a, r, callee in sites}
    total, calls, pending, begin = None, [], None, None
    for addr, count, cls in hits:
        if addr == main_call:
            begin = (count, cls)
            continue
        if begin is None:
            continue
        if pending and (addr == pending[0] or (pending[0] < 0 and addr == main_ret)):
            calls.append((pending[1], count - pending[2] - 1, timing.subtract(cls, pending[3])))
            pending = None
        if addr == main_ret:
            total = (count - begin[0] - 1, timing.subtract(cls, begin[1]))
            break
        if addr in site_of:
            pending = (*site_of[addr], count, cls)
    if total is None:
        raise MicroqError("profile: the invoke call was not seen by the counting plugin")
    core = timing.core(tgt.name)
    layers, reason = _per_layer(meta, layer_calls(model_dir, meta), calls, core)
    macs = int(meta.get("macs", 0))
    rep = {
        "model": meta["name"],
        "target": tgt.name,
        "board": tgt.board,
        "dsp": bool(tgt.dsp if dsp is None else dsp),
        "total_instructions": total[0],
        "macs": macs,
        "instructions_per_mac": round(total[0] / macs, 3) if macs else None,
        "layers": layers,
        "per_layer_note": reason,
        "method": "QEMU TCG plugin, inline count of every executed instruction",
    }
    rep.update(cycle_fields(total[1], core, macs))
    return rep


def cycle_fields(counts: dict, core, macs: int = 0) -> dict:
    """The report's estimate fields: cycles, cycles per MAC, the class counts and the table."""
    out = {"instruction_classes": counts}
    if core is None:
        out["estimated_cycles"] = None
        out["timing_note"] = "no per-instruction timing table for this core (runtime/timing.py)"
        return out
    cycles = timing.estimate(counts, core)
    out["estimated_cycles"] = cycles
    out["cycles_per_mac"] = round(cycles / macs, 3) if macs else None
    out["cycles_by_class"] = timing.cycles_by_class(counts, core)
    out["timing_table"] = f"{core.title}, {core.reference}"
    out["timing_note"] = ("estimate from per-class counts and the TRM timing table "
                          "(runtime/timing.py): zero wait states"
                          + ("; an approximation, see timing_table" if core.approximate else ""))
    return out


def with_clock(rep: dict, clock_mhz: float | None) -> dict:
    """Adds milliseconds at `clock_mhz` to a profile report (total and per layer)."""
    if clock_mhz is None or rep.get("estimated_cycles") is None:
        return rep
    if not clock_mhz > 0:
        raise MicroqError(f"--clock must be a positive frequency in MHz, got {clock_mhz}")
    rep = dict(rep, clock_mhz=clock_mhz,
               estimated_ms=round(timing.milliseconds(rep["estimated_cycles"], clock_mhz), 4))
    if rep.get("layers"):
        rep["layers"] = [dict(row, estimated_ms=round(timing.milliseconds(
            row["cycles"], clock_mhz), 4)) for row in rep["layers"]]
    return rep


def plugin_args(log: Path, markers) -> tuple[str, str]:
    """QEMU arguments loading the counting plugin with its log and marker addresses."""
    plugin = [f"{build_plugin()},out={log}"] + [f"marker={m:#x}" for m in sorted(markers)]
    return ("-plugin", ",".join(plugin))


def read_log(log: Path) -> tuple[list[tuple[int, int, dict]], tuple[int, dict] | None]:
    """The plugin's log: [(marker address, instruction count, class counts)] in execution
    order, and the (count, class counts) at exit (None if QEMU did not exit cleanly)."""
    lines = log.read_text().splitlines()
    if not lines or not lines[0].startswith("fields count"):
        raise MicroqError(f"profile: {log.name} from the counting plugin has no header line")
    fields = lines[0].split()[2:]
    hits, total = [], None
    for line in lines[1:]:
        head, count, *rest = line.split()
        cls = timing.counts_from_fields(fields, [int(v) for v in rest])
        if head == "total":
            total = (int(count), cls)
        else:
            hits.append((int(head, 16), int(count), cls))
    return hits, total


def _per_layer(meta: dict, expected: list[tuple[int, str]], calls: list[tuple[str, int, dict]],
               core=None):
    """Layer rows from executed kernel calls; None and a reason when they cannot be matched."""
    if [f for _, f in expected] != [f for f, _, _ in calls if f.startswith("mq_")]:
        return None, ("per-layer counts unavailable: executed calls "
                      f"{[f for f, _, _ in calls]} do not match NAME.c's layer calls")
    counts = iter((n, c) for f, n, c in calls if f.startswith("mq_"))
    by_layer = {i: next(counts) for i, _ in expected}
    rows = []
    for layer in meta["layers"]:
        n, cls = by_layer.get(layer["index"], (0, None))
        macs = int(layer.get("macs", 0))
        row = {"index": layer["index"], "name": layer["name"], "kernel": layer["kernel"],
               "instructions": n, "macs": macs,
               "instructions_per_mac": round(n / macs, 3) if macs else None}
        if core is not None:
            cyc = timing.estimate(cls, core) if cls is not None else 0
            row["cycles"] = cyc
            row["cycles_per_mac"] = round(cyc / macs, 3) if macs else None
        rows.append(row)
    other = sum(n for f, n, _ in calls if not f.startswith("mq_"))
    note = ("per layer: instructions inside each kernel call; the rest of the total is the "
            "invoke function's own code (argument set-up, status checks)")
    if other:
        note += f" and output copies ({other})"
    if core is not None:
        note += "; a layer's estimated cycles include the call instruction that enters it"
    return rows, note
