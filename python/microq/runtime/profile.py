"""Instruction counts on the emulated core: exact and repeatable, the performance figure of record.

A QEMU TCG plugin (c_runtime/targets/plugin, built here with the host gcc) counts every guest
instruction and logs the running count at marker addresses. Markers are call sites, found in
the disassembly: main's call of NAME_invoke_multi and its return address give the total; each
direct call from NAME_invoke_multi (and the parts gcc split off it) to a kernel, and its return
address, give that kernel call's count. Calls are matched to layers in order, by the kernel
function each layer's comment-tagged call names in NAME.c.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

from ..errors import MicroqError
from . import cbuild, mcu

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
    from ..codegen.runtime_pkg import source_dir

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
        plugin = [f"{build_plugin()},out={log}"] + [f"marker={m:#x}" for m in sorted(markers)]
        mcu.run_elf(tgt, elf, meta, data, n, timeout, ("-plugin", ",".join(plugin)))
        hits = [(int(a, 16), int(c)) for a, c in
                (line.split() for line in log.read_text().splitlines() if line[0] != "t")]
    site_of = {a: (r, callee) for a, r, callee in sites}
    total, calls, pending, begin = None, [], None, None
    for addr, count in hits:
        if addr == main_call:
            begin = count
            continue
        if begin is None:
            continue
        if pending and (addr == pending[0] or (pending[0] < 0 and addr == main_ret)):
            calls.append((pending[1], count - pending[2] - 1))
            pending = None
        if addr == main_ret:
            total = count - begin - 1
            break
        if addr in site_of:
            pending = (*site_of[addr], count)
    if total is None:
        raise MicroqError("profile: the invoke call was not seen by the counting plugin")
    layers, reason = _per_layer(meta, layer_calls(model_dir, meta), calls)
    macs = int(meta.get("macs", 0))
    return {
        "model": meta["name"],
        "target": tgt.name,
        "board": tgt.board,
        "dsp": bool(tgt.dsp if dsp is None else dsp),
        "total_instructions": total,
        "macs": macs,
        "instructions_per_mac": round(total / macs, 3) if macs else None,
        "layers": layers,
        "per_layer_note": reason,
        "method": "QEMU TCG plugin, inline count of every executed instruction",
    }


def _per_layer(meta: dict, expected: list[tuple[int, str]], calls: list[tuple[str, int]]):
    """Layer rows from executed kernel calls; None and a reason when they cannot be matched."""
    if [f for _, f in expected] != [f for f, _ in calls if f.startswith("mq_")]:
        return None, ("per-layer counts unavailable: executed calls "
                      f"{[f for f, _ in calls]} do not match NAME.c's layer calls")
    counts = iter(n for f, n in calls if f.startswith("mq_"))
    by_layer = {i: next(counts) for i, _ in expected}
    rows = []
    for layer in meta["layers"]:
        n = by_layer.get(layer["index"], 0)
        macs = int(layer.get("macs", 0))
        rows.append({"index": layer["index"], "name": layer["name"], "kernel": layer["kernel"],
                     "instructions": n, "macs": macs,
                     "instructions_per_mac": round(n / macs, 3) if macs else None})
    other = sum(n for f, n in calls if not f.startswith("mq_"))
    note = ("per layer: instructions inside each kernel call; the rest of the total is the "
            "invoke function's own code (argument set-up, status checks)")
    if other:
        note += f" and output copies ({other})"
    return rows, note
