"""The C runtime under AddressSanitizer + UndefinedBehaviorSanitizer, without -fwrapv.

The cffi host build inherits -fwrapv from Python's CFLAGS, so signed overflow in a kernel would
wrap silently there (and the numpy reference wraps likewise). Here the same C is compiled into
standalone programs with -fsanitize=address,undefined -fno-wrapv -fno-sanitize-recover=all
(runtime/cbuild.build_executable), where the first report ends the run with a non-zero status:
- every kernel case of tests/test_kernel_*.py (named, random, CMSIS-NN conformance, bad
  arguments; both rounding modes, and the MQ_NO_MUL64 requantization of ARMv6-M builds) as one
  case-table program per build (tests/case_tables.py), each buffer its own exact-size malloc,
  every result checked against the recorded reference;
- three generated models (the demo, MLPerf ad01 and kws01) on real samples through
  c_runtime/targets/host_harness.c, bit-exact with the numpy integer reference graph.
The first tests prove that the mode does catch a heap overflow and a signed overflow.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from case_tables import TARGETS, case_tables, check_report, kernel_functions
from conftest import CONFORMANCE, IN_CI, REPO, require
from microq.errors import MicroqError
from microq.runtime import cbuild

RUNTIME = REPO / "c_runtime"
ASSETS = REPO / "python" / "microq" / "assets"
SANITIZER_MARKS = ("AddressSanitizer", "runtime error:", "LeakSanitizer", "UndefinedBehavior")
ASAN_ENV = {"ASAN_OPTIONS": "detect_leaks=0:exitcode=86",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


def run(cmd: list[str], cwd: Path | None = None, timeout: float = 300) -> tuple[int, str]:
    import os

    env = {**os.environ, **ASAN_ENV}
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout + p.stderr


def assert_no_reports(text: str, where: str, table=None) -> None:
    """No sanitizer output; a report in a case-table program names the kernel test case."""
    import re

    found = [m for m in SANITIZER_MARKS if m in text]
    if found:
        m = re.search(r" in case(\d+) ", text) if table is not None else None
        case = f" ({table.describe(int(m.group(1)))})" if m else ""
        pytest.fail(f"{where}: sanitizer report{case}:\n{text[-4000:]}")


# ---- the mode works: it reports, and the report fails the run -------------------------------
CANARY = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
static int32_t acc(const int8_t *x, int32_t n, int32_t start)
{
    int32_t s = start, i;
    for (i = 0; i < n; ++i) {
        s += x[i] * 127;
    }
    return s;
}
int main(int argc, char **argv)
{
    int32_t n = (int32_t)strtol(argv[1], NULL, 10);
    int32_t start = (int32_t)strtol(argv[2], NULL, 10);
    int8_t *x = (int8_t *)malloc(16);
    memset(x, 100, 16);
    (void)argc;
    return acc(x, n, start) == 0 ? 3 : 0;
}
"""


@pytest.fixture(scope="module", autouse=True)
def canary(tmp_path_factory) -> Path:
    """The canary program; skips the module (fails under CI=true) without a host compiler
    that links -fsanitize=address,undefined."""
    src = tmp_path_factory.mktemp("canary") / "canary.c"
    src.write_text(CANARY)
    try:
        return cbuild.build_executable("canary", [src], [], sanitize=True)
    except MicroqError as e:
        msg = (f"no sanitizer toolchain ({e}); install gcc with its runtimes: apt-get install -y "
               "--no-install-recommends gcc libasan8 libubsan1")
        if IN_CI:
            pytest.fail(msg + " (under CI=true this is a failure)")
        pytest.skip(msg)


def test_sanitizer_build_reports_heap_overflow(canary):
    assert run([str(canary), "16", "0"])[0] == 0  # in bounds, no overflow: clean
    code, text = run([str(canary), "17", "0"])
    # ASan's heap-buffer-overflow, or UBSan's object-size check when it sees the load first
    assert code != 0, text[-2000:]
    assert "heap-buffer-overflow" in text or "insufficient space for an object" in text, text


def test_sanitizer_build_reports_signed_overflow_despite_pythons_fwrapv(canary):
    code, text = run([str(canary), "1", str(2**31 - 100)])
    assert code != 0 and "signed integer overflow" in text, text[-2000:]


