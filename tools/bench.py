"""`make bench`: compile the demo and the MLPerf Tiny float models and print the deterministic
figures: flash (weights), RAM (arena vs the liveness lower bound), MACs, compile wall time,
float vs int8 agreement, instructions per inference on the emulated Cortex-M4 (DSP and portable
builds) and Cortex-M0+ (QEMU plugin, exact), and on the host (valgrind callgrind); then the
ONNX node-test scoreboard's totals (tools/onnx_node_suite.py, integer reference, ~15 s).

Usage: python tools/bench.py [--json FILE] [--models demo,ic01,...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from microq import api  # noqa: E402
from microq.report import Stats, run_onnxruntime  # noqa: E402

ASSETS = REPO / "python" / "microq" / "assets"

DRIVER = r"""
#include "{name}.h"
static int8_t in[{name_u}_INPUT_SIZE];
static int8_t out[{name_u}_OUTPUT_SIZE];
int main(void) {{ return {name}_invoke(in, out); }}
"""


def host_instructions(model_dir: Path, name: str) -> int | None:
    """Instructions executed by one NAME_invoke on the host (x86-64, gcc -O2), via callgrind."""
    if shutil.which("valgrind") is None:
        return None
    meta = api.load_meta(model_dir)
    if len(meta["inputs"]) != 1 or len(meta["outputs"]) != 1:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "main.c").write_text(DRIVER.format(name=name, name_u=name.upper()))
        exe = t / "bench"
        srcs = [str(p) for p in sorted(model_dir.glob("*.c"))] + [str(t / "main.c")]
        subprocess.run(["cc", "-std=c99", "-O2", "-I", str(model_dir), *srcs, "-o", str(exe)],
                       check=True)
        out = t / "cg.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        f"--toggle-collect={name}_invoke", str(exe)], check=True,
                       capture_output=True)
        for line in out.read_text().splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    return None


def mcu_figures(out: Path) -> dict:
    """Instructions per inference on the emulated cores, and the M4 image's code and stack."""
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        return {}
    from microq.errors import MicroqError

    fig = {}
    for label, target, dsp in (("m4_dsp", "cortex-m4", True), ("m4_portable", "cortex-m4", False),
                               ("m0plus", "cortex-m0plus", None)):
        try:
            p = api.profile(out, target, dsp=dsp)
        except MicroqError:  # does not fit the board (the micro:bit has 16 KiB of RAM)
            fig[f"{label}_per_mac"] = None
            continue
        fig[f"{label}_instructions"] = p["total_instructions"]
        fig[f"{label}_per_mac"] = p["instructions_per_mac"]
    size = api.size(out, "cortex-m4")
    fig["m4_code"] = size["flash"]["runtime_code"] + size["flash"]["model_code"]
    fig["m4_stack"] = size["ram"]["stack"]
    return fig


def datasets():
    from mlperf_data import model_path, real_data

    z = np.load(ASSETS / "digits_test.npz")
    yield "demo", ASSETS / "digits_cnn.onnx", ASSETS / "digits_calib.npz", \
        {"input": z["input"]}, z["label"]
    for key in ("ic01", "vww01", "kws01", "ad01", "sww01"):
        data, labels = real_data(key)
        yield key, model_path(key), data, data, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    ap.add_argument("--models", help="comma-separated subset (demo,ic01,vww01,kws01,ad01,sww01)")
    args = ap.parse_args()
    wanted = set(args.models.split(",")) if args.models else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for key, model, calib, data, labels in datasets():
            if wanted and key not in wanted:
                continue
            out = Path(tmp) / key
            t0 = time.perf_counter()
            res = api.compile_model(model, calib, out, name=key)
            secs = time.perf_counter() - t0
            s = res.summary_json()
            ref = run_onnxruntime(model, data)
            got = api.run(out, data)
            name = next(iter(ref))
            st = Stats()
            st.add(ref[name], got[name])
            r = ref[name].reshape(len(ref[name]), -1)
            g = got[name].reshape(len(got[name]), -1)
            row = {
                "model": key, "samples": len(r), "macs": s["macs"],
                "flash_weights": s["weight_bytes"], "arena": s["arena_bytes"],
                "lower_bound": s["arena_lower_bound"],
                "arena_ratio": round(s["arena_bytes"] / max(1, s["arena_lower_bound"]), 3),
                "compile_s": round(secs, 2), "sqnr_db": round(st.sqnr_db, 1),
                "host_instructions": host_instructions(out, key),
            }
            row.update(mcu_figures(out))
            if row["host_instructions"]:
                row["host_instr_per_mac"] = round(row["host_instructions"] / s["macs"], 2)
            x = next(iter(data.values())).reshape(len(r), -1)
            if x.shape == r.shape:  # an autoencoder: reconstruction error, not classes
                row["mse_float"] = float(np.mean((x - r) ** 2))
                row["mse_int8"] = float(np.mean((x - g) ** 2))
            elif r.shape[1] > 1:
                row["top1_agreement"] = float(np.mean(r.argmax(1) == g.argmax(1)))
                if labels is not None:
                    row["acc_float"] = float(np.mean(r.argmax(1) == labels))
                    row["acc_int8"] = float(np.mean(g.argmax(1) == labels))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    cols = ["model", "samples", "macs", "flash_weights", "arena", "lower_bound", "arena_ratio",
            "sqnr_db", "top1_agreement", "acc_float", "acc_int8", "mse_float", "mse_int8",
            "m4_dsp_instructions", "m4_dsp_per_mac", "m4_portable_per_mac", "m0plus_per_mac",
            "m4_code", "m4_stack", "host_instructions", "host_instr_per_mac", "compile_s"]

    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c)) for c in cols) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    node_suite_totals()


def node_suite_totals() -> None:
    """The ONNX node-test scoreboard's totals (tools/onnx_node_suite.py, integer reference,
    a few seconds): all applicable tests and issue 8's footing."""
    sys.path.insert(0, str(REPO / "tools"))
    import onnx_node_suite as ns

    try:
        whl = ns.wheel()
    except SystemExit as e:  # offline: the wheel cannot be fetched
        print(f"ONNX node suite: not run ({e})")
        return
    for footing in (None, "issue8"):
        t = ns.totals(ns.run_suite(footing=footing, whl=whl))
        goal = f" (goal {ns.FOOTINGS[footing]['goal']})" if footing else ""
        print(f"ONNX node suite{' footing ' + footing if footing else ''}: applicable "
              f"{t['applicable']}, compiled {t['compiled']}{goal} (>= 30 dB {t['good']}, "
              f"< 30 dB {t['bad']}), refused {t['refused']}; _expanded "
              f"{t['expanded_compiled']} of {t['expanded']}")


if __name__ == "__main__":
    main()
