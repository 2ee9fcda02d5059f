#!/usr/bin/env python3
"""Seeded import fuzzer: mutants of ONNX and int8 TFLite models through `microq compile`.

Every mutant is written to a file and compiled by the `microq compile` command (the click
command, with its error handling) in a worker subprocess under a memory cap (RLIMIT_AS) and a
per-case timeout. Each case ends in one of two good outcomes:

  compiled   the output folder is complete (NAME.h, NAME.c, NAME.json, no temp folder left);
             with --asan (a sample, or every case) it also builds with
             `-std=c99 -Wall -Wextra -Werror -pedantic` and runs one inference clean under
             `-fsanitize=address,undefined -fno-sanitize-recover=all -fno-wrapv`
  refused    exit 1 with a one-line error (no "internal error", no traceback) and no output
             folder, no temp folder left behind

and anything else is a failure, classed as: internal-error, traceback, signal, timeout,
memory-cap, folder (half-written / missing / leftover temp), vague-error (the one line names
neither the model file nor a quoted tensor/node), c-build, c-run (sanitizer).

  python tools/fuzz_import.py --count 200 --seed 1            # 200 ONNX + 200 TFLite mutants
  python tools/fuzz_import.py --count 50 --format tflite --json
  python tools/fuzz_import.py --count 20 --asan all           # build+run every compiled case

Seeds: the bundled demo model, tests/models/*.onnx, and ../shared/models/{onnx,tflite}/* (the
MLPerf Tiny models) when present (MICROQ_SHARED overrides ../shared). Each mutant is identified
by (seed model, case number, --seed): the same arguments give the same mutants.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MICROQ_SHARED", REPO.parent / "shared"))
PY = sys.executable
GOOD = ("compiled", "refused")
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-wrapv"]
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


# --------------------------------------------------------------------------------- seeds
@dataclass
class Seed:
    name: str
    kind: str  # "onnx" | "tflite"
    path: Path


# int8 TFLite models microq imports (the float ones are refused as a whole: poor seeds).
TFLITE_INT8 = ("pretrainedResnet_quant.tflite", "vww_96_int8.tflite", "kws_ref_model.tflite",
               "ad01_int8.tflite", "str_ww_ref_model.tflite")


def find_seeds(shared: Path = SHARED) -> list[Seed]:
    seeds = [Seed("digits_cnn", "onnx", REPO / "python/microq/assets/digits_cnn.onnx")]
    seeds += [Seed(p.stem, "onnx", p) for p in sorted((REPO / "tests/models").glob("*.onnx"))]
    seeds += [Seed(p.stem, "onnx", p) for p in sorted((shared / "models/onnx").glob("*.onnx"))]
    seeds += [Seed(p.stem, "tflite", shared / "models/tflite" / p.name)
              for p in map(Path, TFLITE_INT8) if (shared / "models/tflite" / p.name).is_file()]
    return seeds


# ------------------------------------------------------------------------ ONNX mutations
ODD_INTS = [0, -1, 1, 2, 3, 7, 2000, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, -2000]
ODD_FLOATS = [0.0, -1.0, 1e-30, 1e30, float("inf"), float("-inf"), float("nan"), 1e-45]


def _onnx_mutate(model, rng: random.Random) -> str:
    """Mutate one thing of an onnx.ModelProto in place; return what was done."""
    from onnx import TensorProto, helper

    g = model.graph
    kinds = ["attr", "attr", "attr", "attr_drop", "input_dim", "init_dims", "init_dtype",
             "init_data", "init_data", "int_const", "int_const", "elem_type", "rewire",
             "op_type"]
    kind = rng.choice(kinds)
    nodes = list(g.node)
    if kind in ("attr", "attr_drop"):
        cands = [(n, a) for n in nodes for a in n.attribute
                 if a.type in (a.INT, a.INTS, a.FLOAT, a.FLOATS, a.STRING)]
        if not cands:
            kind = "init_data"
        else:
            n, a = rng.choice(cands)
            if kind == "attr_drop":
                n.attribute.remove(a)
                return f"drop attribute {n.op_type} '{n.name}'.{a.name}"
            if a.type == a.INT:
                a.i = rng.choice(ODD_INTS + [a.i + 1, a.i - 1])
                return f"{n.op_type} '{n.name}'.{a.name} = {a.i}"
            if a.type == a.INTS:
                vals = list(a.ints)
                r = rng.random()
                if vals and r < 0.6:
                    vals[rng.randrange(len(vals))] = rng.choice(ODD_INTS)
                elif r < 0.8:
                    vals = vals[:-1]
                else:
                    vals = vals + [rng.choice(ODD_INTS)]
                del a.ints[:]
                a.ints.extend(vals)
                return f"{n.op_type} '{n.name}'.{a.name} = {vals}"
            if a.type == a.FLOAT:
                a.f = rng.choice(ODD_FLOATS)
                return f"{n.op_type} '{n.name}'.{a.name} = {a.f}"
            if a.type == a.FLOATS and a.floats:
                a.floats[rng.randrange(len(a.floats))] = rng.choice(ODD_FLOATS)
                return f"{n.op_type} '{n.name}'.{a.name} floats changed"
            a.s = rng.choice([b"", b"NOTSET", b"SAME_UPPER", b"\xff\x00", b"reflect"])
            return f"{n.op_type} '{n.name}'.{a.name} = {a.s!r}"
    if kind == "input_dim":
        inits = {i.name for i in g.initializer}
        ins = [i for i in g.input if i.name not in inits and i.type.tensor_type.shape.dim]
        if ins:
            inp = rng.choice(ins)
            dims = inp.type.tensor_type.shape.dim
            k = rng.randrange(len(dims))
            v = rng.choice([0, 1, 2, 3, 1000, 2**31, 7])
            dims[k].dim_value = v
            return f"input '{inp.name}' dim {k} = {v}"
        kind = "init_dims"
    inits = list(g.initializer)
    if kind in ("init_dims", "init_dtype", "init_data") and inits:
        t = rng.choice(inits)
        if kind == "init_dims":
            dims = list(t.dims)
            r = rng.random()
            if dims and r < 0.5:
                dims[rng.randrange(len(dims))] = rng.choice([0, 1, 2, 3, 1000, -1, 2**40])
            elif dims and r < 0.75:
                dims = dims[:-1]
            else:
                dims = dims + [rng.choice([1, 2])]
            del t.dims[:]
            t.dims.extend(dims)
            return f"initializer '{t.name}' dims = {dims} (data unchanged)"
        if kind == "init_dtype":
            t.data_type = rng.choice([0, 99, TensorProto.INT8, TensorProto.DOUBLE,
                                      TensorProto.FLOAT16, TensorProto.INT64, TensorProto.BOOL,
                                      TensorProto.STRING, TensorProto.UINT8, 17])
            return f"initializer '{t.name}' data_type = {t.data_type}"
        # init_data
        r = rng.random()
        if t.raw_data and r < 0.35:
            cut = rng.randrange(len(t.raw_data))
            t.raw_data = t.raw_data[:cut]
            return f"initializer '{t.name}' raw_data truncated to {cut} bytes"
        if t.raw_data and r < 0.5:
            t.raw_data = t.raw_data + bytes(rng.randrange(1, 9))
            return f"initializer '{t.name}' raw_data extended"
        if t.data_type == TensorProto.FLOAT and t.raw_data:
            vals = bytearray(t.raw_data)
            n = len(vals) // 4
            v = rng.choice(ODD_FLOATS + [3.4e38])
            if rng.random() < 0.5:  # one channel / everything
                vals[:] = struct.pack("<f", v) * n
            else:
                k = rng.randrange(n)
                vals[4 * k:4 * k + 4] = struct.pack("<f", v)
            t.raw_data = bytes(vals)
            return f"initializer '{t.name}' values set to {v}"
        if t.raw_data:
            t.raw_data = bytes(rng.randrange(256) for _ in range(len(t.raw_data)))
            return f"initializer '{t.name}' raw_data randomized"
        kind = "int_const"
    if kind == "int_const":
        # int64 initializers / Constant values: Reshape shapes, Slice starts, Pad pads, axes.
        ints = [t for t in g.initializer if t.data_type == TensorProto.INT64]
        consts = [n for n in nodes if n.op_type == "Constant"]
        ct = [(n, a) for n in consts for a in n.attribute if a.type == a.TENSOR
              and a.t.data_type == TensorProto.INT64]
        if ints or ct:
            if ints and (not ct or rng.random() < 0.5):
                t = rng.choice(ints)
                where = f"initializer '{t.name}'"
            else:
                n, a = rng.choice(ct)
                t = a.t
                where = f"Constant '{n.name}'"
            from onnx import numpy_helper

            import numpy as np

            arr = numpy_helper.to_array(t).copy()
            if arr.size:
                flat = arr.reshape(-1)
                flat[rng.randrange(flat.size)] = rng.choice(
                    [0, -1, 1, 2, 2000, -2000, INT64_MAX, INT64_MIN, 100, -100, 5])
                t.CopyFrom(numpy_helper.from_array(flat.reshape(arr.shape).astype(np.int64),
                                                   t.name))
                return f"{where} int64 values = {flat.tolist()[:8]}"
        kind = "rewire"
    if kind == "elem_type":
        vis = list(g.input) + list(g.output)
        vi = rng.choice(vis)
        vi.type.tensor_type.elem_type = rng.choice([0, 99, TensorProto.INT8, TensorProto.DOUBLE,
                                                    TensorProto.INT64, TensorProto.STRING])
        return f"value '{vi.name}' elem_type = {vi.type.tensor_type.elem_type}"
    if kind == "rewire" and nodes:
        n = rng.choice(nodes)
        names = [i for m in nodes for i in list(m.input) + list(m.output) if i]
        if n.input:
            k = rng.randrange(len(n.input))
            new = rng.choice(names + ["", "missing_tensor"])
            n.input[k] = new
            return f"{n.op_type} '{n.name}' input {k} = '{new}'"
        n.input.append(rng.choice(names))
        return f"{n.op_type} '{n.name}' gets an extra input"
    if nodes:
        n = rng.choice(nodes)
        old = n.op_type
        n.op_type = rng.choice(["Conv", "Relu", "Add", "MaxPool", "AveragePool", "Gemm",
                                "Reshape", "Softmax", "LayerNormalization", "Pad", "Slice",
                                "Concat", "Transpose", "MatMul", "Mul", "Sigmoid", "Flatten"])
        return f"node '{n.name}' op {old} -> {n.op_type}"
    return "no-op"


def _flip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    r = rng.random()
    if r < 0.15:
        cut = rng.randrange(len(b))
        return bytes(b[:cut]), f"truncated to {cut} of {len(b)} bytes"
    n = rng.choice([1, 1, 2, 4, 8, 32])
    for _ in range(n):
        k = rng.randrange(len(b))
        b[k] = rng.randrange(256) if rng.random() < 0.5 else b[k] ^ (1 << rng.randrange(8))
    return bytes(b), f"{n} byte flip(s)"


def onnx_mutant(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    import onnx

    if rng.random() < 0.15:
        return _flip(data, rng)
    model = onnx.ModelProto.FromString(data)
    what = [_onnx_mutate(model, rng) for _ in range(1 if rng.random() < 0.8 else 2)]
    return model.SerializeToString(), "; ".join(what)


# ---------------------------------------------------------------------- TFLite mutations
# Options table fields by slot (0-based field number) and struct format.
_OPT_FIELDS = {
    "Conv2DOptions": [(0, "b"), (1, "i"), (2, "i"), (3, "b"), (4, "i"), (5, "i")],
    "DepthwiseConv2DOptions": [(0, "b"), (1, "i"), (2, "i"), (3, "i"), (4, "b"), (5, "i"),
                               (6, "i")],
    "Pool2DOptions": [(0, "b"), (1, "i"), (2, "i"), (3, "i"), (4, "i"), (5, "b")],
    "FullyConnectedOptions": [(0, "b"), (1, "b"), (2, "?"), (3, "?")],
    "SoftmaxOptions": [(0, "f")],
    "AddOptions": [(0, "b"), (1, "?")],
    "SubOptions": [(0, "b"), (1, "?")],
    "MulOptions": [(0, "b")],
}
_ODD_BY_FMT = {
    "b": [0, -1, 1, 2, 3, 4, 5, 6, 7, 100, 127, -128],
    "i": [0, -1, 1, 2, 3, 1000, INT32_MIN, INT32_MAX, 65536, 33],
    "?": [0, 1, 2],
    "f": [0.0, -1.0, float("inf"), float("nan"), 1e30, 1e-30],
}


def _field_pos(tab, slot: int) -> int | None:
    """Absolute byte position of scalar field `slot` of a flatbuffers table, None if absent."""
    o = tab.Offset(4 + 2 * slot)
    return tab.Pos + o if o else None


def _vector(tab, slot: int) -> tuple[int, int] | None:
    """(absolute start, length) of vector field `slot`, None if absent."""
    o = tab.Offset(4 + 2 * slot)
    if not o:
        return None
    return tab.Vector(o), tab.VectorLen(o)


def tflite_mutant(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    import tflite

    if rng.random() < 0.12:
        return _flip(data, rng)
    b = bytearray(data)
    m = tflite.Model.GetRootAsModel(data, 0)
    sg = m.Subgraphs(0)
    n_t, n_op = sg.TensorsLength(), sg.OperatorsLength()

    def put(pos: int, fmt: str, v) -> None:
        struct.pack_into("<" + fmt, b, pos, v)

    kind = rng.choice(["shape", "shape", "op_input", "op_input", "op_output", "option",
                       "option", "option_type", "scale", "scale", "zero_point", "zero_point",
                       "qdim", "dtype", "buffer_index", "buffer_data", "io_index", "opcode"])
    if kind in ("shape", "scale", "zero_point", "qdim", "dtype", "buffer_index"):
        # prefer the tensors the ops use (activations and constants of lowered ops)
        ti = rng.randrange(n_t)
        t = sg.Tensors(ti)
        name = (t.Name() or b"?").decode(errors="replace")
        if kind == "shape":
            vec = _vector(t._tab, 0)
            if vec and vec[1]:
                start, n = vec
                k = rng.randrange(n)
                v = rng.choice([0, -1, 1, 2, 1000, INT32_MIN, INT32_MAX, 3, 65535])
                put(start + 4 * k, "i", v)
                return bytes(b), f"tensor {ti} '{name}' shape[{k}] = {v}"
        if kind == "dtype":
            pos = _field_pos(t._tab, 1)
            if pos is not None:
                v = rng.choice([0, 1, 2, 3, 7, 9, 10, 17, 99, 127])
                put(pos, "b", v)
                return bytes(b), f"tensor {ti} '{name}' type = {v}"
        if kind == "buffer_index":
            pos = _field_pos(t._tab, 2)
            if pos is not None:
                v = rng.choice([0, 1, m.BuffersLength(), m.BuffersLength() + 5, 2**31, 2**32 - 1,
                                rng.randrange(max(1, m.BuffersLength()))])
                put(pos, "I", v)
                return bytes(b), f"tensor {ti} '{name}' buffer = {v}"
        q = t.Quantization()
        if q is not None:
            if kind == "scale":
                vec = _vector(q._tab, 2)
                if vec and vec[1]:
                    k = rng.randrange(vec[1])
                    v = rng.choice([0.0, -1.0, -0.5, float("inf"), float("-inf"), float("nan"),
                                    1e-45, 1e-38, 1e30, 3.4e38])
                    put(vec[0] + 4 * k, "f", v)
                    return bytes(b), f"tensor {ti} '{name}' scale[{k}] = {v}"
            if kind == "zero_point":
                vec = _vector(q._tab, 3)
                if vec and vec[1]:
                    k = rng.randrange(vec[1])
                    v = rng.choice([INT64_MIN, INT64_MAX, 128, -129, 1000, 255, -128, 127,
                                    2**31, -(2**31) - 1])
                    put(vec[0] + 8 * k, "q", v)
                    return bytes(b), f"tensor {ti} '{name}' zero_point[{k}] = {v}"
            if kind == "qdim":
                pos = _field_pos(q._tab, 6)
                if pos is not None:
                    v = rng.choice([-1, 1, 2, 3, 4, 100, INT32_MIN])
                    put(pos, "i", v)
                    return bytes(b), f"tensor {ti} '{name}' quantized_dimension = {v}"
        kind = "op_input"
    if kind == "buffer_data":
        nb = m.BuffersLength()
        cands = [i for i in range(nb) if m.Buffers(i).DataLength() > 0]
        if cands:
            bi = rng.choice(cands)
            buf = m.Buffers(bi)
            o = buf._tab.Offset(4)
            pos = buf._tab.Pos + o  # the uoffset to the data vector
            r = rng.random()
            if r < 0.5:
                v = rng.choice([0, 4, 2**31, 2**32 - 1, len(b), len(b) - 4,
                                rng.randrange(len(b))])
                put(pos, "I", v)
                return bytes(b), f"buffer {bi} data offset = {v}"
            start = buf._tab.Vector(o)
            v = rng.choice([0, 1, 2**31 - 1, 2**32 - 1, buf.DataLength() * 2, len(b)])
            put(start - 4, "I", v)
            return bytes(b), f"buffer {bi} data length = {v}"
        kind = "op_input"
    if kind in ("op_input", "op_output", "option", "option_type", "opcode") and n_op:
        oi = rng.randrange(n_op)
        op = sg.Operators(oi)
        if kind in ("op_input", "op_output"):
            vec = _vector(op._tab, 1 if kind == "op_input" else 2)
            if vec and vec[1]:
                k = rng.randrange(vec[1])
                v = rng.choice([-1, -1, -2, n_t, n_t + 100, INT32_MIN, INT32_MAX,
                                rng.randrange(n_t), rng.randrange(n_t)])
                put(vec[0] + 4 * k, "i", v)
                return bytes(b), f"op {oi} {kind[3:]}[{k}] = {v}"
        if kind == "opcode":
            pos = _field_pos(op._tab, 0)
            if pos is not None:
                v = rng.choice([0, m.OperatorCodesLength(), 2**31, rng.randrange(
                    max(1, m.OperatorCodesLength()))])
                put(pos, "I", v)
                return bytes(b), f"op {oi} opcode_index = {v}"
        if kind == "option_type":
            pos = _field_pos(op._tab, 3)
            if pos is not None:
                v = rng.choice([0, 1, 2, 5, 9, 200, 255])
                put(pos, "B", v)
                return bytes(b), f"op {oi} builtin_options_type = {v}"
        if kind == "option" and op.BuiltinOptions() is not None:
            names = {v: k for k, v in vars(tflite.BuiltinOptions).items()
                     if not k.startswith("_")}
            cls = names.get(op.BuiltinOptionsType())
            table = op.BuiltinOptions()
            if cls in _OPT_FIELDS:
                import flatbuffers

                tab = flatbuffers.table.Table(table.Bytes, table.Pos)
                present = [(s, f) for s, f in _OPT_FIELDS[cls] if _field_pos(tab, s) is not None]
                if present:
                    s, f = rng.choice(present)
                    v = rng.choice(_ODD_BY_FMT[f])
                    put(_field_pos(tab, s), f, v)
                    return bytes(b), f"op {oi} {cls} field {s} = {v}"
    # subgraph inputs / outputs
    vec = _vector(sg._tab, 1 if rng.random() < 0.5 else 2)
    if vec and vec[1]:
        k = rng.randrange(vec[1])
        v = rng.choice([-1, n_t, INT32_MIN, rng.randrange(n_t)])
        put(vec[0] + 4 * k, "i", v)
        return bytes(b), f"subgraph io[{k}] = {v}"
    return _flip(data, rng)


# ------------------------------------------------------------------ calibration samples
def calib_for(model_path: Path, seed_path: Path, n: int = 4):
    """Random samples for the graph inputs of the mutant (its declared shapes with batch N), or
    of the seed when the mutant's are unusable; None if neither parses."""
    import numpy as np
    import onnx

    for p in (model_path, seed_path):
        try:
            m = onnx.load(str(p))
        except Exception:  # noqa: BLE001 - the mutant may not parse; try the seed
            continue
        inits = {i.name for i in m.graph.initializer}
        arrays = {}
        for inp in m.graph.input:
            if inp.name in inits:
                continue
            dims = [d.dim_value if d.HasField("dim_value") else 1
                    for d in inp.type.tensor_type.shape.dim]
            shape = [n] + [int(d) for d in dims[1:]]
            if any(d <= 0 for d in shape) or int(np.prod(shape)) > 4_000_000:
                arrays = None
                break
            rng = np.random.default_rng(0)
            arrays[inp.name] = rng.uniform(0, 1, size=shape).astype(np.float32)
        if arrays:
            return arrays
    return None


