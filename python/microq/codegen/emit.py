"""C emission for codegen: a quantized graph -> a self-contained, deterministic C folder.

Writes NAME.h (the API), NAME.c (arena, params, invoke), NAME_weights.{c,h} (const arrays),
NAME.json (metadata for the host runner and the CLI) and copies of only the runtime files used.
The folder is written next to the target and renamed over it once complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import MicroqError
from ..names import identifier_from
from ..qir import QGraph
from . import cformat as cf
from . import swap
from .glue import LAYOUTS, arduino_layout, model_glue
from .emitters import EMITTERS
from .layers import FAMILY_SOURCES, Ctx, LayerCode
from .plan import Plan, plan_graph



@dataclass(frozen=True)
class LayerSummary:
    name: str
    kernel: str
    summary: str
    macs: int
    weight_bytes: int
    source: tuple[str, ...]


@dataclass(frozen=True)
class Summary:
    name: str
    out_dir: Path
    layers: tuple[LayerSummary, ...]
    macs: int
    weight_bytes: int  # flash: filters, biases, multipliers, shifts, LUTs, const operands
    arena_bytes: int
    lower_bound: int
    kept: tuple[str, ...] = ()  # what the user had added to out_dir, carried over (write_folder)


def runtime_dir() -> Path:
    """The C runtime's folder (one locator for checkouts and wheels: runtime/locate.py)."""
    from ..runtime.locate import runtime_root

    return runtime_root()


C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if "
    "inline int long register restrict return short signed sizeof static struct switch typedef "
    "union unsigned void volatile while _Bool _Complex _Imaginary _Alignas _Alignof _Atomic "
    "_Generic _Noreturn _Static_assert _Thread_local alignas alignof bool constexpr false "
    "nullptr static_assert thread_local true typeof typeof_unqual asm".split()
)
# <name.h> of the C standard library: NAME.h in a folder passed with -I would shadow it
C_HEADERS = frozenset(
    "assert complex ctype errno fenv float inttypes iso646 limits locale math setjmp signal "
    "stdalign stdarg stdatomic stdbit stdbool stdckdint stddef stdint stdio stdlib stdnoreturn "
    "string tgmath threads time uchar wchar wctype".split()
)
# file names Windows cannot create (con.h, aux.c, ...)
DEVICE_NAMES = frozenset(
    ["con", "prn", "aux", "nul"] + [f"{d}{i}" for d in ("com", "lpt") for i in range(10)]
)
MAX_NAME = 64


def check_name(name: str) -> None:
    """Refuse a model name (--name) that is not a portable C identifier or whose files or
    symbols would clash with the runtime (mq_*), the MCU harness, the C library's headers, a
    keyword or a reserved identifier; one line saying why."""
    why = None
    low = name.lower() if isinstance(name, str) else ""
    reserved = {p.stem.lower() for p in runtime_dir().rglob("*") if p.is_file()} | {"main"}
    if not isinstance(name, str) or not cf.is_identifier(name):
        why = "is not a C identifier (use ASCII letters, digits and _, not starting with a digit)"
    elif len(name) > MAX_NAME:
        why = f"is longer than {MAX_NAME} characters"
    elif name.startswith("_"):
        why = "starts with '_' (such identifiers are reserved for the C implementation)"
    elif low == "mq" or low.startswith("mq_"):
        why = "clashes with the microq runtime (its files and symbols are mq_*)"
    elif name in C_KEYWORDS:
        why = "is a C keyword"
    elif low in C_HEADERS:
        why = f"would shadow the C library header <{low}.h>"
    elif low in reserved:
        why = f"clashes with the runtime/harness file {low}.c or {low}.h"
    elif low in DEVICE_NAMES:
        why = "is a reserved device name on Windows"
    if why:
        raise MicroqError(f"model name '{name}' {why}; choose another --name")


