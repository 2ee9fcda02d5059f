"""The wheel works outside the repository: build it, install it into a clean venv with the newest
Python on the machine, and run every command from an empty temporary folder.

Guards issue 10: the wheel once shipped without c_runtime/ (compile, size, profile and
run --target failed) and Python >= 3.12 lacked setuptools for cffi. Costs about a minute of
wall time, mostly pip (dependencies come from PyPI through pip's own cache, never the repo).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import IN_CI, REPO

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "python", "c_runtime")
OFFLINE = re.compile(r"No matching distribution|Could not find a version|NewConnectionError|"
                     r"Temporary failure in name resolution|Network is unreachable")


def _version(python: str) -> tuple[int, ...] | None:
    try:
        p = subprocess.run([python, "-c", "import sys, venv, ensurepip; "
                            "print('%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    return tuple(int(x) for x in p.stdout.strip().split("."))


def newest_python() -> tuple[str, tuple[int, ...]]:
    """The newest CPython >= 3.10 with venv: PATH (python3.N) and pyenv's versions."""
    found: list[str] = []
    for minor in range(20, 9, -1):
        p = shutil.which(f"python3.{minor}")
        if p:
            found.append(p)
    roots = [Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"]
    for root in roots:
        found += sorted(str(p) for p in root.glob("3.*/bin/python3"))
    found.append(sys.executable)
    best = None
    for p in dict.fromkeys(found):
        v = _version(p)
        if v and v >= (3, 10) and (best is None or v > best[1]):
            best = (p, v)
    assert best is not None, "no Python >= 3.10 with venv found"
    return best


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MICROQ_DEBUG")}
    env["MICROQ_CACHE"] = str(cache)  # nothing built by the checkout is reused
    return env


def _run(cmd, cwd: Path, env, what: str, timeout: float = 600) -> str:
    t0 = time.perf_counter()
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    print(f"{time.perf_counter() - t0:6.1f} s  {what}")  # shown by pytest on failure or -s
    if p.returncode != 0:
        if OFFLINE.search(out) and not IN_CI:
            pytest.skip(f"{what}: PyPI not reachable ({OFFLINE.search(out).group(0)})")
        pytest.fail(f"{what} failed ({p.returncode}):\n{out[-4000:]}")
    return p.stdout


def test_pyproject_lists_every_package_folder():
    """A new subpackage or runtime folder must be added to pyproject, or the wheel drops it."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    on_disk = {"microq." + ".".join(p.parent.relative_to(REPO / "python" / "microq").parts)
               for p in (REPO / "python" / "microq").rglob("__init__.py")}
    on_disk = {n.rstrip(".") for n in on_disk} | {"microq.assets"}
    for d in [REPO / "c_runtime", *(p for p in (REPO / "c_runtime").rglob("*") if p.is_dir())]:
        on_disk.add(".".join(["microq", *d.relative_to(REPO).parts]))
    assert listed == on_disk, f"pyproject packages differ: missing {sorted(on_disk - listed)}, " \
                              f"extra {sorted(listed - on_disk)}"


def test_wheel_installs_and_runs_every_command_outside_the_repo(tmp_path):
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "gcc"):
        if shutil.which(tool) is None:
            msg = f"{tool} not found (the wheel test runs run --target, size and profile)"
            if IN_CI:
                pytest.fail(msg + "; under CI=true this is a failure")
            pytest.skip(msg)
    python, version = newest_python()
    env = _env(tmp_path / "cache")

    # 1. build the wheel from a copy of the sources (no build/ or egg-info in the checkout)
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        s = REPO / name
        if s.is_dir():
            shutil.copytree(s, src / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.egg-info", "*.so", "*.o"))
        else:
            shutil.copy2(s, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", src],
         tmp_path, env, "pip wheel")
    wheels = sorted((tmp_path / "dist").glob("microq-*.whl"))
    assert len(wheels) == 1
    import zipfile

    names = set(zipfile.ZipFile(wheels[0]).namelist())
    for rel in ("microq/c_runtime/include/mq_types.h", "microq/c_runtime/src/mq_conv.c",
                "microq/c_runtime/targets/harness.c", "microq/c_runtime/targets/sections.ld",
                "microq/c_runtime/targets/plugin/mq_insn_count.c", "microq/assets/digits_cnn.onnx"):
        assert rel in names, f"{rel} is not in the wheel"

    # 2. a clean venv with the newest Python, the wheel and its declared dependencies only
    #    (pip >= 22.3 installs into it from outside: no copy of pip to unpack into the venv)
    venv = tmp_path / "venv"
    bin_ = venv / "bin"
    import pip

    outer_pip = tuple(int(x) for x in pip.__version__.split(".")[:2]) >= (22, 3)
    _run([python, "-m", "venv", *(["--without-pip"] if outer_pip else []), venv], tmp_path, env,
         f"python{'.'.join(map(str, version))} -m venv")
    pip_cmd = ([sys.executable, "-m", "pip", "--python", bin_ / "python"] if outer_pip
               else [bin_ / "python", "-m", "pip"])
    _run([*pip_cmd, "install", "-q", "--disable-pip-version-check", wheels[0]], tmp_path, env,
         "pip install microq-*.whl")

    # 3. every command, from an empty folder outside the repository
    work = tmp_path / "work"
    work.mkdir()
    where = _run([bin_ / "python", "-c", "import microq, microq.runtime.locate as l; "
                  "print(microq.__file__); print(l.runtime_root())"], work, env, "import")
    pkg, runtime = (Path(line) for line in where.split())
    assert venv in pkg.parents and venv in runtime.parents, where
    assets = pkg.parent / "assets"
    mq = bin_ / "microq"
    _run([mq, "inspect", assets / "digits_cnn.onnx"], work, env, "microq inspect")
    out = _run([mq, "compile", assets / "digits_cnn.onnx", "--calib", assets / "digits_calib.npz",
                "-o", "out/digits", "--name", "digits", "--no-size"], work, env, "microq compile")
    assert "wrote out/digits" in out
    assert (work / "out" / "digits" / "mq_types.h").is_file()
    _run([mq, "run", "out/digits", "--input", assets / "digits_test.npz", "-o", "host.npz",
          "--raw"], work, env, "microq run")
    _run([mq, "run", "out/digits", "--input", assets / "digits_test.npz", "-o", "m4.npz",
          "--raw", "--target", "cortex-m4"], work, env, "microq run --target cortex-m4")
    host, m4 = np.load(work / "host.npz"), np.load(work / "m4.npz")
    assert list(host) == list(m4) == ["probs"]
    assert host["probs"].dtype == np.int8 and host["probs"].shape == (360, 10)
    np.testing.assert_array_equal(host["probs"], m4["probs"])
    size = _run([mq, "size", "out/digits", "--target", "cortex-m0plus"], work, env, "microq size")
    assert re.search(r"flash\s+[\d,]+ B", size), size
    prof = _run([mq, "profile", "out/digits"], work, env, "microq profile")
    assert re.search(r"digits on cortex-m4: [\d,]+ instructions", prof), prof
    cmp_ = _run([mq, "compare", assets / "digits_cnn.onnx", "out/digits", "--data",
                 assets / "digits_test.npz"], work, env, "microq compare")
    assert re.search(r"probs .* \d+\.\d+%", cmp_), cmp_
    # one runtime for several models, and a real part's memory, from the wheel too
    _run([mq, "runtime", "-o", "out/rt"], work, env, "microq runtime")
    assert (work / "out" / "rt" / "mq_conv.c").is_file()
    _run([mq, "compile", assets / "digits_cnn.onnx", "--calib", assets / "digits_calib.npz",
          "-o", "out/ext", "--name", "digits", "--runtime", "external"], work, env,
         "microq compile --runtime external")
    assert not list((work / "out" / "ext").glob("mq_*"))
    _run([mq, "run", "out/ext", "--input", assets / "digits_test.npz", "-o", "ext.npz",
          "--raw"], work, env, "microq run (external runtime)")
    np.testing.assert_array_equal(np.load(work / "ext.npz")["probs"], host["probs"])
    fit = _run([mq, "size", "out/digits", "--board", "stm32f411"], work, env, "size --board")
    assert "STM32F411xE" in fit and "fits" in fit
    assert sorted(p.name for p in work.iterdir()) == ["ext.npz", "host.npz", "m4.npz", "out"]