# ------------------------------------------------------------------------------ cases
@dataclass
class Case:
    seed: str
    kind: str
    index: int
    what: str
    model: str  # path of the mutant
    calib: str | None
    out: str
    outcome: str = ""  # compiled | refused | failure class
    message: str = ""
    c_checked: bool = False
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def make_cases(seeds: list[Seed], count: int, master_seed: int, work: Path,
               kinds=("onnx", "tflite")) -> list[Case]:
    import numpy as np

    cases = []
    for kind in kinds:
        pool = [s for s in seeds if s.kind == kind]
        if not pool:
            continue
        for i in range(count):
            s = pool[i % len(pool)]
            rng = random.Random(f"{master_seed}/{kind}/{s.name}/{i}")
            data = s.path.read_bytes()
            mutate = onnx_mutant if kind == "onnx" else tflite_mutant
            try:
                mutated, what = mutate(data, rng)
            except Exception as e:  # noqa: BLE001 - a mutator bug must not stop the run
                mutated, what = _flip(data, rng)
                what += f" (mutator fell back: {type(e).__name__})"
            d = work / f"{kind}_{i:05d}"
            d.mkdir(parents=True, exist_ok=True)
            path = d / f"{s.name}.{kind}"
            path.write_bytes(mutated)
            calib = None
            if kind == "onnx":
                arrays = calib_for(path, s.path)
                if arrays is not None:
                    calib = str(d / "calib.npz")
                    np.savez(calib, **arrays)
            cases.append(Case(s.name, kind, i, what, str(path), calib, str(d / "out" / "net")))
    return cases