def test_cffi_build_overrides_fwrapv():
    """cffi puts Python's CFLAGS (with -fwrapv) first; ours come last and win."""
    assert "-fno-wrapv" in cbuild.CFLAGS
    assert {"-fno-wrapv", "-fno-sanitize-recover=all"} <= set(cbuild.SANITIZE_CFLAGS)


# A hand-written case table in the recorder's form: case 0 is right, case 1 expects a wrong
# output byte (index 2), case 2 a wrong return value. The harness must name exactly those.
WRONG_CASES = r"""
#include <stdint.h>
#include "case_harness.h"
#include "mq_elementwise.h"
static const unsigned char d0[4] = {1, 2, 3, 4};
static const unsigned char d1[4] = {0x5A, 0x5A, 0x5A, 0x5A};
static const unsigned char d2[4] = {3, 4, 5, 6};
static const unsigned char d3[4] = {3, 4, 9, 6};
static void run(uint32_t id, const unsigned char *want, int64_t want_ret)
{
    int8_t *b0 = (int8_t *)mq_case_buffer(d0, 4u);
    int8_t *b1 = (int8_t *)mq_case_buffer(d1, 4u);
    mq_requantize_params p = {0, 2, 1073741824, 1, -128, 127};
    mq_case_ret(id, (int64_t)mq_requantize_s8(&p, 4, b0, b1), want_ret);
    mq_case_check(id, 0u, b0, d0, 4u);
    mq_case_check(id, 1u, b1, want, 4u);
    mq_case_end();
}
void mq_cases_run(void)
{
    run(0u, d2, 0);
    run(1u, d3, 0);
    run(2u, d2, 1);
}
const uint32_t mq_cases_count = 3u;
"""


def test_case_harness_reports_wrong_results(tmp_path):
    from case_tables import parse_report

    src = tmp_path / "wrong_cases.c"
    src.write_text(WRONG_CASES)
    exe = cbuild.build_executable("wrong_cases", [*sorted((RUNTIME / "src").glob("*.c")),
                                                  TARGETS / "case_harness.c"],
                                  [RUNTIME / "include", RUNTIME / "src", TARGETS],
                                  sanitize=True, plain_sources=(src,))
    code, text = run([str(exe)])
    assert code == 1, text
    assert parse_report(text) == ([1, 2], (3, 9, 2)), text
    assert "FAIL case 1 buffer 1: 1 bytes differ, first at byte 2: got 5 want 9" in text


# ---- every kernel case under ASan + UBSan ---------------------------------------------------
@pytest.fixture(scope="module")
def tables():
    return case_tables()


def test_case_tables_cover_every_kernel_and_the_cmsis_vectors(tables):
    t = tables["double"]
    called = {fn for _, fn in t.cases}
    assert kernel_functions() <= called, f"kernels with no case: {kernel_functions() - called}"
    files = {node.split("::")[0] for node, _ in t.cases}
    missing = {f"tests/{p.name}" for p in (REPO / "tests").glob("test_kernel_*.py")} - files
    assert missing <= {"tests/test_kernel_perf.py"}, f"kernel test files not recorded: {missing}"
    vectors = sorted(require(CONFORMANCE, "CMSIS-NN conformance vectors").glob("*/*.json"))
    nodes = " ".join(node for node, _ in t.cases if "cmsis" in node)
    absent = [f"{v.parent.name}/{v.stem}" for v in vectors if v.stem not in nodes]
    assert len(vectors) > 80 and not absent, f"CMSIS-NN vectors with no recorded case: {absent}"
    assert len(tables["single"].cases) > 300


@pytest.mark.parametrize("variant, no_mul64", [("double", False), ("single", False),
                                               ("double", True)],
                         ids=["double", "single", "double-no_mul64"])
