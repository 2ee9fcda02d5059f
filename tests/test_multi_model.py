"""One runtime, many models (issue 10): `microq runtime` writes the runtime once, folders compiled
with --runtime external leave it out, the caller can supply or place the arena, and two models
plus one runtime link into one Cortex-M4 image whose outputs equal the host's bit for bit."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import IN_CI, REPO
from microq import api
from microq.cli import main as cli
from microq.runtime import mcu

ASSETS = REPO / "python" / "microq" / "assets"
FIXTURES = REPO / "tests" / "models"
M4 = "cortex-m4"


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        msg = f"{', '.join(missing)} not installed (apt-get install {mcu.ARM_PACKAGES})"
        if IN_CI:
            pytest.fail(msg + "; under CI=true this is a failure")
        pytest.skip(msg)


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    """A shared runtime folder and two external-runtime model folders."""
    root = tmp_path_factory.mktemp("multi")
    res = CliRunner().invoke(cli, ["runtime", "-o", str(root / "runtime")])
    assert res.exit_code == 0, res.output
    api.compile_model(ASSETS / "digits_cnn.onnx", ASSETS / "digits_calib.npz", root / "digits",
                      name="digits", runtime="external")
    calib = dict(np.load(FIXTURES / "residual_net.npz"))
    api.compile_model(FIXTURES / "residual_net.torchscript.onnx", calib, root / "resnet",
                      name="resnet", runtime="external")
    return root


def test_runtime_folder_holds_every_runtime_file_once(firmware):
    rt = firmware / "runtime"
    names = sorted(p.name for p in rt.iterdir() if p.is_file())
    src = REPO / "c_runtime"
    want = sorted(p.name for p in [*(src / "include").glob("*.h"), *(src / "src").glob("*.[ch]")])
    assert [n for n in names if n.startswith("mq_") and n != "mq_runtime.json"] == want
    for n in want:
        orig = src / ("include" if (src / "include" / n).exists() else "src") / n
        assert (rt / n).read_bytes() == orig.read_bytes()
    meta = json.loads((rt / "mq_runtime.json").read_text())
    assert meta["kind"] == "runtime" and "mq_conv.c" in meta["sources"]


def test_external_runtime_folder_has_no_runtime_copy(firmware):
    for name in ("digits", "resnet"):
        d = firmware / name
        assert not list(d.glob("mq_*")), sorted(p.name for p in d.glob("mq_*"))
        meta = json.loads((d / f"{name}.json").read_text())
        assert meta["runtime"] == "external"
        assert "mq_types.h" in meta["runtime_files"] and "mq_conv.c" in meta["runtime_files"]


def test_external_runtime_folder_runs_on_host_like_a_copy_folder(firmware, tmp_path):
    """The host build adds the installed runtime's files: same outputs as a self-contained copy."""
    api.compile_model(ASSETS / "digits_cnn.onnx", ASSETS / "digits_calib.npz", tmp_path / "d",
                      name="digits")
    assert (tmp_path / "d" / "mq_conv.c").is_file()
    x = np.load(ASSETS / "digits_test.npz")["input"][:32]
    a = api.run(firmware / "digits", {"input": x}, raw=True)["probs"]
    b = api.run(tmp_path / "d", {"input": x}, raw=True)["probs"]
    np.testing.assert_array_equal(a, b)