def check_io(qgraph: QGraph, where: str = "") -> None:
    """Every tensor a node names exists, and the graph has inputs and outputs, each output
    computed by a node or a graph input (never silently dropped: NUM_OUTPUTS 0 does not
    build). `where` names the model file in the messages."""
    where = where or f"model '{qgraph.name}'"
    for node in qgraph.nodes:
        for t in node.inputs + node.outputs:
            if t not in qgraph.tensors:
                raise MicroqError(f"{where}: node '{node.name}' uses tensor '{t}', which the "
                                  "quantized graph does not define; the model is invalid")
    if not qgraph.inputs:
        raise MicroqError(f"{where} has no inputs: nothing to compute on; fix the model")
    if not qgraph.outputs:
        raise MicroqError(f"{where} has no outputs: nothing to compute; fix the model")
    produced = {t for n in qgraph.nodes for t in n.outputs}
    for t in qgraph.inputs + qgraph.outputs:
        if t not in qgraph.tensors:
            raise MicroqError(f"{where}: graph input/output '{t}' is not a tensor of the "
                              "quantized graph; the model is invalid")
    for t in qgraph.outputs:
        if t not in produced and t not in qgraph.inputs:
            what = "a constant" if qgraph.tensors[t].const is not None else "produced by no node"
            raise MicroqError(f"{where}: graph output '{t}' is {what}, not computed from the "
                              "inputs; remove it from the graph outputs")


def emit(
    qgraph: QGraph,
    out_dir: Path,
    name: str,
    command: str = "",
    rounding: str = "double",
    extra_files: dict[str, bytes] | None = None,
    runtime: str = "copy",
    layout: str = "flat",
) -> Summary:
    """Write the C folder for `qgraph` to `out_dir` (replacing it); `command` is recorded in the
    header comment. `rounding` is recorded for builds: "single" needs -DMQ_SINGLE_ROUNDING=1.
    `extra_files` (relative path -> bytes, e.g. ".microq/qgraph.json") are written along, in the
    same atomic swap. `runtime` "copy" puts the runtime files the model uses into the folder;
    "external" leaves them out, for firmware that links one shared runtime (codegen/runtime_pkg).
    `layout` "flat" writes everything at the top with CMake/Make glue; "arduino" an Arduino
    library (library.properties, src/, examples/; codegen/glue.py)."""
    check_name(name)
    if rounding not in ("double", "single"):
        raise MicroqError(f"rounding must be 'double' or 'single', not '{rounding}'")
    check_io(qgraph)
    unknown = sorted({n.kernel for n in qgraph.nodes if n.kernel not in EMITTERS})
    if unknown:
        raise MicroqError(f"no C emitter for kernel(s): {', '.join(unknown)}")
    from .runtime_pkg import check_mode

    check_mode(runtime)
    if layout not in LAYOUTS:
        raise MicroqError(f"layout must be one of {', '.join(LAYOUTS)}, not '{layout}'")
    if layout == "arduino" and runtime != "copy":
        raise MicroqError("--layout arduino needs the runtime inside the library (--runtime copy)")
    plan = plan_graph(qgraph)
    files, summary = _render(qgraph, plan, name, command, rounding, Path(out_dir), runtime,
                             layout)
    for rel, data in sorted((extra_files or {}).items()):
        if Path(rel).is_absolute() or ".." in Path(rel).parts or rel in files:
            raise MicroqError(f"extra file '{rel}' must be a new relative path inside the folder")
        files[rel] = data
    kept = write_folder(Path(out_dir), files)
    return replace(summary, kept=tuple(kept))


