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
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import MicroqError
from ..qir import QGraph
from . import cformat as cf
from .layers import EMITTERS, FAMILY_SOURCES, Ctx, LayerCode
from .plan import Plan, plan_graph

_PKG_RUNTIME = Path(__file__).resolve().parents[1] / "c_runtime"  # when packaged
_REPO_RUNTIME = Path(__file__).resolve().parents[3] / "c_runtime"  # in a checkout


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


def runtime_dir() -> Path:
    for d in (_PKG_RUNTIME, _REPO_RUNTIME):
        if (d / "include" / "mq_types.h").exists():
            return d
    raise MicroqError(f"the microq C runtime was not found (looked in {_PKG_RUNTIME})")


def emit(
    qgraph: QGraph,
    out_dir: Path,
    name: str,
    command: str = "",
    rounding: str = "double",
    extra_files: dict[str, bytes] | None = None,
) -> Summary:
    """Write the C folder for `qgraph` to `out_dir` (replacing it); `command` is recorded in the
    header comment. `rounding` is recorded for builds: "single" needs -DMQ_SINGLE_ROUNDING=1.
    `extra_files` (relative path -> bytes, e.g. ".microq/qgraph.pkl") are written along, in the
    same atomic swap."""
    if not cf.is_identifier(name):
        raise MicroqError(f"model name '{name}' is not a C identifier (use letters, digits, _)")
    if rounding not in ("double", "single"):
        raise MicroqError(f"rounding must be 'double' or 'single', not '{rounding}'")
    unknown = sorted({n.kernel for n in qgraph.nodes if n.kernel not in EMITTERS})
    if unknown:
        raise MicroqError(f"no C emitter for kernel(s): {', '.join(unknown)}")
    plan = plan_graph(qgraph)
    files, summary = _render(qgraph, plan, name, command, rounding, Path(out_dir))
    for rel, data in sorted((extra_files or {}).items()):
        if Path(rel).is_absolute() or ".." in Path(rel).parts or rel in files:
            raise MicroqError(f"extra file '{rel}' must be a new relative path inside the folder")
        files[rel] = data
    write_folder(Path(out_dir), files)
    return summary


def _pointer(qgraph: QGraph, plan: Plan, consts: dict[str, str]):
    def ptr(tensor: str) -> str:
        b = plan.buffer(tensor)
        if b.home == "arena":
            return _arena_ptr(plan, b)
        if b.home == "input":
            return f"inputs[{b.index}]"
        if b.home == "output":
            return f"outputs[{b.index}]"
        return consts[b.root]

    return ptr


def _arena_ptr(plan: Plan, buffer) -> str:
    return f"(g_arena.bytes + B{plan.arena_buffers().index(buffer)}_OFFSET)"


def _render(qgraph: QGraph, plan: Plan, name: str, command: str, rounding: str, out_dir: Path):
    up = name.upper()
    const_roots = [b.root for b in plan.buffers if b.home == "const"]
    consts = {t: f"{name}_const{i}" for i, t in enumerate(const_roots)}
    ctx = Ctx(qgraph, name, _pointer(qgraph, plan, consts))
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
                arr = np.asarray(qgraph.tensors[b.root].const).astype(np.int8)
                code.weights.append((consts[b.root], arr))

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
    files[f"{name}.c"] = _source(qgraph, plan, name, up, command, codes, families, consts).encode()
    files[f"{name}_weights.h"] = _weights_header(name, up, codes).encode()
    files[f"{name}_weights.c"] = _weights_source(name, command, codes).encode()
    files[f"{name}.json"] = _metadata(qgraph, plan, name, command, rounding, summary).encode()
    files.update(_runtime_files(families))
    return files, summary


def _banner(name: str, command: str, what: str) -> str:
    lines = [
        (
            f'/* {what} of model "{cf.comment_text(name)}", generated by microq '
            f"{__version__}. Do not edit."
        ),
        f" * Command: {cf.comment_text(command) or '(library call)'}",
    ]
    return "\n".join(lines) + "\n"


def _io_lines(qgraph: QGraph, up: str, kind: str, names: list[str], single: bool) -> list[str]:
    out = []
    for k, t in enumerate(names):
        qt = qgraph.tensors[t]
        size = np.prod(qt.shape, dtype=np.int64)
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
    lines = [f' * {kind} {k} "{cf.comment_text(t)}": int8 {phys}, row-major.']
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
        f" * {name}_invoke_multi takes one pointer per input/output, in the order above;",
        " * it returns 0 on success, else the first non-zero kernel status (mq_status).",
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
        body.append(f"int {name}_invoke(const int8_t *input, int8_t *output);")
    body.append(f"int {name}_invoke_multi(const int8_t *const *inputs, int8_t *const *outputs);")
    body += ["", f"#endif /* {guard} */", ""]
    return "\n".join(doc + body)


