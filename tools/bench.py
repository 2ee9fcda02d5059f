"""`make bench`: compile the demo and the MLPerf Tiny float models and print the deterministic
figures: flash (weights), RAM (arena vs the liveness lower bound), MACs, compile wall time,
float vs int8 agreement, instructions per inference on the emulated Cortex-M4 (DSP and portable
builds) and Cortex-M0+ (QEMU plugin, exact), and on the host (valgrind callgrind); then the
ONNX node-test scoreboard's totals (tools/onnx_node_suite.py, integer reference, ~15 s).

Then the speed table against the MLPerf Tiny leaders (issue 11): every MLPerf model from its
int8 `.tflite` and from its float ONNX twin, on the Cortex-M4 (DSP) and the Cortex-M0+:
instructions (exact), estimated cycles (runtime/timing.py: TRM tables, zero wait states), ms
at the leader's clock, the leader's published cycles and the ratios; and the x86-64 host
instructions (callgrind) of the same folders. Last, the per-kernel instructions/MAC budgets
that tests/test_kernel_perf.py pins, beside today's measured figures.

Usage: python tools/bench.py [--json FILE] [--models demo,ic01,...] [--speed-only]
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
from microq.compare import run_onnxruntime  # noqa: E402
from microq.report import Stats  # noqa: E402

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


# MLPerf Tiny closed results, NUCLEO-L4R5ZI (Cortex-M4 @120 MHz): X-CUBE-AI v9 (vww01, ic01,
# kws01) and Plumerai (ad01), v1.1/v1.2; Bosch HALE on the NUCLEO-G0B1RE (Cortex-M0+ @64 MHz).
# Cycles = published latency x clock (issue 11's table).
LEADERS = {
    "m4": {"clock_mhz": 120, "vww01": (10.7e6, "X-CUBE-AI v9 88.9 ms"),
           "ic01": (19.8e6, "X-CUBE-AI v9 165.1 ms"), "kws01": (5.18e6, "X-CUBE-AI v9 43.2 ms"),
           "ad01": (0.486e6, "Plumerai 4.05 ms")},
    "m0plus": {"clock_mhz": 64, "kws01": (30.4e6, "Bosch HALE"), "vww01": (90.5e6, "Bosch HALE"),
               "ic01": (97.4e6, "Bosch HALE"), "ad01": (2.62e6, "Bosch HALE")},
}
# (column label, profile target, dsp): the M0+ build runs on the Cortex-M3 board for its RAM
# (runtime/mcu.py BENCH_TARGETS; same ARMv6-M image and instruction stream as the micro:bit's).
SPEED_TARGETS = (("m4", "cortex-m4", True), ("m0plus", "cortex-m0plus-mps2", None))
TFLITE = {"ic01": "pretrainedResnet_quant.tflite", "vww01": "vww_96_int8.tflite",
          "kws01": "kws_ref_model.tflite", "ad01": "ad01_int8.tflite",
          "sww01": "str_ww_ref_model.tflite"}


def speed_rows(key: str, source: str, folder: Path | None, error: str = "") -> list[dict]:
    """One row per target (M4 DSP, M0+, x86 host) for a compiled folder."""
    from microq.runtime import profile

    rows = []
    for label, target, dsp in SPEED_TARGETS:
        row = {"model": key, "source": source, "target": label}
        lead = LEADERS[label].get(key)
        clock = LEADERS[label]["clock_mhz"]
        row["leader_cycles"] = int(lead[0]) if lead else None
        row["leader"] = lead[1] if lead else None
        row["clock_mhz"] = clock
        if folder is None:
            row["error"] = error
            rows.append(row)
            continue
        p = profile.profile(folder, target, dsp=dsp, timeout=600)
        row["instructions"] = p["total_instructions"]
        row["cycles"] = p["estimated_cycles"]
        row["ms"] = round(p["estimated_cycles"] / (clock * 1e3), 2)
        if lead:
            row["instr_vs_leader"] = round(p["total_instructions"] / lead[0], 2)
            row["cycles_vs_leader"] = round(p["estimated_cycles"] / lead[0], 2)
        rows.append(row)
    host = {"model": key, "source": source, "target": "x86-64 host"}
    if folder is not None:
        host["instructions"] = host_instructions(folder, key)
    else:
        host["error"] = error
    rows.append(host)
    return rows


def print_speed(rows: list[dict]) -> None:
    def m(v):
        return "-" if v is None else f"{v / 1e6:.4g} M"

    names = {"m4": "M4 DSP", "m0plus": "M0+"}

    print("\n**Speed against the MLPerf Tiny leaders** (instructions exact; cycles estimated "
          "from the TRM timing tables, zero wait states; ms at the leader's clock; "
          "ratio < 1: fewer than the leader's cycles)\n")
    print("| model | from | target | instructions | est. cycles | ms | leader (cycles) "
          "| instr / leader | cycles / leader |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("error"):
            print(f"| {r['model']} | {r['source']} | {names.get(r['target'], r['target'])} "
                  f"| {r['error']} | | | | | |")
            continue
        lead = f"{r['leader']} ({m(r['leader_cycles'])})" if r.get("leader") else "-"
        ms = f"{r['ms']:.2f} @{r['clock_mhz']} MHz" if "ms" in r else "-"
        print(f"| {r['model']} | {r['source']} | {names.get(r['target'], r['target'])} "
              f"| {m(r.get('instructions'))} "
              f"| {m(r.get('cycles'))} | {ms} | {lead} | {r.get('instr_vs_leader', '-')} "
              f"| {r.get('cycles_vs_leader', '-')} |")


def budget_rows() -> list[dict]:
    """tests/test_kernel_perf.py's instructions/MAC budgets with today's measured figures."""
    import test_kernel_perf as kp  # tests/ is on sys.path (above); it imports tools/bench_kernels
    from bench_kernels import bench_layers, conv_layer, kernel_folder
    from microq.runtime import profile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for (target, dsp), budgets in kp.BENCH_BUDGET.items():
            for i, (key, layer) in enumerate(bench_layers().items()):
                folder = kernel_folder([layer], Path(tmp) / f"{target}-{i}")
                p = profile.profile(folder, target, dsp=dsp)
                n, c = p["layers"][0]["instructions"], p["layers"][0]["cycles"]
                rows.append({"kernel": key, "target": target, "dsp": dsp,
                             "instr_per_mac": round(n / layer.macs, 2),
                             "budget": budgets[key],
                             "cycles_per_mac": round(c / layer.macs, 2)})
        layer = conv_layer(np.random.default_rng(0), "conv3x3 8x8x16->16", (8, 8), 16, 16,
                           (3, 3), pad=1)
        for (target, dsp), budget in kp.BUDGET.items():
            folder = kernel_folder([layer], Path(tmp) / f"c-{target}-{dsp}")
            p = profile.profile(folder, target, dsp=dsp)
            n, c = p["layers"][0]["instructions"], p["layers"][0].get("cycles")
            rows.append({"kernel": "conv 3x3 8x8x16", "target": target, "dsp": dsp,
                         "instr_per_mac": round(n / layer.macs, 2), "budget": budget,
                         "cycles_per_mac": round(c / layer.macs, 2) if c else None})
    return rows


def print_budgets(rows: list[dict]) -> None:
    print("\n**Kernel budgets pinned by tests/test_kernel_perf.py** (instructions per MAC; "
          "est. cycles per MAC beside)\n")
    print("| kernel | target | measured instr/MAC | budget | est. cycles/MAC |")
    print("|---|---|---|---|---|")
    for r in rows:
        t = r["target"] + (" DSP" if r["dsp"] else " portable" if r["dsp"] is False else "")
        cyc = "-" if r["cycles_per_mac"] is None else f"{r['cycles_per_mac']:.2f}"
        print(f"| {r['kernel']} | {t} | {r['instr_per_mac']:.2f} | {r['budget']} | {cyc} |")


def readme_table(speed: list[dict]) -> str:
    """README's "measured speed" table: the .tflite rows, M4 DSP and M0+ beside the leaders,
    and the x86-64 host instructions."""
    by = {(r["model"], r["target"]): r for r in speed if r["source"] == ".tflite"}
    out = ["| model | M4 DSP: instructions / est. cycles / ms @120 MHz | leader M4 | cycles "
           "/ leader | M0+: instructions / est. cycles / ms @64 MHz | leader M0+ | cycles / "
           "leader | x86-64 instructions |", "|---|---|---|---|---|---|---|---|"]
    for key in ("vww01", "ic01", "kws01", "ad01", "sww01"):
        if (key, "m4") not in by:
            continue
        cells = [key]
        for t in ("m4", "m0plus"):
            r = by[key, t]
            if r.get("error"):
                cells += [r["error"], "", ""]
                continue
            cells.append(f"{r['instructions'] / 1e6:.2f} M / {r['cycles'] / 1e6:.2f} M / "
                         f"{r['ms']:.1f}")
            cells.append(f"{r['leader_cycles'] / 1e6:.3g} M ({r['leader']})"
                         if r.get("leader_cycles") else "-")
            cells.append(f"{r['cycles_vs_leader']:.2f}" if "cycles_vs_leader" in r else "-")
        host = by.get((key, "x86-64 host"), {}).get("instructions")
        cells.append(f"{host / 1e6:.2f} M" if host else "-")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def compile_tflite(key: str, out: Path) -> tuple[Path | None, str]:
    from conftest import MODELS
    from microq.errors import MicroqError

    src = MODELS / "tflite" / TFLITE[key]
    if not src.is_file():
        return None, f"{src} not found"
    try:
        api.compile_model(src, None, out, name=key)
    except MicroqError as e:
        return None, f"does not compile: {str(e).splitlines()[0]}"
    return out, ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    ap.add_argument("--models", help="comma-separated subset (demo,ic01,vww01,kws01,ad01,sww01)")
    ap.add_argument("--speed-only", action="store_true",
                    help="only the speed table against the MLPerf leaders and the budgets")
    ap.add_argument("--readme-from", metavar="JSON",
                    help="print README's measured-speed table from a --json file and exit")
    args = ap.parse_args()
    if args.readme_from:
        print(readme_table(json.loads(Path(args.readme_from).read_text())["speed"]))
        return
    wanted = set(args.models.split(",")) if args.models else None
    rows, speed, onnx_dirs = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, model, calib, data, labels in datasets():
            if wanted and key not in wanted:
                continue
            out = Path(tmp) / key
            if args.speed_only:
                if key != "demo":
                    from microq.errors import MicroqError

                    try:
                        api.compile_model(model, calib, out, name=key)
                        onnx_dirs[key] = (out, "")
                    except MicroqError as e:
                        onnx_dirs[key] = (None, f"does not compile: {str(e).splitlines()[0]}")
                continue
            t0 = time.perf_counter()
            res = api.compile_model(model, calib, out, name=key)
            secs = time.perf_counter() - t0
            onnx_dirs[key] = (out, "")
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
        for key in ("vww01", "ic01", "kws01", "ad01", "sww01"):
            if wanted and key not in wanted:
                continue
            folder, err = compile_tflite(key, Path(tmp) / "tflite" / key)
            speed += speed_rows(key, ".tflite", folder, err)
            if key in onnx_dirs:
                speed += speed_rows(key, "ONNX", *onnx_dirs[key])
            print(json.dumps(speed[-1]), file=sys.stderr)
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

    if rows:
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in rows:
            print("| " + " | ".join(fmt(r.get(c)) for c in cols) + " |")
    print_speed(speed)
    print("\nREADME table (the .tflite rows):\n")
    print(readme_table(speed))
    budgets = budget_rows()
    print_budgets(budgets)
    if args.json:
        Path(args.json).write_text(json.dumps({"models": rows, "speed": speed,
                                               "budgets": budgets}, indent=2))
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
