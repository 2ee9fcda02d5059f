"""The kernel case tables: every c_runtime call of tests/test_kernel_*.py (named, random and
CMSIS-NN conformance cases, bad arguments) as generated C, for the standalone runs of
tests/test_sanitizers.py (host, ASan + UBSan) and tests/test_dsp_case_tables.py (emulated
Cortex-M4, DSP on and off).

The tables are recorded by running the kernel test files once, in a subprocess, with the
tests/case_recorder.py plugin; the result is cached in the microq cache under a hash of
everything that can change it (tests, python package, c_runtime), and a file lock makes
parallel test workers wait for one recording instead of repeating it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, SHARED

TESTS = REPO / "tests"
TARGETS = REPO / "c_runtime" / "targets"
KERNEL_TESTS = sorted(p for p in TESTS.glob("test_kernel_*.py") if p.name != "test_kernel_perf.py")


@dataclass(frozen=True)
class CaseTable:
    variant: str  # "double" or "single" rounding
    source: Path  # cases_<variant>.c
    cases: list[tuple[str, str]]  # (pytest node id, kernel function) per case, in order

    @property
    def defines(self) -> dict[str, str]:
        return {"MQ_SINGLE_ROUNDING": "1"} if self.variant == "single" else {}

    def describe(self, case_id: int) -> str:
        node, fn = self.cases[case_id]
        return f"case {case_id} = {fn} in {node}"


def _key() -> str:
    """Hash of what the recording depends on: the kernel tests and their helpers, the python
    package (reference, cbuild), the runtime sources."""
    h = hashlib.sha256()
    files = [*KERNEL_TESTS, *(TESTS / n for n in ("conftest.py", "cmsis_cases.py",
                                                   "case_recorder.py"))]
    for root in (REPO / "python" / "microq", REPO / "c_runtime" / "include",
                 REPO / "c_runtime" / "src"):
        files += sorted(f for f in root.rglob("*") if f.suffix in (".py", ".c", ".h")
                        and f.is_file() and "__pycache__" not in f.parts)
    for f in files:
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes())
    h.update(str(SHARED.resolve()).encode())
    return h.hexdigest()[:16]


def _record(dest: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    # A clean pytest: nothing of the calling session (xdist worker, current test) leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "python"), str(TESTS), *filter(None, [env.get("PYTHONPATH")])])
    env["MICROQ_RECORD_CASES"] = str(tmp)
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "case_recorder", "-p",
           "no:cacheprovider", *map(str, KERNEL_TESTS)]
    try:
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        if p.returncode != 0 or not (tmp / "cases_double.c").exists():
            pytest.fail("recording the kernel case tables failed (the kernel tests themselves "
                        f"fail?):\n{(p.stdout + p.stderr)[-4000:]}")
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def case_tables() -> dict[str, CaseTable]:
    """{variant: CaseTable}, recorded once per content hash."""
    from microq.runtime.cbuild import cache_dir

    root = cache_dir() / "cases"
    root.mkdir(parents=True, exist_ok=True)
    dest = root / _key()
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (dest / "cases_double.c").exists():
            _record(dest)
    unresolved = json.loads((dest / "unresolved.json").read_text())
    assert unresolved == [], f"calls the recorder could not serialize: {unresolved[:5]}"
    tables = {}
    for variant in ("double", "single"):
        cases = [tuple(c) for c in json.loads((dest / f"cases_{variant}.json").read_text())]
        tables[variant] = CaseTable(variant, dest / f"cases_{variant}.c", cases)
    return tables


def kernel_functions() -> set[str]:
    """The kernels the c_runtime headers declare (every one must appear in the tables)."""
    import re

    names = set()
    for h in (REPO / "c_runtime" / "include").glob("mq_*.h"):
        names |= set(re.findall(r"^mq_status\s+(mq_\w+)\s*\(", h.read_text(), flags=re.M))
    return names


def parse_report(text: str) -> tuple[list[int], tuple[int, int, int] | None]:
    """(ids of the failed cases, (cases, checks, failed) of the summary line or None)."""
    import re

    failed = [int(m) for m in re.findall(r"^FAIL case (\d+) ", text, flags=re.M)]
    m = re.search(r"^microq cases: (\d+) cases, (\d+) checks, (\d+) failed$", text, flags=re.M)
    return failed, (tuple(int(g) for g in m.groups()) if m else None)


def check_report(table: CaseTable, returncode: int, text: str, where: str) -> tuple[int, int]:
    """Fails naming the first few failed cases; returns (cases, checks) run."""
    failed, summary = parse_report(text)
    if failed:
        lines = [ln for ln in text.splitlines() if ln.startswith("FAIL")][:5]
        named = [f"{ln}  <- {table.describe(int(ln.split()[2]))}" for ln in lines]
        pytest.fail(f"{where}: {len(failed)} failed checks:\n" + "\n".join(named))
    assert summary is not None and returncode == 0, (
        f"{where}: the run did not finish (exit status {returncode}):\n{text[-3000:]}")
    cases, checks, bad = summary
    assert bad == 0 and cases == len(table.cases), (where, summary, len(table.cases))
    assert checks > cases  # every case checks its return value and at least one buffer
    return cases, checks