def tensor_names(plan: Plan) -> dict[str, str]:
    """The C name of every tensor that is not a constant: "t_" + its name made an ASCII
    identifier (names.identifier_from), unique in plan order (a clash gets _2, _3, ...), so
    the same model always gives the same names. The prefix keeps them clear of keywords, the
    runtime's mq_*, the layer statics L*_ and invoke's own locals."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for b in plan.buffers:
        if b.home == "const":
            continue
        for t in b.tensors:
            base = identifier_from(t, "t_")
            cand, k = base, 2
            while cand in taken:
                cand, k = f"{base}_{k}", k + 1
            taken.add(cand)
            names[t] = cand
    return names


class _Pointers:
    """tensor name -> its C expression in invoke: the named pointer of an activation (declared
    by declarations(), only for the tensors some call used) or a constant's array."""

    def __init__(self, plan: Plan, consts: dict[str, str]) -> None:
        self.plan, self.consts = plan, consts
        self.names = tensor_names(plan)
        self.used: set[str] = set()

    def __call__(self, tensor: str) -> str:
        b = self.plan.buffer(tensor)
        if b.home == "const":
            return self.consts[b.root]
        self.used.add(tensor)
        return self.names[tensor]

    def declarations(self) -> list[str]:
        """One `T *const t_x = ...;` per used tensor, in plan order, each after a comment
        with the tensor's real name (escaped)."""
        arena = self.plan.arena_buffers()
        out: list[str] = []
        for b in self.plan.buffers:
            for t in b.tensors:
                if t not in self.used:
                    continue
                if b.home == "arena":
                    k = arena.index(b)
                    what, decl = f"B{k}", f"int8_t *const {self.names[t]} = arena + B{k}_OFFSET;"
                elif b.home == "input":
                    what = f"input {b.index}"
                    decl = f"const int8_t *const {self.names[t]} = inputs[{b.index}];"
                else:
                    what = f"output {b.index}"
                    decl = f"int8_t *const {self.names[t]} = outputs[{b.index}];"
                out += cf.comment_lines(f'"{t}" ({what})', "    ")
                out.append("    " + decl)
        return out + [""] if out else out


def _render(qgraph: QGraph, plan: Plan, name: str, command: str, rounding: str, out_dir: Path,
            runtime: str = "copy", layout: str = "flat"):
    up = name.upper()
    const_roots = [b.root for b in plan.buffers if b.home == "const"]
    consts = {t: f"{name}_const{i}" for i, t in enumerate(const_roots)}
    ptr = _Pointers(plan, consts)
    ctx = Ctx(qgraph, name, ptr)
    ctx.overlaps = {
        (plan.buffers[i].root, plan.buffers[j].root): rel for i, j, rel in plan.overlaps
    }
    codes: list[LayerCode] = []
    for i, node in enumerate(qgraph.nodes):
        ctx.index = i
        codes.append(EMITTERS[node.kernel](ctx, node))
    # constant operands: attributed to the first layer that reads them
    seen: set[str] = set()
    for node, code in zip(qgraph.nodes, codes):
        for t in node.inputs:
            b = plan.buffer(t)
            if b.home == "const" and b.root not in seen:
                seen.add(b.root)
                wide = qgraph.tensors[b.root].dtype == "int16"
                arr = np.asarray(qgraph.tensors[b.root].const).astype(
                    np.int16 if wide else np.int8)
                code.weights.append((consts[b.root], arr))
                code.notes[consts[b.root]] = f'constant tensor "{b.root}", row-major'

    layers = tuple(
        LayerSummary(n.name, n.kernel, c.summary, c.macs, c.weight_bytes, tuple(n.source))
        for n, c in zip(qgraph.nodes, codes)
    )
    summary = Summary(
        name=name,
        out_dir=out_dir,
        layers=layers,
        macs=sum(l.macs for l in layers),
        weight_bytes=sum(l.weight_bytes for l in layers),
        arena_bytes=plan.arena_size,
        lower_bound=plan.lower_bound,
    )
    families = sorted({c.family for c in codes if c.family})
    files: dict[str, bytes] = {}
    files[f"{name}.h"] = _header(qgraph, plan, name, up, command, rounding).encode()
    files[f"{name}.c"] = _source(qgraph, plan, name, up, command, codes, families, ptr).encode()
    files[f"{name}_weights.h"] = _weights_header(name, up, codes).encode()
    files[f"{name}_weights.c"] = _weights_source(name, command, codes,
                                                  qgraph.nodes).encode()
    used = _runtime_files(families)
    files[f"{name}.json"] = _metadata(qgraph, plan, name, command, rounding, summary,
                                      runtime, sorted(used), layout).encode()
    if runtime == "copy":
        files.update(used)
    n_in, n_out, single = len(qgraph.inputs), len(qgraph.outputs), rounding == "single"
    if layout == "arduino":
        return arduino_layout(name, files, n_in, n_out, single), summary
    files.update(model_glue(name, n_in, n_out, sorted(f for f in files if f.endswith(".c")),
                            sorted(f for f in used if f.endswith(".c")), runtime == "external",
                            single))
    return files, summary


