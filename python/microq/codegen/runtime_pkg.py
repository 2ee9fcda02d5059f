"""One runtime, many models: the shared runtime folder `microq runtime` writes.

A model folder is generated either with its own copy of the runtime files it uses (`runtime
"copy"`, the default: the folder compiles on its own) or without them (`runtime "external"`):
then several model folders link against one runtime folder written once by `microq runtime
-o DIR` (every kernel; unused ones cost nothing with -ffunction-sections and --gc-sections).
NAME.json records the mode and the runtime files the model needs, so microq's own builds (host,
emulated boards) add them from the installed runtime.
"""

from __future__ import annotations

import json

from .. import __version__
from ..errors import MicroqError

RUNTIME_MODES = ("copy", "external")
RUNTIME_META = "mq_runtime.json"  # marks a folder written by `microq runtime`


def all_runtime_files() -> dict[str, bytes]:
    """Every header and source of the C runtime, flattened (the layout model folders use)."""
    from ..runtime.locate import runtime_root

    root = runtime_root()
    files: dict[str, bytes] = {}
    for path in sorted([*(root / "include").glob("*.h"), *(root / "src").glob("*.[ch]")]):
        if path.name in files:
            raise MicroqError(f"runtime file {path.name} exists twice in {root}")
        files[path.name] = path.read_bytes()
    return files


def runtime_folder_files() -> dict[str, bytes]:
    """The files `microq runtime -o DIR` writes: the runtime, its metadata and build glue."""
    files = all_runtime_files()
    sources = sorted(n for n in files if n.endswith(".c"))
    meta = {"microq_version": __version__, "kind": "runtime", "files": sorted(files),
            "sources": sources}
    files[RUNTIME_META] = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
    from .glue import runtime_glue

    files.update(runtime_glue(sources))
    return files


def check_mode(runtime: str) -> str:
    if runtime not in RUNTIME_MODES:
        raise MicroqError(f"runtime must be one of {', '.join(RUNTIME_MODES)}, not '{runtime}'")
    return runtime
