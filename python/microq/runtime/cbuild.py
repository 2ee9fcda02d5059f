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

# -fno-wrapv: Python's sysconfig CFLAGS (which cffi passes first) carry -fwrapv; the kernels must
# not rely on wrapping signed overflow, as the MCU builds get no such flag.
CFLAGS = ["-std=c99", "-O2", "-fPIC", "-fno-wrapv"]  # strict warnings: tests/test_c_strict.py
# The sanitizer build mode of build_executable: AddressSanitizer + UndefinedBehaviorSanitizer,
# no wrapping overflow, and the first report ends the program (non-zero exit). -O1 and line
# tables only (-g1): reports name file and line, at half the compile time of -O2 -g.
SANITIZE_CFLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-wrapv",
                   "-fno-omit-frame-pointer", "-g1"]
STRICT_CFLAGS = ["-Wall", "-Wextra", "-Werror", "-pedantic"]


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
    # each .c through the object cache (_object: keyed by its bytes, the headers it includes
    # and the flags), so a runtime file shared by many model folders compiles once
    incs = [Path(i).resolve() for i in include_dirs]
    cmd = [host_cc(), *CFLAGS, *[f"-D{k}={v}" for k, v in sorted(defines.items())]]
    objs = [_object(f, cmd, incs) for f in files if f.suffix == ".c"]
    ffi.set_source(
        modname,
        preamble,
        include_dirs=[str(i) for i in incs],
        define_macros=list(defines.items()),
        extra_compile_args=CFLAGS,
        extra_objects=[str(o) for o in objs],
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


def host_cc() -> str:
    """The host C compiler of build_executable: $CC, else gcc, else clang."""
    import shlex

    from ..errors import MicroqError

    for cc in (*shlex.split(os.environ.get("CC", ""))[:1], "gcc", "clang"):
        if shutil.which(cc):
            return cc
    raise MicroqError("no host C compiler found (gcc or clang); install gcc")


def build_executable(
    name: str,
    sources: list[Path],
    include_dirs: list[Path],
    defines: dict[str, str] | None = None,
    sanitize: bool = False,
    plain_sources: tuple[Path, ...] = (),
) -> Path:
    """Compile a standalone host program; returns its path. Objects and programs are cached by
    content (each object by its source, the headers it includes and the flags), so the same
    runtime file in several model folders compiles once.

    `sources` get -std=c99 -O2 and the strict warnings (-Werror); `plain_sources` (generated
    test tables, mostly data) -std=c99 -O0 without -pedantic and without instrumentation,
    which compiles megabytes quickly. sanitize=True adds SANITIZE_CFLAGS to `sources` and the
    link, at -O1."""
    from ..errors import MicroqError

    cc = host_cc()
    defs = [f"-D{k}={v}" for k, v in sorted((defines or {}).items())]
    san = SANITIZE_CFLAGS if sanitize else ["-fno-wrapv"]
    incs = [Path(i).resolve() for i in include_dirs]
    strict = [cc, "-std=c99", "-O1" if sanitize else "-O2", *STRICT_CFLAGS, *san, *defs]
    plain = [cc, "-std=c99", "-O0", "-Wall", "-Wextra", "-Werror", "-fno-wrapv", *defs]
    objs = [_object(Path(src).resolve(), strict, incs) for src in sources]
    objs += [_object(Path(src).resolve(), plain, incs) for src in plain_sources]
    h = hashlib.sha256(" ".join([cc, *san]).encode())
    for o in objs:
        h.update(o.name.encode() + b"\0")
    safe = re.sub(r"[^0-9a-zA-Z_]", "_", name)
    exe = cache_dir() / "exe" / f"{safe}-{h.hexdigest()[:16]}"
    if not exe.exists():
        exe.parent.mkdir(parents=True, exist_ok=True)
        tmp = exe.with_name(f".{exe.name}.{os.getpid()}")
        _run([cc, *san, "-o", str(tmp), *map(str, objs)], exe.parent, f"linking {name}")
        os.replace(tmp, exe)
    if not exe.exists():
        raise MicroqError(f"building {name}: {exe} missing after the build")
    return exe


def _included(src: Path, include_dirs: list[Path]) -> list[Path]:
    """Every header `src` includes with #include "...", transitively, found in its own folder
    or `include_dirs` (the compiler's search order)."""
    seen: dict[Path, None] = {}
    todo = [src]
    while todo:
        f = todo.pop()
        for name in re.findall(r'^\s*#\s*include\s*"([^"]+)"', f.read_text(errors="replace"),
                               flags=re.M):
            for d in (f.parent, *include_dirs):
                h = d / name
                if h.is_file():
                    if h not in seen:
                        seen[h] = None
                        todo.append(h)
                    break
    return list(seen)


def _object(src: Path, cmd: list[str], include_dirs: list[Path]) -> Path:
    h = hashlib.sha256("\0".join(cmd).encode())
    for f in (src, *_included(src, include_dirs)):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    obj = cache_dir() / "obj" / f"{src.stem}-{h.hexdigest()[:16]}.o"
    if not obj.exists():
        obj.parent.mkdir(parents=True, exist_ok=True)
        tmp = obj.with_name(f".{obj.name}.{os.getpid()}")
        _run([*cmd, *[f"-I{d}" for d in include_dirs], "-c", str(src), "-o", str(tmp)],
             obj.parent, f"compiling {src}")
        os.replace(tmp, obj)  # atomic: a half-written object never has the final name
    return obj


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    import subprocess

    from ..errors import MicroqError

    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise MicroqError(f"{what} failed:\n{(p.stderr or p.stdout).strip()[-3000:]}")


def __getattr__(name: str):
    if name == "REPO_C_RUNTIME":  # older name of runtime_root(), resolved lazily
        return runtime_root()
    raise AttributeError(name)