def _banner(name: str, command: str, what: str) -> str:
    lines = cf.open_comment_lines(f'{what} of model "{name}", generated by microq '
                                  f"{__version__}. Do not edit.")
    cmd = cf.open_comment_lines(f"Command: {command or '(library call)'}")
    lines += [" *" + cmd[0][2:], *cmd[1:]]
    return "\n".join(lines) + "\n"


def _io_lines(qgraph: QGraph, up: str, kind: str, names: list[str], single: bool) -> list[str]:
    out = []
    for k, t in enumerate(names):
        qt = qgraph.tensors[t]
        size = np.prod(qt.shape, dtype=np.int64)
        zp = int(qt.q.zero_point)
        if not -128 <= zp <= 127 or not (np.isfinite(qt.q.scale) and qt.q.scale > 0):
            raise MicroqError(f"{kind.lower()} '{t}': scale {qt.q.scale} / zero point {zp} "
                              "is not an int8 quantization (scale > 0, zero point -128..127)")
        tags = [f"{kind}{k}"] + ([kind] if single else [])
        for tag in tags:
            out += [
                f"#define {up}_{tag}_SIZE {int(size)}",
                f"#define {up}_{tag}_SCALE {cf.c_float(qt.q.scale)}",
                f"#define {up}_{tag}_ZERO_POINT ({int(qt.q.zero_point)})",
            ]
    return out


def _layout_comment(qgraph: QGraph, kind: str, k: int, t: str) -> list[str]:
    qt = qgraph.tensors[t]
    phys = list(qt.shape)
    lines = _doc(f'{kind} {k} "{t}": {qt.dtype} {phys}, row-major.')
    if qt.dtype == "int16":
        lines.append(" *   int16 (16x8): pass a 2-byte aligned int16_t buffer cast to int8_t *.")
    perm = qgraph.input_perm.get(t)
    logical = qgraph.logical_shapes.get(t)
    if perm is not None and list(perm) != list(range(len(perm))):
        lines += [
            f" *   The ONNX tensor is {list(logical) if logical else '?'}; it was transposed:",
            f" *   physical = logical.transpose({', '.join(map(str, perm))}).",
        ]
    elif logical is not None and list(logical) != phys:
        lines.append(f" *   The ONNX tensor is {list(logical)} (same memory order).")
    src = t  # through free reshapes (ArgMax keepdims=0) to the producing kernel
    for n in reversed(qgraph.nodes):
        if src in n.outputs and n.kernel == "reshape":
            src = n.inputs[0]
    if any(n.kernel == "argmax" and src in n.outputs for n in qgraph.nodes):
        lines.append(" *   Indices (ArgMax, int64 in ONNX): each int8 is the index itself.")
    return lines