# ------------------------------------------------------------------------------ worker
class CaseTimeout(BaseException):
    """Raised by SIGALRM inside a case; a BaseException so that no `except Exception` eats it."""


def _worker(mem_mb: int, timeout: float) -> None:
    """Read case JSON lines on stdin, compile each through the `microq compile` command in this
    process, print one result JSON line per case. Runs under RLIMIT_AS."""
    import io
    import resource
    import signal
    import traceback

    sys.path.insert(0, os.environ.get("MICROQ_FUZZ_SRC", str(REPO / "python")))
    import click

    from microq import cli

    limit = mem_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # The compile command also links for the default MCU when the Arm toolchain is installed:
    # seconds per case that test nothing about the import. Skip it.
    cli._default_target_size = lambda out_dir: (None, "")

    def alarm(signum, frame):
        raise CaseTimeout()

    signal.signal(signal.SIGALRM, alarm)
    for line in sys.stdin:
        c = json.loads(line)
        args = ["compile", c["model"], "-o", c["out"], "--name", "net", "--json"]
        if c["calib"]:
            args += ["--calib", c["calib"]]
        out, err = io.StringIO(), io.StringIO()
        t0 = time.perf_counter()
        res = {"outcome": "", "message": ""}
        old = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            cli.main.main(args, prog_name="microq", standalone_mode=False)
            res["outcome"] = "compiled"
        except click.ClickException as e:
            res["outcome"] = "refused"
            res["message"] = e.format_message()
        except CaseTimeout:
            res["outcome"], res["message"] = "timeout", f"more than {timeout:.0f} s"
        except MemoryError:
            res["outcome"], res["message"] = "memory-cap", "MemoryError outside the command"
        except BaseException as e:  # noqa: BLE001 - what escaped the command is a failure
            tb = traceback.format_exc().strip().splitlines()
            res["outcome"] = "traceback"
            res["message"] = f"{type(e).__name__}: {e} @ {tb[-3:] if tb else ''}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            sys.stdout, sys.stderr = old
        res["seconds"] = round(time.perf_counter() - t0, 3)
        if "Traceback (most recent call last)" in out.getvalue() + err.getvalue():
            res["outcome"], res["message"] = "traceback", (out.getvalue() + err.getvalue())[-400:]
        print(json.dumps(res), flush=True)