def test_kernel_case_tables_clean_under_asan_ubsan(tables, variant, no_mul64):
    """no_mul64: the runtime with MQ_NO_MUL64=1, the requantization in 16-bit halves that
    ARMv6-M (Cortex-M0+) builds use; it must give the same results, so the same table."""
    t = tables[variant]
    defines = {**t.defines, **({"MQ_NO_MUL64": "1"} if no_mul64 else {})}
    exe = cbuild.build_executable(
        f"cases_{variant}{'_no_mul64' if no_mul64 else ''}_asan",
        [*sorted((RUNTIME / "src").glob("*.c")), TARGETS / "case_harness.c"],
        [RUNTIME / "include", RUNTIME / "src", TARGETS],
        defines,
        sanitize=True,
        plain_sources=(t.source,),
    )
    code, text = run([str(exe)])
    where = f"kernel cases ({variant} rounding{', MQ_NO_MUL64' if no_mul64 else ''})"
    assert_no_reports(text, where, t)
    check_report(t, code, text, where + " under ASan + UBSan")


# ---- three generated models under ASan + UBSan ----------------------------------------------
def _model_data(key: str) -> tuple[Path, dict[str, np.ndarray]]:
    from mlperf_data import model_path, real_data

    if key == "digits":
        data = dict(np.load(ASSETS / "digits_test.npz"))
        return ASSETS / "digits_cnn.onnx", {"input": data["input"][:24]}
    data, _ = real_data(key)
    return model_path(key), data


@pytest.fixture(scope="module")
def sanitized_model(tmp_path_factory):
    from microq import api

    def get(key: str):
        model, data = _model_data(key)
        calib = ASSETS / "digits_calib.npz" if key == "digits" else data
        out = tmp_path_factory.mktemp(f"san_{key}") / key
        api.compile_model(model, calib, out, name=key)
        return out, data

    return get


def _harness_exe(folder: Path, meta: dict, work: Path) -> Path:
    from microq.runtime import mcu

    glue = work / "glue"
    glue.mkdir()
    (glue / "mq_model.h").write_text(mcu._model_glue(meta))
    defines = {"MQ_SINGLE_ROUNDING": "1"} if meta.get("rounding") == "single" else {}
    return cbuild.build_executable(f"model_{meta['name']}_asan",
                                   [*sorted(folder.glob("*.c")), TARGETS / "host_harness.c"],
                                   [glue, folder], defines, sanitize=True)


# vww01: the regression guard of the tiny-weight bias fit (its channels of near-zero weights
# give the largest quantized biases): no ASan/UBSan report, C == reference
@pytest.mark.parametrize("key", ["digits", "ad01", "kws01", "vww01"])
def test_model_clean_under_asan_ubsan_and_bit_exact(sanitized_model, tmp_path, key):
    from microq import api
    from microq.ref.int_exec import run_int
    from microq.runtime.host import HostModel

    folder, data = sanitized_model(key)
    meta = api.load_meta(folder)
    m = HostModel(folder, meta, None, None)  # quantize_input needs no build
    n = min(len(next(iter(data.values()))), 8)
    q = {k: m.quantize_input(k, v[:n]) for k, v in data.items()}
    packed = np.concatenate([q[s["name"]].reshape(n, -1) for s in meta["inputs"]], axis=1)
    (tmp_path / "in.bin").write_bytes(packed.tobytes())
    exe = _harness_exe(folder, meta, tmp_path)
    code, text = run([str(exe), "in.bin", "out.bin"], cwd=tmp_path)
    assert_no_reports(text, f"model {key}")
    assert code == 0, f"model {key}: exit status {code}: {text[-2000:]}"
    raw = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.int8)
    sizes = [int(s["size"]) for s in meta["outputs"]]
    assert raw.size == n * sum(sizes)
    raw = raw.reshape(n, -1)
    qg = api.load_qgraph(folder)
    for i in range(n):
        ref = run_int(qg, {k: v[i : i + 1] for k, v in q.items()})
        pos = 0
        for spec, size in zip(meta["outputs"], sizes):
            got = raw[i, pos : pos + size]
            pos += size
            want = np.asarray(ref[spec["name"]]).reshape(-1)
            assert np.array_equal(got, want), (
                f"model {key} sample {i} output {spec['name']}: C under ASan != reference, "
                f"first at {int(np.flatnonzero(got != want)[0])}")
    assert len(np.unique(raw)) > 1, "outputs are constant: the comparison proves little"
