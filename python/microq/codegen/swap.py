"""Crash-safe replacement of a generated folder, and recovery from an interrupted one.

A new folder is written into a hidden sibling `.NAME.microq.<pid>.<random>.new` and swapped in:
- Linux (renameat2 RENAME_EXCHANGE): one atomic exchange; at every instant the target is the
  old folder or the new one, then the old one (now under the hidden name) is deleted;
- elsewhere: the old folder is renamed aside (`....old`), the new one renamed in, the old one
  deleted; a kill between the two renames leaves the target missing for the moment, and
  recover() puts the old folder back.

recover(target) runs before every write and when a reader finds the target missing: every
hidden sibling of that target that microq left behind (its name pattern, microq's marker file
inside, and a writer process that no longer runs) is either moved back (an `.old` one when the
target is missing) or deleted. Siblings of a process still running are left alone.

A microq folder records the files microq wrote (MANIFEST); when it is replaced, everything
else in it (a user's main.c, a build/ tree) is carried into the new folder before the swap.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import sys
import time
from pathlib import Path

MARKER = ".microq/generated"  # marks a folder microq may replace (see emit.py)
MANIFEST = ".microq/files.json"  # the files microq wrote there: the rest is the user's, kept
LEGACY_AGE = 600.0  # seconds: the hidden folders of older microq versions carry no pid


def temp_name(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.microq.{os.getpid()}.{secrets.token_hex(4)}.{kind}"


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"\.{re.escape(name)}\.microq\.(\d+)\.[0-9a-f]+\.(new|old)")


def _legacy_pattern(name: str) -> re.Pattern:  # tempfile.mkdtemp names of microq <= 0.1
    return re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}\.(tmp|old)")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # this process's own write in progress (or failing: it cleans up)
    if os.name != "posix":
        return True  # no safe liveness probe: leave it (os.kill would terminate on Windows)
    try:
        os.kill(pid, 0)  # signal 0: no signal is sent, only the existence check
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. EPERM: it exists, owned by someone else
    return True


def _ours(folder: Path) -> bool:
    """A hidden folder microq wrote: it holds the marker (or is still empty)."""
    try:
        return (folder / MARKER).is_file() or not any(folder.iterdir())
    except OSError:
        return False


def recover(target: Path) -> list[str]:
    """Restore or delete what an interrupted write into `target` left behind (see module doc).
    Returns what was done, one line per sibling (for messages and tests)."""
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    done: list[str] = []
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return done
    restore: list[tuple[float, Path]] = []  # .old backups, candidates for a missing target
    stale: list[Path] = []
    pat, legacy = _pattern(target.name), _legacy_pattern(target.name)
    now = time.time()
    for e in entries:
        m, lm = pat.fullmatch(e.name), legacy.fullmatch(e.name)
        if not (m or lm) or e.is_symlink() or not e.is_dir():
            continue
        try:
            mtime = e.stat().st_mtime
        except OSError:
            continue
        if m:
            if _alive(int(m[1])):
                continue
            folder, kind = e, m[2]
        else:
            if now - mtime < LEGACY_AGE:
                continue
            kind = "old" if lm[1] == "old" else "new"
            folder = e / target.name if kind == "old" else e  # mkdtemp(...old)/NAME
            if kind == "old" and not folder.is_dir():
                folder = e
        if not _ours(folder):
            continue
        if kind == "old" and folder.is_dir():
            restore.append((mtime, e))
        else:
            stale.append(e)
    if restore and not target.exists():
        restore.sort()
        _, e = restore.pop()  # the newest backup
        src = e / target.name if _legacy_pattern(target.name).fullmatch(e.name) else e
        src = src if src.is_dir() else e
        try:
            os.replace(src, target)
            done.append(f"restored {target} from {e.name}")
        except OSError:
            pass
        if src != e:
            stale.append(e)
    stale += [e for _, e in restore]
    for e in stale:
        if e.exists():
            shutil.rmtree(e, ignore_errors=True)
            done.append(f"removed {e.name}")
    return done


def written_files(folder: Path) -> set[str] | None:
    """The relative paths microq recorded writing into `folder` (its MANIFEST), or None for a
    folder of an older microq that kept no list."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return set(files)


def user_entries(folder: Path, written: set[str] | None, new: set[str]) -> list[str]:
    """What in the microq folder `folder` microq did not write: files, symlinks and empty
    folders (relative POSIX paths, sorted), never under `.microq/`. `written` is what the earlier
    compile recorded; None (an older microq's folder) counts every path the new compile writes
    (`new`) as microq's. Symlinks are not followed."""
    folder = Path(folder)
    mine = written if written is not None else new
    out: list[str] = []
    for root, dirs, names in os.walk(folder):
        rel_root = Path(root).relative_to(folder)
        if rel_root.parts[:1] == (".microq",):
            dirs[:] = []
            continue
        for d in list(dirs):
            p = Path(root) / d
            if p.is_symlink():
                dirs.remove(d)
                names.append(d)
            elif (rel_root / d).as_posix() == ".microq":
                dirs.remove(d)
        for n in names:
            rel = (rel_root / n).as_posix()
            if rel not in mine:
                out.append(rel)
        if not names and not dirs and rel_root.parts:
            out.append(rel_root.as_posix() + "/")  # an empty folder of the user's
    return sorted(out)


def carry_over(old: Path, new: Path, entries: list[str]) -> None:
    """Put `entries` (user_entries) of the folder `old` into the folder being written, `new`:
    hard links where the filesystem allows (fast for a build/ tree; timestamps kept), copies
    elsewhere, symlinks recreated as symlinks. `old` is left intact, so a kill before the swap
    loses nothing."""
    old, new = Path(old), Path(new)
    for rel in entries:
        src, dst = old / rel, new / rel
        if rel.endswith("/"):
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copystat(src, dst)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
            continue
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    # folders that hold user files get the old folder's permissions and times back
    dirs = {p for rel in entries for p in Path(rel.rstrip("/")).parents if p.parts}
    for d in sorted(dirs, key=lambda p: -len(p.parts)):
        if (old / d).is_dir() and not (old / d).is_symlink():
            with contextlib.suppress(OSError):
                shutil.copystat(old / d, new / d)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP,
               errno.EPERM):
        return False  # a filesystem without exchange: the three-rename sequence
    raise OSError(err, os.strerror(err), str(b))


def swap_in(new: Path, target: Path) -> None:
    """Make the complete folder `new` (a temp_name(target, "new") sibling) the target."""
    if not target.exists():
        os.replace(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old folder
        return
    old = temp_name(target, "old")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