def test_invoke_with_caller_arenas_are_independent(firmware):
    """Each call touches only the arena it is given: a second call with another arena leaves
    the first arena as it was, and both outputs equal the static-arena invoke's."""
    m = api.load(firmware / "digits")
    ffi, lib = m.ffi, m.lib
    size = lib.DIGITS_ARENA_SIZE
    x = np.load(ASSETS / "digits_test.npz")["input"][:2]
    q = m.quantize_input("input", x)
    words_a = ffi.new("int32_t[]", size // 4)
    words_b = ffi.new("int32_t[]", size // 4)
    arena_a, arena_b = ffi.cast("int8_t *", words_a), ffi.cast("int8_t *", words_b)
    ref = m.run_int8({"input": q})["probs"]  # static arena
    out_a, out_b = np.zeros(10, np.int8), np.zeros(10, np.int8)
    assert lib.digits_invoke_with(arena_a, ffi.from_buffer("int8_t[]", q[0]),
                                  ffi.from_buffer("int8_t[]", out_a, require_writable=True)) == 0
    snapshot = bytes(ffi.buffer(arena_a, size))
    assert lib.digits_invoke_with(arena_b, ffi.from_buffer("int8_t[]", q[1]),
                                  ffi.from_buffer("int8_t[]", out_b, require_writable=True)) == 0
    assert bytes(ffi.buffer(arena_a, size)) == snapshot
    assert bytes(ffi.buffer(arena_b, size)) != snapshot  # different input, different activations
    np.testing.assert_array_equal(out_a, ref[0])
    np.testing.assert_array_equal(out_b, ref[1])
    # a NULL or misaligned arena is refused with MQ_ERR_ARG, nothing written
    out = np.zeros(10, np.int8)
    inp = ffi.from_buffer("int8_t[]", q[0])
    assert lib.digits_invoke_with(ffi.NULL, inp, ffi.from_buffer("int8_t[]", out)) == 1
    assert lib.digits_invoke_with(arena_a + 1, inp, ffi.from_buffer("int8_t[]", out)) == 1
    assert not out.any()


def test_arena_placement_macros(firmware, tmp_path):
    """NAME_ARENA_SECTION puts the static arena into that section; NAME_NO_STATIC_ARENA drops
    it (and the static-arena entry points), leaving only the _with forms."""
    need("arm-none-eabi-gcc")
    gcc = shutil.which("arm-none-eabi-gcc")
    d = firmware / "digits"
    inc = [f"-I{d}", f"-I{firmware / 'runtime'}"]
    flags = [*mcu.TARGETS[M4].cflags, *mcu.COMMON_CFLAGS]
    obj = tmp_path / "placed.o"
    subprocess.run([gcc, *flags, *inc, "-DDIGITS_ARENA_SECTION=\".sram2\"", "-c",
                    str(d / "digits.c"), "-o", str(obj)], check=True)
    heads = subprocess.run([shutil.which("arm-none-eabi-objdump"), "-h", str(obj)],
                           capture_output=True, text=True, check=True).stdout
    m = re.search(r"^\s*\d+\s+\.sram2\s+([0-9a-f]+)", heads, flags=re.M)
    assert m and int(m.group(1), 16) == json.loads((d / "digits.json").read_text())["arena_size"]
    obj = tmp_path / "none.o"
    subprocess.run([gcc, *flags, *inc, "-DDIGITS_NO_STATIC_ARENA", "-c", str(d / "digits.c"),
                    "-o", str(obj)], check=True)
    nm = subprocess.run([shutil.which("arm-none-eabi-nm"), str(obj)], capture_output=True,
                        text=True, check=True).stdout
    syms = {line.split()[-1] for line in nm.splitlines()}
    assert {"digits_invoke_with", "digits_invoke_multi_with"} <= syms
    assert not syms & {"g_arena", "digits_invoke", "digits_invoke_multi"}
    assert not re.search(r" [bBdD] ", nm)  # no RAM at all: no static state


# Two models, one runtime, one image. digits runs on its static arena and on a scratch arena
# it shares with resnet (which is built without a static arena), sample by sample.
MAIN_C = r"""
#include <stdint.h>
#include "digits.h"
#include "resnet.h"
#include "mq_semihost.h"
#include "mq_target.h"

#define SHARED_SIZE (DIGITS_ARENA_SIZE > RESNET_ARENA_SIZE ? DIGITS_ARENA_SIZE : RESNET_ARENA_SIZE)
static union { int32_t align; int8_t bytes[SHARED_SIZE]; } g_shared;
static int8_t g_in_d[N_SAMPLES][DIGITS_INPUT_SIZE], g_in_r[N_SAMPLES][RESNET_INPUT_SIZE];
static int8_t g_out[N_SAMPLES][2 * DIGITS_OUTPUT_SIZE + RESNET_OUTPUT_SIZE];

int main(void)
{
    int32_t f = mq_sh_open("mq_in.bin", MQ_SH_MODE_RB);
    int32_t i;
    if (f < 0 || mq_sh_read(f, g_in_d, (int32_t)sizeof(g_in_d)) != 0 ||
        mq_sh_read(f, g_in_r, (int32_t)sizeof(g_in_r)) != 0) {
        return MQ_EXIT_IO;
    }
    (void)mq_sh_close(f);
    for (i = 0; i < N_SAMPLES; ++i) {
        int8_t *o = g_out[i];
        if (digits_invoke(g_in_d[i], o) != 0 ||
            resnet_invoke_with(g_shared.bytes, g_in_r[i], o + 2 * DIGITS_OUTPUT_SIZE) != 0 ||
            digits_invoke_with(g_shared.bytes, g_in_d[i], o + DIGITS_OUTPUT_SIZE) != 0) {
            return MQ_EXIT_STATUS;
        }
    }
    f = mq_sh_open("mq_out.bin", MQ_SH_MODE_WB);
    if (f < 0 || mq_sh_write(f, g_out, (int32_t)sizeof(g_out)) != 0) {
        return MQ_EXIT_IO;
    }
    (void)mq_sh_close(f);
    return MQ_EXIT_OK;
}
"""


def test_two_models_one_runtime_one_m4_image_bit_exact(firmware, tmp_path):
    need("arm-none-eabi-gcc", "qemu-system-arm")
    n = 8
    dm, rm = api.load(firmware / "digits"), api.load(firmware / "resnet")
    xd = dm.quantize_input("input", np.load(ASSETS / "digits_test.npz")["input"][:n])
    xr = rm.quantize_input("input", np.load(FIXTURES / "residual_net.npz")["input"][:n])
    want_d = dm.run_int8({"input": xd})["probs"].reshape(n, -1)
    want_r = rm.run_int8({"input": xr})["output"].reshape(n, -1)

    tgt = mcu.TARGETS[M4]
    gcc = mcu.tool("arm-none-eabi-gcc")
    flags = [*tgt.cflags, *mcu.COMMON_CFLAGS, f"-DN_SAMPLES={n}", "-DRESNET_NO_STATIC_ARENA"]
    (tmp_path / "main.c").write_text(MAIN_C)
    sources = [tmp_path / "main.c", *sorted((firmware / "runtime").glob("*.c")),
               *sorted((firmware / "digits").glob("*.c")),
               *sorted((firmware / "resnet").glob("*.c")),
               *(mcu.TARGETS_DIR / s for s in ("startup.c", "mq_semihost.c", "vectors.S"))]
    incs = [f"-I{d}" for d in (firmware / "runtime", firmware / "digits", firmware / "resnet",
                               mcu.TARGETS_DIR)]
    mcu.run_tool([gcc, *flags, *mcu.BUILD_CFLAGS, *incs, "-c", *map(str, sources)], tmp_path,
                 "compiling the two-model image")
    objs = sorted(p.name for p in tmp_path.glob("*.o"))
    mcu.link(gcc, flags, objs, tmp_path, tgt.linker_script, "two.elf")  # no duplicate symbols
    nm = mcu.run_tool([mcu.tool("arm-none-eabi-nm"), "two.elf"], tmp_path, "nm")
    defined = [line.split()[-1] for line in nm.splitlines() if " T " in line]
    assert defined.count("mq_conv2d_s8") == 1
    assert {"digits_invoke", "digits_invoke_with", "resnet_invoke_with"} <= set(defined)
    assert "resnet_invoke" not in defined

    (tmp_path / "mq_in.bin").write_bytes(xd.tobytes() + xr.tobytes())
    p = subprocess.run(mcu.qemu_command(tgt, tmp_path / "two.elf"), cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
    out = np.frombuffer((tmp_path / "mq_out.bin").read_bytes(), np.int8).reshape(n, -1)
    k = want_d.shape[1]
    np.testing.assert_array_equal(out[:, :k], want_d)  # digits, static arena
    np.testing.assert_array_equal(out[:, k:2 * k], want_d)  # digits, the shared arena
    np.testing.assert_array_equal(out[:, 2 * k:], want_r)  # resnet, the shared arena
    assert len(set(map(bytes, want_r))) > 1  # the samples differ: a stale arena would show