def _source(qgraph, plan, name, up, command, codes, families, consts) -> str:
    out = [_banner(name, command, "Inference code").rstrip("\n"), " */", ""]
    out += [f'#include "{name}.h"', f'#include "{name}_weights.h"']
    out += [f'#include "{f}.h"' for f in families] + ['#include "mq_types.h"', ""]
    arena = plan.arena_buffers()
    if arena:
        out.append("/* Arena offsets (bytes); lifetimes are layer steps, inclusive. */")
        for k, b in enumerate(arena):
            names = ", ".join(f'"{cf.comment_text(t)}"' for t in b.tensors)
            line = f"#define B{k}_OFFSET {b.offset} /* {b.size} B, L{b.first}-L{b.last}: {names} */"
            if len(line) > cf.WIDTH:
                out += cf.comment_lines(f"B{k}: {names}")
                line = f"#define B{k}_OFFSET {b.offset} /* {b.size} B, L{b.first}-L{b.last} */"
            out.append(line)
        out += [
            "",
            "/* int32_t member: the arena is aligned for any kernel's int8 access. */",
            "static union {",
            "    int32_t align;",
            f"    int8_t bytes[{up}_ARENA_SIZE];",
            "} g_arena;",
            "",
        ]
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
    out.append(f"int {name}_invoke_multi(const int8_t *const *inputs, int8_t *const *outputs)")
    out.append("{")
    if any(c.family for c in codes):
        out += ["    mq_status status;", ""]
    for i, (node, code) in enumerate(zip(qgraph.nodes, codes)):
        src = f" <- ONNX: {', '.join(node.source)}" if node.source else ""
        out += cf.comment_lines(f'L{i} {code.summary} "{node.name}"{src}', "    ")
        out += ["    " + line for line in code.call] + [""]
    for k, t in plan.copies:
        src = _pointer(qgraph, plan, consts)(t)
        size = int(np.prod(qgraph.tensors[t].shape, dtype=np.int64))
        out.append(
            f'    /* output {k} "{cf.comment_text(t)}" shares its memory with another tensor */'
        )
        out.append(f"    copy_s8({src}, outputs[{k}], {size});")
    if not any(c.family for c in codes) and not plan.copies:
        out += ["    (void)inputs;", "    (void)outputs;"]
    out += ["    return 0;", "}", ""]
    if len(qgraph.inputs) == 1 and len(qgraph.outputs) == 1:
        out += [
            f"int {name}_invoke(const int8_t *input, int8_t *output)",
            "{",
            "    const int8_t *inputs[1];",
            "    int8_t *outputs[1];",
            "",
            "    inputs[0] = input;",
            "    outputs[0] = output;",
            f"    return {name}_invoke_multi(inputs, outputs);",
            "}",
            "",
        ]
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


def _weights_source(name: str, command: str, codes) -> str:
    out = [
        _banner(name, command, "Weights").rstrip("\n"),
        " */",
        "",
        f'#include "{name}_weights.h"',
        "",
    ]
    for i, code in enumerate(codes):
        for cname, arr in code.weights:
            out.append(cf.array_def("const", cname, arr))
    return "\n".join(out)


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
        "size": int(np.prod(qt.shape, dtype=np.int64)),
    }


def _metadata(qgraph, plan, name, command, rounding, summary: Summary) -> str:
    meta = {
        "name": name,
        "microq_version": __version__,
        "command": command,
        "rounding": rounding,
        "arena_size": plan.arena_size,
        "lower_bound": plan.lower_bound,
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


MARKER = ".microq/generated"  # marks a folder microq may replace as a whole


def write_folder(out_dir: Path, files: dict[str, bytes]) -> None:
    """Write `files` into a temporary sibling of out_dir, then swap it in: a failure leaves
    either the old folder or nothing, never a partial one. An existing out_dir is replaced only
    if it is empty or an earlier microq output (it holds MARKER): never a user's folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MicroqError(f"cannot write the C folder: {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise MicroqError(f"{out_dir} is a folder microq did not write and is not empty; "
                          "choose a new -o (microq replaces its output folder as a whole)")
    files = dict(files)
    files[MARKER] = b"written by microq; the next compile into this folder replaces it whole\n"
    if not out_dir.parent.is_dir():
        raise MicroqError(f"cannot write the C folder {out_dir}: {out_dir.parent} is not a folder")
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
        for rel, data in sorted(files.items()):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a generated folder is ordinary
        if out_dir.exists():
            old = Path(
                tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent)
            )
            backup = old / out_dir.name
            os.replace(out_dir, backup)
            try:
                os.replace(tmp, out_dir)
            except OSError:
                os.replace(backup, out_dir)
                raise
            tmp = None
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
            tmp = None
    except OSError as e:
        raise MicroqError(f"cannot write the C folder {out_dir}: {e.strerror or e}") from e
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
