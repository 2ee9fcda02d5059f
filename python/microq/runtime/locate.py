"""The one place that finds microq's C runtime (kernels, headers, MCU target files, QEMU plugin).

The runtime lives at the repository's top level, `c_runtime/`, and the wheel ships the same
tree as the data package `microq/c_runtime/` (pyproject maps one onto the other). Both are
found relative to this package: installed, `<site-packages>/microq/c_runtime`; in a checkout
(`PYTHONPATH=python` or an editable install), `<repo>/python/microq/../../c_runtime`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..errors import MicroqError

_PACKAGE = Path(__file__).resolve().parents[1]  # .../microq
CANDIDATES = (
    _PACKAGE / "c_runtime",  # installed wheel
    _PACKAGE.parents[1] / "c_runtime",  # checkout: <repo>/python/microq -> <repo>/c_runtime
)
_SENTINEL = Path("include") / "mq_types.h"


@lru_cache(maxsize=None)
def runtime_root() -> Path:
    """The c_runtime folder (holds include/, src/, targets/)."""
    for d in CANDIDATES:
        if (d / _SENTINEL).is_file() and (d / "targets").is_dir():
            return d
    raise MicroqError(
        "the microq C runtime was not found (looked in "
        f"{', '.join(str(d) for d in CANDIDATES)}); reinstall microq from a wheel or run from "
        "a full checkout"
    )


def targets_dir() -> Path:
    """Startup code, linker scripts and the semihosting harness of the emulated boards."""
    return runtime_root() / "targets"


def source_dir(model_dir: Path, meta: dict) -> Path:
    """Where NAME.c / NAME.h are: the folder itself, or src/ of the Arduino layout."""
    sub = meta.get("source_dir") or ""
    if sub not in ("", "src"):
        raise MicroqError(f"{model_dir}: unexpected source_dir '{sub}' in its NAME.json")
    return Path(model_dir) / sub if sub else Path(model_dir)


def build_inputs(model_dir: Path, meta: dict) -> tuple[list[Path], list[Path]]:
    """(C sources, include folders) that build the model folder: its own .c files, and for an
    external-runtime folder the runtime files it needs from the installed runtime."""
    model_dir = source_dir(model_dir, meta)
    sources = sorted(model_dir.glob("*.c"))
    includes = [model_dir]
    if meta.get("runtime", "copy") == "external":
        root = runtime_root()
        needed = meta.get("runtime_files") or []
        for name in needed:
            if name.endswith(".c"):
                src = root / "src" / name
                if not src.is_file():
                    raise MicroqError(f"{model_dir}: runtime source {name} is not in {root}; "
                                      "compile the model again with this microq")
                sources.append(src)
        includes += [root / "include", root / "src"]
    return sources, includes
