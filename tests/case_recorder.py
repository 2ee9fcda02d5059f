"""pytest plugin (``-p case_recorder``): records every c_runtime call the kernel tests make and
writes them out as C case tables (c_runtime/targets/case_harness.c runs them).

Used by tests/case_tables.py, which runs tests/test_kernel_*.py once in a subprocess with this
plugin and MICROQ_RECORD_CASES=<folder>. The kernel tests run unchanged: their clib /
clib_single fixtures get (ffi, lib) proxies from a patched cbuild.build_c_runtime; each call
into the library is executed for real and recorded with its arguments (structs by value,
buffers by content), the state of every buffer it can reach after the call and its return
value. The tests then assert C == numpy reference as usual, so a recording is written only
when every recorded test passed: the recorded results are the reference's.

Output, per build variant (rounding mode): cases_<variant>.c (one C function per call, see
emit_case) and cases_<variant>.json ([pytest node id, kernel function] of each case, in order).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

INCLUDE = Path(__file__).resolve().parents[1] / "c_runtime" / "include"
# Element types the kernels' buffers use -> numpy dtypes.
DTYPES = {"int8_t": np.int8, "uint8_t": np.uint8, "int16_t": np.int16, "int32_t": np.int32,
          "uint32_t": np.uint32, "int64_t": np.int64}


def c_int(v: int) -> str:
    """A C literal for any int64 value (INT32_MIN / INT64_MIN cannot be written directly)."""
    v = int(v)
    if v == -(2**63):
        return "(-9223372036854775807LL - 1)"
    if v == -(2**31):
        return "(-2147483647 - 1)"
    if abs(v) >= 2**31:
        return f"{v}LL"
    return str(v)


class Recorder:
    def __init__(self):
        # variant -> ([((nodeid, function), C text of the case)], its data pool)
        self.variants: dict[str, tuple[list[tuple[tuple[str, str], str]], Pool]] = {}
        self.nodeid = "?"
        self.entries: dict[int, tuple[object, int, object]] = {}  # addr -> (cdata, bytes, type)
        self.unresolved: list[str] = []
        self.failed = False

    def register(self, ffi, c) -> None:
        t = ffi.typeof(c)
        if t.kind not in ("pointer", "array"):
            return
        addr = int(ffi.cast("uintptr_t", c))
        if addr == 0:
            return
        size = ffi.sizeof(c) if t.kind == "array" else ffi.sizeof(t.item)
        self.entries[addr] = (c, size, t.item)

    def find(self, addr: int) -> tuple[int, int, object] | None:
        """(start, bytes, item type) of the registered buffer holding addr."""
        if addr in self.entries:
            _, size, item = self.entries[addr]
            return addr, size, item
        for start, (_, size, item) in self.entries.items():
            if start <= addr < start + size:
                return start, size, item
        return None


REC = Recorder()


class Call:
    """Serializes the arguments of one call into C."""

    def __init__(self, ffi):
        self.ffi = ffi
        self.bufs: dict[int, dict] = {}  # start addr -> {id, bytes, ctype}
        self.decls: list[str] = []  # local declarations (structs, pointer arrays)
        self.n_locals = 0

    def buffer_expr(self, addr: int, want_item: str | None = None) -> str:
        found = REC.find(addr)
        if found is None:
            raise LookupError(f"pointer {addr:#x} into no buffer made by ffi.new/from_buffer")
        start, size, item = found
        if item.kind != "primitive" or item.cname not in DTYPES:
            raise LookupError(f"pointer to {item.cname}")
        b = self.bufs.setdefault(start, {"id": len(self.bufs), "bytes": size, "ctype": item.cname})
        esize = np.dtype(DTYPES[item.cname]).itemsize
        off = addr - start
        if off % esize:
            raise LookupError("unaligned interior pointer")
        return f"b{b['id']}" + (f" + {off // esize}" if off else "")

    def value(self, v, t) -> str:
        """C expression of value v of cffi type t (a function parameter or struct field)."""
        ffi = self.ffi
        if t.kind == "primitive" or t.kind == "enum":
            return c_int(int(v) if not isinstance(v, ffi.CData) else int(ffi.cast("int64_t", v)))
        if t.kind == "array":  # array field of a struct
            return "{" + ", ".join(self.value(v[i], t.item) for i in range(t.length)) + "}"
        if t.kind == "struct":
            return "{" + ", ".join(self.value(getattr(v, name), f.type)
                                   for name, f in t.fields) + "}"
        if t.kind == "pointer":
            addr = int(ffi.cast("uintptr_t", v))
            if addr == 0:
                return "NULL"
            item = t.item
            if item.kind == "struct":
                local = f"s{self.n_locals}"
                self.n_locals += 1
                init = self.value(ffi.cast(f"{item.cname} *", addr)[0], item)
                self.decls.append(f"    {item.cname} {local} = {init};")
                return f"&{local}"
            if item.kind == "pointer":  # an array of pointers (mq_concat_s8's inputs)
                found = REC.find(addr)
                if found is None:
                    raise LookupError("pointer array not made by ffi.new")
                start, size, _ = found
                n = (start + size - addr) // ffi.sizeof(item)
                arr = ffi.cast(f"{item.cname} *", addr)
                elems = [self.value(arr[i], item) for i in range(n)]
                local = f"p{self.n_locals}"
                self.n_locals += 1
                cname = item.item.cname
                self.decls.append(f"    const {cname} *{local}[{max(n, 1)}] = "
                                  f"{{{', '.join(elems) or 'NULL'}}};")
                return local
            return self.buffer_expr(addr)
        raise LookupError(f"argument of kind {t.kind}")

    def snapshot(self) -> dict[int, bytes]:
        return {s: bytes(self.ffi.buffer(self.ffi.cast("char *", s), b["bytes"]))
                for s, b in self.bufs.items()}


_BYTE_TOKENS = [chr(b) if 0x20 <= b < 0x7F and chr(b) not in '"\\?' else f"\\{b:03o}"
                for b in range(256)]


def c_bytes(data: bytes) -> str:
    """A C string literal holding `data` exactly: printable ASCII as is, every other byte as a
    three-digit octal escape (which never swallows a following digit). '?' is escaped too, so
    no trigraph can form. Byte strings compile far faster than integer initializer lists."""
    out = [_BYTE_TOKENS[b] for b in data]
    lines, cur, width = [], [], 0
    for tok in out:  # lines of whole tokens, never a split escape
        cur.append(tok)
        width += len(tok)
        if width >= 100:
            lines.append("".join(cur))
            cur, width = [], 0
    if cur or not lines:
        lines.append("".join(cur))
    return "\n    ".join(f'"{line}"' for line in lines)


class Pool:
    """The const byte arrays of one variant's cases, each distinct content stored once."""

    def __init__(self):
        self.names: dict[bytes, str] = {}
        self.chunks: list[str] = []

    def name(self, data: bytes) -> str:
        if data not in self.names:
            n = f"d{len(self.names)}"
            self.names[data] = n
            # Sized explicitly: the literal's terminating NUL is not stored (C99 6.7.8p14).
            self.chunks.append(f"MQ_CASE_DATA static const unsigned char {n}"
                               f"[{max(len(data), 1)}] = {c_bytes(data)};\n")
        return self.names[data]