def _classify(c: Case) -> None:
    """Turn a raw worker result into the final outcome class (checks the folder)."""
    out = Path(c.out)
    leftovers = [p.name for p in out.parent.glob(f".{out.name}.*")] if out.parent.is_dir() else []
    if c.outcome == "refused":
        msg = c.message
        if "internal error" in msg:
            c.outcome = "internal-error"
        elif "MemoryError" in msg:
            c.outcome = "memory-cap"
        elif "\n" in msg.strip() or "Traceback" in msg:
            c.outcome = "traceback"
        elif out.exists():
            c.outcome, c.message = "folder", f"refused but {out} exists: " + msg
        elif Path(c.model).name not in msg and not re.search(r"'[^']+'", msg):
            c.outcome = "vague-error"  # an error must name the file or the node/tensor
    elif c.outcome == "compiled":
        need = [out / "net.h", out / "net.c", out / "net.json"]
        missing = [p.name for p in need if not p.is_file()]
        if missing:
            c.outcome, c.message = "folder", f"compiled but missing {missing}"
    if leftovers and c.outcome in GOOD:
        c.outcome, c.message = "folder", f"temp folder(s) left: {leftovers}"


def run_cases(cases: list[Case], mem_mb: int, timeout: float, log=None) -> None:
    """Run every case in worker subprocesses (one at a time; a worker that dies or hangs is
    replaced and its current case is a failure)."""
    import selectors

    todo = list(cases)
    while todo:
        src = os.environ.get("MICROQ_FUZZ_SRC", str(REPO / "python"))
        env = dict(os.environ, PYTHONPATH=src, MICROQ_FUZZ_SRC=src, MICROQ_DEBUG="")
        env.pop("MICROQ_DEBUG")
        proc = subprocess.Popen([PY, str(Path(__file__).resolve()), "--worker",
                                 "--mem-mb", str(mem_mb), "--timeout", str(timeout)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, bufsize=1)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        while todo:
            c = todo[0]
            proc.stdin.write(json.dumps(asdict(c)) + "\n")
            proc.stdin.flush()
            # the worker's own alarm fires at `timeout`; the startup of a fresh worker (imports)
            # gets a margin
            ready = sel.select(timeout + 60)
            line = proc.stdout.readline() if ready else ""
            todo.pop(0)
            if not line:
                if not ready:
                    proc.kill()
                    c.outcome, c.message = "timeout", "worker hung (no alarm)"
                else:
                    rc = proc.wait()
                    err = proc.stderr.read()[-300:]
                    c.outcome = "memory-cap" if "MemoryError" in err else "signal"
                    c.message = f"worker exit {rc}: {err.strip().splitlines()[-1:] if err else ''}"
                _classify(c)
                if log:
                    log(c)
                break
            r = json.loads(line)
            c.outcome, c.message, c.seconds = r["outcome"], r["message"], r["seconds"]
            _classify(c)
            if log:
                log(c)
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------- C build + ASan run
HARNESS = """#include <stdint.h>
#include "net.h"

%(buffers)s
int main(void)
{
    const int8_t *inputs[%(n_in)d];
    int8_t *outputs[%(n_out)d];
    int32_t j;
%(fill)s    return net_invoke_multi(inputs, outputs) != 0 ? 3 : 0;
}
"""


def harness(sizes_in: list[int], sizes_out: list[int]) -> str:
    """main(): one exactly sized static buffer per input and output (so that ASan sees a write
    one byte past any of them), inputs filled with a fixed pattern, one inference."""
    bufs = [f"static int8_t in{i}[{n}];" for i, n in enumerate(sizes_in)]
    bufs += [f"static int8_t out{i}[{n}];" for i, n in enumerate(sizes_out)]
    fill = []
    for i, n in enumerate(sizes_in):
        fill += [f"    for (j = 0; j < {n}; j++) {{",
                 f"        in{i}[j] = (int8_t)((j * 37 + {11 * i}) % 256 - 128);", "    }",
                 f"    inputs[{i}] = in{i};"]
    fill += [f"    outputs[{i}] = out{i};" for i in range(len(sizes_out))]
    return HARNESS % dict(buffers="\n".join(bufs) + "\n", n_in=len(sizes_in),
                          n_out=len(sizes_out), fill="\n".join(fill) + "\n")


_OBJ_CACHE = Path(tempfile.gettempdir()) / "microq_fuzz_objcache"


_CC_IDS: dict[str, bytes] = {}


def _cc_id(cc: str) -> bytes:
    """The compiler's path and version (part of the object cache key)."""
    if cc not in _CC_IDS:
        r = subprocess.run([cc, "--version"], capture_output=True, text=True)
        _CC_IDS[cc] = (str(shutil.which(cc)) + r.stdout).encode()
    return _CC_IDS[cc]


def check_c(folder: Path, cc: str = "gcc", timeout: float = 60) -> tuple[str, str]:
    """Build the generated folder with strict flags and sanitizers, run one inference.
    Returns ("compiled", "") or (failure class, message)."""
    meta = json.loads((folder / "net.json").read_text())
    n_in, n_out = len(meta["inputs"]), len(meta["outputs"])
    if n_in == 0 or n_out == 0:
        return "c-build", f"{n_in} inputs, {n_out} outputs"
    sizes_in = [int(t["size"]) for t in meta["inputs"]]
    sizes_out = [int(t["size"]) for t in meta["outputs"]]
    build = Path(tempfile.mkdtemp(prefix="mqfuzz_c_"))
    try:
        (build / "main.c").write_text(harness(sizes_in, sizes_out))
        _OBJ_CACHE.mkdir(exist_ok=True)
        flags = STRICT + SANITIZE + ["-O1", "-g", "-I", str(folder)]
        objs = []
        hdrs = b"".join(p.read_bytes() for p in sorted(folder.glob("mq_*.h")))
        for src in sorted(folder.glob("*.c")) + [build / "main.c"]:
            text = src.read_bytes()
            cacheable = src.name.startswith("mq_")
            key = hashlib.sha256(text + hdrs + " ".join(flags[:-2]).encode() + _cc_id(cc))
            obj = (_OBJ_CACHE / (key.hexdigest() + ".o")) if cacheable else build / (src.stem + ".o")
            if not obj.is_file():
                r = subprocess.run([cc, *flags, "-c", str(src), "-o", str(obj) + ".part"],
                                   capture_output=True, text=True, timeout=timeout)
                if r.returncode != 0 or r.stderr.strip():
                    lines = r.stderr.strip().splitlines()
                    first = [ln for ln in lines if "error" in ln or "warning" in ln] or lines
                    return "c-build", f"{src.name}: {(first or ['?'])[0]}"
                os.replace(str(obj) + ".part", obj)
            objs.append(str(obj))
        exe = build / "run"
        r = subprocess.run([cc, *SANITIZE, *[str(o) for o in objs], "-o", str(exe)],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            return "c-build", f"link: {(r.stderr.strip().splitlines() or ['?'])[0]}"
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        try:
            r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=timeout,
                               env=env)
        except subprocess.TimeoutExpired:
            return "c-run", "inference timed out"
        if r.returncode == 3 and not r.stderr.strip():
            return "c-run", "net_invoke_multi returned an error status (a kernel refused its " \
                            "arguments at run time: compile should have refused the model)"
        if r.returncode != 0 or "runtime error" in r.stderr or "Sanitizer" in r.stderr:
            first = [ln for ln in r.stderr.splitlines() if "ERROR" in ln or "runtime error" in ln]
            return "c-run", f"exit {r.returncode}: {(first or r.stderr.splitlines() or ['?'])[0]}"
        return "compiled", ""
    finally:
        shutil.rmtree(build, ignore_errors=True)


# -------------------------------------------------------------------------------- main
def summarize(cases: list[Case]) -> dict:
    per: dict[str, dict[str, int]] = {}
    for c in cases:
        row = per.setdefault(f"{c.kind}:{c.seed}", {})
        row[c.outcome] = row.get(c.outcome, 0) + 1
    failures = [asdict(c) for c in cases if c.outcome not in GOOD]
    return {"per_seed": per, "total": len(cases),
            "compiled": sum(c.outcome == "compiled" for c in cases),
            "refused": sum(c.outcome == "refused" for c in cases),
            "c_checked": sum(c.c_checked for c in cases),
            "failures": failures}


def table(summary: dict) -> str:
    classes = ["compiled", "refused"] + sorted(
        {k for row in summary["per_seed"].values() for k in row} - set(GOOD))
    w = max([len(s) for s in summary["per_seed"]] + [10])
    lines = [f"{'seed':<{w}}  {'cases':>5}  " + "  ".join(f"{k:>9}" for k in classes)]
    for seed, row in summary["per_seed"].items():
        lines.append(f"{seed:<{w}}  {sum(row.values()):>5}  "
                     + "  ".join(f"{row.get(k, 0):>9}" for k in classes))
    lines.append(f"total {summary['total']} cases, {summary['compiled']} compiled "
                 f"({summary['c_checked']} built and run under ASan+UBSan), "
                 f"{summary['refused']} refused, {len(summary['failures'])} failures")
    for f in summary["failures"]:
        lines.append(f"  FAIL {f['outcome']}: {f['kind']}:{f['seed']} #{f['index']} "
                     f"[{f['what']}] -> {f['message'][:300]}")
    return "\n".join(lines)


def fuzz(count: int, seed: int, kinds=("onnx", "tflite"), asan: str = "sample",
         mem_mb: int = 3072, timeout: float = 120, seeds: list[Seed] | None = None,
         work: Path | None = None, verbose: bool = False,
         asan_per_kind: int | None = None) -> dict:
    """Make and run the mutants; return the summary (see summarize). asan="sample" builds and
    runs the first compiled case of each seed model (at most `asan_per_kind` per format)."""
    seeds = find_seeds() if seeds is None else seeds
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="mqfuzz_")) if own else work
    try:
        cases = make_cases(seeds, count, seed, work, kinds)

        def log(c: Case) -> None:
            if verbose:
                print(f"{c.kind}:{c.seed} #{c.index} {c.outcome:>9} {c.seconds:6.2f}s "
                      f"[{c.what}] {c.message[:160]}", file=sys.stderr, flush=True)

        run_cases(cases, mem_mb, timeout, log)
        seen: set[str] = set()
        per_kind: dict[str, int] = {}
        for c in cases:
            if c.outcome != "compiled" or asan == "none":
                continue
            if asan == "sample" and (c.seed in seen or (
                    asan_per_kind is not None and per_kind.get(c.kind, 0) >= asan_per_kind)):
                continue
            seen.add(c.seed)
            per_kind[c.kind] = per_kind.get(c.kind, 0) + 1
            c.c_checked = True
            c.outcome, msg = check_c(Path(c.out))
            c.message = msg or c.message
            if verbose and c.outcome != "compiled":
                print(f"  C: {c.outcome} {msg}", file=sys.stderr)
        return summarize(cases)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100, help="mutants per format (default 100)")
    ap.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    ap.add_argument("--format", choices=["onnx", "tflite", "both"], default="both")
    ap.add_argument("--asan", choices=["none", "sample", "all"], default="sample",
                    help="build and run compiled cases under ASan+UBSan: one per seed model "
                         "(sample, default), every one (all), or none")
    ap.add_argument("--asan-max", type=int, default=None,
                    help="with --asan sample: at most this many builds per format")
    ap.add_argument("--mem-mb", type=int, default=3072, help="RLIMIT_AS of the compile (MiB)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per compile")
    ap.add_argument("--microq", type=str, default=None,
                    help="compile with the microq package in this folder (default: this "
                         "checkout's python/), e.g. an older version for a before/after audit")
    ap.add_argument("--keep", type=str, default=None, help="keep the mutants in this folder")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per case on stderr")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        _worker(a.mem_mb, a.timeout)
        return 0
    if a.microq:
        os.environ["MICROQ_FUZZ_SRC"] = str(Path(a.microq).resolve())
    kinds = ("onnx", "tflite") if a.format == "both" else (a.format,)
    work = Path(a.keep) if a.keep else None
    if work:
        work.mkdir(parents=True, exist_ok=True)
    s = fuzz(a.count, a.seed, kinds, a.asan, a.mem_mb, a.timeout, work=work, verbose=a.verbose,
             asan_per_kind=a.asan_max)
    print(json.dumps(s, indent=2) if a.json else table(s))
    return 1 if s["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
