"""Compile C sources into a cffi extension module, cached by content hash.

Used by the host runner (a generated model folder) and by the kernel tests (c_runtime itself).
cffi out-of-line API mode: the same C sources the MCU build uses, compiled with -std=c99 and
warnings as errors, so a warning on the host is caught here too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from .locate import runtime_root

CFLAGS = ["-std=c99", "-O2", "-fPIC"]  # strict warnings: tests/test_c_strict.py


def cache_dir() -> Path:
    d = Path(os.environ.get("MICROQ_CACHE", Path.home() / ".cache" / "microq"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def cdef_from_headers(headers: list[Path]) -> str:
    """Turn cdef-clean C headers into cffi cdef text: integer #defines are substituted (cffi
    cannot size arrays with macro names), every other preprocessor line is dropped."""
    text = "\n".join(Path(h).read_text() for h in headers)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    defines = dict(re.findall(r"^\s*#define\s+(\w+)\s+\(?(-?\d+)[uUlL]*\)?\s*$", text, flags=re.M))
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for name, value in defines.items():
        body = re.sub(rf"\b{name}\b", value, body)
    return body + "\n" + "\n".join(f"#define {k} {v}" for k, v in defines.items()) + "\n"


def build(
    name: str,
    sources: list[Path],
    include_dirs: list[Path],
    cdef: str,
    preamble: str,
    defines: dict[str, str] | None = None,
):
    """Build (or load from the cache) a cffi module; returns (ffi, lib)."""
    defines = defines or {}
    h = hashlib.sha256()
    for part in (name, cdef, preamble, repr(sorted(defines.items())), " ".join(CFLAGS)):
        h.update(part.encode())
    files = sorted({Path(s).resolve() for s in sources})
    for inc in include_dirs:
        files += sorted(Path(inc).glob("*.h"))
    for f in files:
        h.update(str(f.name).encode())
        h.update(f.read_bytes())
    modname = f"_mq_{re.sub(r'[^0-9a-zA-Z_]', '_', name)}_{h.hexdigest()[:16]}"
    out = cache_dir() / modname
    so = next(out.glob(f"{modname}*.so"), None) if out.exists() else None
    if so is None:
        so = _compile(modname, files, include_dirs, cdef, preamble, defines, out)
    spec = importlib.util.spec_from_file_location(modname, so)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod.ffi, mod.lib


def _compile(modname, files, include_dirs, cdef, preamble, defines, out: Path) -> Path:
    import cffi  # imported lazily: only builds need it

    ffi = cffi.FFI()
    ffi.cdef(cdef)
    ffi.set_source(
        modname,
        preamble,
        sources=[str(f) for f in files if f.suffix == ".c"],
        include_dirs=[str(Path(i).resolve()) for i in include_dirs],
        define_macros=list(defines.items()),
        extra_compile_args=CFLAGS,
    )
    tmp = Path(tempfile.mkdtemp(prefix=modname, dir=cache_dir()))
    try:
        so = Path(ffi.compile(tmpdir=str(tmp), verbose=False))
        out.mkdir(parents=True, exist_ok=True)
        final = out / so.name
        shutil.move(str(so), final)  # atomic enough: a partial build never lands in `out`
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_c_runtime(defines: dict[str, str] | None = None):
    """The whole c_runtime as one cffi module (kernel tests)."""
    root = runtime_root()  # checkout or installed wheel: runtime/locate.py
    inc = root / "include"
    headers = sorted(p for p in inc.glob("mq_*.h") if p.name not in ("mq_requant.h",))
    headers.sort(key=lambda p: p.name != "mq_types.h")  # types first
    cdef = cdef_from_headers(headers)
    preamble = "\n".join(f'#include "{p.name}"' for p in headers)
    # internal headers of src/ (e.g. mq_dsp.h) are hashed too: build() compiles only the .c
    sources = sorted((root / "src").glob("*.[ch]"))
    return build("runtime", sources, [inc], cdef, preamble, defines)


def __getattr__(name: str):
    if name == "REPO_C_RUNTIME":  # older name of runtime_root(), resolved lazily
        return runtime_root()
    raise AttributeError(name)