def emit_case(idx: int, fname: str, call: Call, args: list[str], pre: dict, post: dict,
              ret: int, pool: Pool) -> str:
    """case<idx>(): copies the recorded initial contents of every buffer into fresh ones
    (mq_case_buffer), calls the kernel, checks the return value and every buffer's contents
    after the call (those it changed and those it must not have)."""
    body = []
    checks = []
    for start, b in call.bufs.items():
        i, ctype = b["id"], b["ctype"]
        body.append(f"    {ctype} *b{i} = ({ctype} *)mq_case_buffer({pool.name(pre[start])}, "
                    f"{b['bytes']}u);")
        checks.append(f"    mq_case_check({idx}u, {i}u, b{i}, {pool.name(post[start])}, "
                      f"{b['bytes']}u);")
    lines = [f"static void case{idx}(void)", "{", *body, *call.decls,
             f"    mq_case_ret({idx}u, (int64_t)({fname}({', '.join(args)})), {c_int(ret)});",
             *checks, "    mq_case_end();", "}", ""]
    return "\n".join(lines)


class LibProxy:
    def __init__(self, ffi, lib, variant: str):
        self._ffi, self._lib, self._variant = ffi, lib, variant

    def __getattr__(self, name):
        f = getattr(self._lib, name)
        if not name.startswith("mq_") or not callable(f):
            return f
        ffi, variant = self._ffi, self._variant
        ftype = ffi.typeof(ffi.addressof(self._lib, name))

        def wrapper(*args):
            call = Call(ffi)
            try:
                exprs = [call.value(a, t) for a, t in zip(args, ftype.args)]
            except LookupError as e:
                REC.unresolved.append(f"{REC.nodeid}: {name}: {e}")
                return f(*args)
            pre = call.snapshot()
            ret = f(*args)
            post = call.snapshot()
            cases, pool = REC.variants.setdefault(variant, ([], Pool()))
            r = ret if ftype.result.kind in ("primitive", "enum") else 0
            cases.append(((REC.nodeid, name), emit_case(len(cases), name, call, exprs, pre, post,
                                                int(r), pool)))
            return ret

        return wrapper


