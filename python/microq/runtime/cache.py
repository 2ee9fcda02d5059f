"""The build cache (host cffi modules, emulated-board images, the QEMU plugin): where it is,
how big it is, and emptying it. Everything in it is rebuilt on demand."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import MicroqError


def cache_path() -> Path:
    """$MICROQ_CACHE, else ~/.cache/microq (not created here)."""
    return Path(os.environ.get("MICROQ_CACHE", Path.home() / ".cache" / "microq"))


def usage(path: Path | None = None) -> tuple[int, int]:
    """(entries, bytes) under the cache folder."""
    path = path or cache_path()
    if not path.is_dir():
        return 0, 0
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += (Path(root) / f).lstat().st_size
            except OSError:
                pass
    return sum(1 for _ in path.iterdir()), total


def clean(path: Path | None = None) -> tuple[int, int]:
    """Delete every entry of the cache folder; returns (entries, bytes) removed."""
    path = path or cache_path()
    n, size = usage(path)
    if not path.is_dir():
        return 0, 0
    for entry in path.iterdir():
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as e:
            raise MicroqError(f"cannot remove {entry}: {e.strerror or e}") from None
    return n, size