def _header(qgraph, plan, name, up, command, rounding) -> str:
    single = len(qgraph.inputs) == 1 and len(qgraph.outputs) == 1
    doc = [_banner(name, command, "API").rstrip("\n"), " *"]
    doc.append(" * Quantization: real = (q - ZERO_POINT) * SCALE. Tensors:")
    for k, t in enumerate(qgraph.inputs):
        doc += _layout_comment(qgraph, "Input", k, t)
    for k, t in enumerate(qgraph.outputs):
        doc += _layout_comment(qgraph, "Output", k, t)
    if rounding == "single":
        doc.append(" * Build every .c of this folder with -DMQ_SINGLE_ROUNDING=1.")
    doc += [
        " *",
        *_doc(f"{name}_invoke_multi takes one pointer per input/output, in the order above; "
              "it returns 0 on success, else the first non-zero kernel status (mq_status)."),
        *_arena_api_doc(name, up),
        " */",
    ]
    guard = f"{up}_H"
    body = [f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>", ""]
    body += [f"#define {up}_ARENA_SIZE {plan.arena_size}"]
    body += [f"#define {up}_NUM_INPUTS {len(qgraph.inputs)}"]
    body += [f"#define {up}_NUM_OUTPUTS {len(qgraph.outputs)}"]
    body += _io_lines(qgraph, up, "INPUT", qgraph.inputs, single)
    body += _io_lines(qgraph, up, "OUTPUT", qgraph.outputs, single)
    body.append("")
    if single:
        body += _proto(f"{name}_invoke", SINGLE_ARGS)
    body += _proto(f"{name}_invoke_multi", MULTI_ARGS)
    body += _arena_api_decls(name, up, single)
    body += ["", f"#endif /* {guard} */", ""]
    return "\n".join(doc + body)


def _source(qgraph, plan, name, up, command, codes, families, ptr) -> str:
    out = [_banner(name, command, "Inference code").rstrip("\n"), " */", ""]
    out += [f'#include "{name}.h"', f'#include "{name}_weights.h"']
    out += [f'#include "{f}.h"' for f in families] + ['#include "mq_types.h"', ""]
    arena = plan.arena_buffers()
    if arena:
        out.append("/* Arena offsets (bytes); lifetimes are layer steps, inclusive. */")
        for k, b in enumerate(arena):
            names = ", ".join(f'"{t}"' for t in b.tensors)
            out += cf.comment_lines(f"B{k}: {b.size} B, L{b.first}-L{b.last}: {names}")
            out.append(f"#define B{k}_OFFSET {b.offset}")
        out += ["", *_static_arena(up), ""]
    for i, (node, code) in enumerate(zip(qgraph.nodes, codes)):
        if code.statics:
            out += cf.comment_lines(f'L{i} {code.summary} "{node.name}"')
            out += [s.rstrip("\n") for s in code.statics] + [""]
    if plan.copies:
        out += [
            "static void copy_s8(const int8_t *src, int8_t *dst, int32_t size)",
            "{",
            "    int32_t i;",
            "    for (i = 0; i < size; ++i) {",
            "        dst[i] = src[i];",
            "    }",
            "}",
            "",
        ]
    out += _proto(f"{name}_invoke_multi_with", MULTI_WITH_ARGS, "")
    out.append("{")
    if any(c.family for c in codes):
        out += ["    mq_status status;", ""]
    out += _arena_check(bool(arena))
    copies = []
    for k, t in plan.copies:
        src = ptr(t)
        size = int(np.prod(qgraph.tensors[t].shape, dtype=np.int64))
        size *= 2 if qgraph.tensors[t].dtype == "int16" else 1  # bytes
        copies += cf.comment_lines(f'output {k} "{t}" shares its memory with another tensor',
                                   "    ")
        copies.append(f"    copy_s8({src}, outputs[{k}], {size});")
    out += ptr.declarations()  # after the arena check: no pointer arithmetic on a NULL arena
    # the calls keep codegen's layout (cformat.wrap_call): see .clang-format
    calls = []
    for i, (node, code) in enumerate(zip(qgraph.nodes, codes)):
        src = f" <- ONNX: {', '.join(node.source)}" if node.source else ""
        calls += cf.comment_lines(f'L{i} {code.summary} "{node.name}"{src}', "    ")
        calls += ["    " + line for line in code.call] + [""]
    calls += copies
    if calls:
        out += [f"    {cf.FORMAT_OFF}", *calls, f"    {cf.FORMAT_ON}"]
    if not any(c.family for c in codes) and not plan.copies:
        out += ["    (void)inputs;", "    (void)outputs;"]
    out += ["    return 0;", "}", ""]
    out += _arena_wrappers(name, up, bool(arena), len(qgraph.inputs) == 1 and
                           len(qgraph.outputs) == 1)
    return "\n".join(out)


def _weights_header(name: str, up: str, codes) -> str:
    guard = f"{up}_WEIGHTS_H"
    out = [
        f'/* Constant arrays of model "{name}" (NAME_weights.c). Generated. */',
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <stdint.h>",
        "",
    ]
    for code in codes:
        out += [cf.array_decl(cname, arr).rstrip("\n") for cname, arr in code.weights]
    out += ["", f"#endif /* {guard} */", ""]
    return "\n".join(out)


def _weights_source(name: str, command: str, codes, nodes) -> str:
    out = [
        _banner(name, command, "Weights").rstrip("\n"),
        " */",
        "",
        f'#include "{name}_weights.h"',
        "",
        cf.FORMAT_OFF,
        "",
    ]
    for i, (node, code) in enumerate(zip(nodes, codes)):
        if code.weights:
            out += cf.comment_lines(f'L{i} {code.summary} "{node.name}"') + [""]
        for cname, arr in code.weights:
            what = cname[len(f"{name}_L{i}_"):] if cname.startswith(f"{name}_L{i}_") else cname
            dims = "".join(f"[{int(d)}]" for d in np.shape(arr)) or "[1]"
            note = code.notes.get(cname)
            out += cf.comment_lines(f"{what} {dims} {cf.CTYPES[np.asarray(arr).dtype]}"
                                    + (f": {note}" if note else ""))
            out.append(cf.array_def("const", cname, arr))
    return "\n".join(out + [cf.FORMAT_ON, ""])


def _io_meta(qgraph: QGraph, t: str) -> dict:
    qt = qgraph.tensors[t]
    perm = qgraph.input_perm.get(t)
    logical = qgraph.logical_shapes.get(t, qt.shape)
    return {
        "name": t,
        "shape": [int(d) for d in qt.shape],
        "logical_shape": [int(d) for d in logical],
        "input_perm": [int(a) for a in perm] if perm is not None else None,
        "scale": float(qt.q.scale),
        "zero_point": int(qt.q.zero_point),
        "size": int(np.prod(qt.shape, dtype=np.int64)),  # elements
        "dtype": qt.dtype,
    }


def _metadata(qgraph, plan, name, command, rounding, summary: Summary, runtime: str = "copy",
              runtime_files: list[str] | None = None, layout: str = "flat") -> str:
    meta = {
        "layout": layout,
        "source_dir": "src" if layout == "arduino" else "",  # where NAME.c and NAME.h are
        "runtime": runtime,  # "copy": the folder holds runtime_files; "external": linked apart
        "runtime_files": list(runtime_files or []),
        "name": name,
        "microq_version": __version__,
        "command": command,
        "rounding": rounding,
        "arena_size": plan.arena_size,
        "lower_bound": plan.lower_bound,  # liveness (no two tensors share bytes)
        "overlap_bound": plan.overlap_bound,  # -1: no kernel's output overlaps its input
        "macs": summary.macs,
        "weight_bytes": summary.weight_bytes,
        "inputs": [_io_meta(qgraph, t) for t in qgraph.inputs],
        "outputs": [_io_meta(qgraph, t) for t in qgraph.outputs],
        "layers": [
            {
                "index": i,
                "name": l.name,
                "kernel": l.kernel,
                "summary": l.summary,
                "macs": l.macs,
                "weight_bytes": l.weight_bytes,
                "source": list(l.source),
            }
            for i, l in enumerate(summary.layers)
        ],
    }
    return json.dumps(meta, indent=2, sort_keys=True) + "\n"


def _runtime_files(families: list[str]) -> dict[str, bytes]:
    """Only the runtime files used: the families' sources and every header they include."""
    root = runtime_dir()
    wanted = ["include/mq_types.h", "include/mq_requant.h"]
    wanted += [f"include/{f}.h" for f in families]
    wanted += [f"src/{s}" for f in families for s in FAMILY_SOURCES[f]]
    files: dict[str, bytes] = {}
    while wanted:
        rel = wanted.pop(0)
        base = Path(rel).name
        if base in files:
            continue
        path = root / rel
        if not path.exists() and (root / "src" / base).exists():
            path = root / "src" / base  # internal headers (mq_dsp.h) live beside the sources
        if not path.exists():
            raise MicroqError(f"runtime file {path} is missing")
        data = path.read_bytes()
        files[base] = data
        for inc in re.findall(rb'^\s*#\s*include\s+"([^"]+)"', data, flags=re.MULTILINE):
            wanted.append(f"include/{inc.decode()}")
    return dict(sorted(files.items()))


MARKER = swap.MARKER  # ".microq/generated": marks a folder microq may replace as a whole


def write_folder(out_dir: Path, files: dict[str, bytes]) -> list[str]:
    """Write `files` into a hidden sibling of out_dir, then swap it in (codegen.swap: atomic
    on Linux, recoverable elsewhere): a failure or a kill leaves either the old folder or the
    new one, never a partial or missing one; hidden folders an earlier interrupted run left
    are restored or removed first. An existing out_dir is replaced only if it is empty or an
    earlier microq output (it holds MARKER): never a user's folder. Everything in the old folder
    that microq did not write (its MANIFEST says what it did) is carried into the new one; files
    microq wrote before and no longer writes go. Returns the carried-over paths (sorted;
    folders end in "/")."""
    out_dir = Path(out_dir)
    swap.recover(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MicroqError(f"cannot write the C folder: {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise MicroqError(f"{out_dir} is a folder microq did not write and is not empty; "
                          "choose a new -o (microq writes only into its own folders)")
    files = dict(files)
    files[MARKER] = (b"written by microq; the next compile into this folder rewrites the files "
                     b"listed in files.json and keeps the rest\n")
    manifest = sorted(set(files) | {swap.MANIFEST})
    files[swap.MANIFEST] = (json.dumps({"files": manifest}, indent=1) + "\n").encode()
    if not out_dir.parent.is_dir():
        raise MicroqError(f"cannot write the C folder {out_dir}: {out_dir.parent} is not a folder")
    keep: list[str] = []
    if out_dir.is_dir():
        keep = swap.user_entries(out_dir, swap.written_files(out_dir), set(files))
        _check_no_clash(out_dir, keep, files)
    tmp: Path | None = None
    try:
        tmp = swap.temp_name(out_dir, "new")
        os.mkdir(tmp)
        # the marker first: recover() recognises a half-written folder as microq's
        for rel, data in sorted(files.items(), key=lambda kv: (kv[0] != MARKER, kv[0])):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        swap.carry_over(out_dir, tmp, keep)
        swap.swap_in(tmp, out_dir)
        tmp = None
    except OSError as e:
        raise MicroqError(f"cannot write the C folder {out_dir}: {e.strerror or e}") from e
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return keep


def _check_no_clash(out_dir: Path, keep: list[str], files: dict[str, bytes]) -> None:
    """A file the user added where this compile now writes one of its own (or needs a folder)
    is never overwritten: refuse, naming it."""
    new_dirs = {p.as_posix() for rel in files for p in Path(rel).parents if p.parts}
    for rel in keep:
        path = rel.rstrip("/")
        if path in files or (not rel.endswith("/") and path in new_dirs) or any(
                p.as_posix() in files for p in Path(path).parents if p.parts):
            raise MicroqError(f"{out_dir / path}: microq did not write it and this compile "
                              f"writes '{path}' (or a path through it); move or rename it, or "
                              "choose another -o")


# --- the arena API: a caller-supplied arena, a placeable or omitted static one ---------------
def _doc(text: str) -> list[str]:
    """`text` as lines of an open block comment (" * ..."), wrapped at 100 columns."""
    lines = cf.open_comment_lines(text)
    return [" *" + lines[0][2:], *lines[1:]]


def _arena_api_doc(name: str, up: str) -> list[str]:
    return [" *", *_doc(
        f"The activations live in an arena of {up}_ARENA_SIZE bytes. {name}_invoke and "
        f"{name}_invoke_multi use a static one in {name}.c; place it with "
        f'-D{up}_ARENA_SECTION=\'".sram2"\' (gcc/clang section attribute), or define '
        f"{up}_NO_STATIC_ARENA and pass your own to the _with forms: at least "
        f"{up}_ARENA_SIZE bytes, 4-byte aligned (NULL or misaligned: MQ_ERR_ARG). No state "
        "is kept between calls, so calls with different arenas are independent; models "
        "that never run at the same time can share one arena of the largest size.")]


MULTI_ARGS = "const int8_t *const *inputs, int8_t *const *outputs"
MULTI_WITH_ARGS = "int8_t *arena, " + MULTI_ARGS
SINGLE_ARGS = "const int8_t *input, int8_t *output"
SINGLE_WITH_ARGS = "int8_t *arena, " + SINGLE_ARGS


def _proto(fn: str, args: str, end: str = ";") -> list[str]:
    """`int fn(args)` + end, wrapped as clang-format wraps it (a model name may be 64 long)."""
    return cf.wrap_call("", f"int {fn}({args})", 0, end=end, decl=True)


def _arena_api_decls(name: str, up: str, single: bool) -> list[str]:
    out = []
    if single:
        out += _proto(f"{name}_invoke_with", SINGLE_WITH_ARGS)
    out += _proto(f"{name}_invoke_multi_with", MULTI_WITH_ARGS)
    return out


def _define(macro: str, value: str) -> list[str]:
    """`#define macro value`, continued on a second line as clang-format does when too long."""
    line = f"#define {macro} {value}"
    if len(line) <= cf.WIDTH:
        return [line]
    return [f"#define {macro}".ljust(cf.WIDTH - 1) + "\\", cf.INDENT + value]


def _static_arena(up: str) -> list[str]:
    return [
        f"#if !defined({up}_NO_STATIC_ARENA)",
        f"#if defined({up}_ARENA_SECTION) && defined(__GNUC__)",
        *_define(f"{up}_ARENA_PLACEMENT", f"__attribute__((section({up}_ARENA_SECTION)))"),
        "#else",
        f"#define {up}_ARENA_PLACEMENT",
        "#endif",
        "/* int32_t member: the arena is aligned for any kernel's int8 access. */",
        "static union {",
        "    int32_t align;",
        f"    int8_t bytes[{up}_ARENA_SIZE];",
        f"}} g_arena {up}_ARENA_PLACEMENT;",
        "#endif",
    ]


def _arena_check(has_arena: bool) -> list[str]:
    if not has_arena:
        return ["    (void)arena; /* this model needs no arena */", ""]
    return [
        "    if (arena == 0 || ((uintptr_t)arena & 3u) != 0) {",
        "        return MQ_ERR_ARG;",
        "    }",
        "",
    ]


def _arena_wrappers(name: str, up: str, has_arena: bool, single: bool) -> list[str]:
    static = "g_arena.bytes" if has_arena else "0"
    out = []
    if single:
        out += [
            *_proto(f"{name}_invoke_with", SINGLE_WITH_ARGS, ""),
            "{",
            "    const int8_t *inputs[1];",
            "    int8_t *outputs[1];",
            "",
            "    inputs[0] = input;",
            "    outputs[0] = output;",
            f"    return {name}_invoke_multi_with(arena, inputs, outputs);",
            "}",
            "",
        ]
    guard = [f"#if !defined({up}_NO_STATIC_ARENA)"] if has_arena else []
    out += guard
    out += [
        *_proto(f"{name}_invoke_multi", MULTI_ARGS, ""),
        "{",
        f"    return {name}_invoke_multi_with({static}, inputs, outputs);",
        "}",
        "",
    ]
    if single:
        out += [
            *_proto(f"{name}_invoke", SINGLE_ARGS, ""),
            "{",
            f"    return {name}_invoke_with({static}, input, output);",
            "}",
        ]
    if guard:
        out += [f"#endif /* {up}_NO_STATIC_ARENA */"]
    out.append("")
    return out