class FFIProxy:
    def __init__(self, ffi):
        self._ffi = ffi

    def __getattr__(self, name):
        return getattr(self._ffi, name)

    def new(self, *args, **kw):
        c = self._ffi.new(*args, **kw)
        REC.register(self._ffi, c)
        return c

    def from_buffer(self, *args, **kw):
        c = self._ffi.from_buffer(*args, **kw)
        REC.register(self._ffi, c)
        return c


def pytest_configure(config):
    from microq.runtime import cbuild

    real = cbuild.build_c_runtime

    def recording_build(defines=None):
        ffi, lib = real(defines)
        d = dict(defines or {})
        variant = "single" if d.pop("MQ_SINGLE_ROUNDING", "0") == "1" else "double"
        if d:
            variant += "_" + "_".join(f"{k}{v}" for k, v in sorted(d.items()))
        return FFIProxy(ffi), LibProxy(ffi, lib, variant)

    cbuild.build_c_runtime = recording_build


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    REC.nodeid = item.nodeid
    REC.entries.clear()


def pytest_runtest_logreport(report):
    if report.failed:
        REC.failed = True


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("MICROQ_RECORD_CASES")
    if not out or REC.failed or exitstatus != 0:
        return
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for variant, (cases, pool) in REC.variants.items():
        includes = "".join(f'#include "{h.name}"\n' for h in sorted(INCLUDE.glob("mq_*.h"))
                           if h.name != "mq_requant.h")
        head = ("/* Generated by tests/case_recorder.py from tests/test_kernel_*.py: one "
                "function per recorded c_runtime call. */\n#include <stddef.h>\n"
                '#include <stdint.h>\n\n#include "case_harness.h"\n' + includes + "\n")
        runner = ["void mq_cases_run(void)", "{"]
        runner += [f"    case{i}();" for i in range(len(cases))]
        runner += ["}", f"const uint32_t mq_cases_count = {len(cases)}u;", ""]
        body = "\n".join(c for _, c in cases)
        text = head + "".join(pool.chunks) + "\n" + body + "\n" + "\n".join(runner)
        (out / f"cases_{variant}.c").write_text(text)
        (out / f"cases_{variant}.json").write_text(json.dumps([n for n, _ in cases]))
    (out / "unresolved.json").write_text(json.dumps(REC.unresolved, indent=1))
