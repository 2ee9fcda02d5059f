"""The `microq` command line: a thin click group over microq.api."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import click

from . import __version__
from .errors import MicroqError
from .names import BOARD_NAMES, MCU_TARGET_NAMES, TARGET_NAMES


TARGETS = TARGET_NAMES
MCU_TARGETS = MCU_TARGET_NAMES
BOARDS = BOARD_NAMES
_T0 = time.perf_counter()  # at import, so `compile` reports the whole command's time


def _fail(e: Exception) -> None:
    raise click.ClickException(str(e))


class _Group(click.Group):
    """Turns MicroqError into a one-line message and exit status 1 (no traceback). Anything
    else is a microq bug: one line too, unless MICROQ_DEBUG=1 asks for the traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MicroqError as e:
            _fail(e)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:  # `microq inspect m.onnx | head`: click exits 1, silently
            raise
        except Exception as e:  # noqa: BLE001 - the last line of defence for users
            if os.environ.get("MICROQ_DEBUG"):
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            _fail(RuntimeError(f"internal error ({type(e).__name__}: {msg}); this is a microq "
                               "bug, please report it with the command (MICROQ_DEBUG=1 shows "
                               "the traceback)"))


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="microq")
def main() -> None:
    """microq: float ONNX model in, integer-only int8 C for microcontrollers out.

    \b
    Typical use:
      microq inspect model.onnx
      microq compile model.onnx --calib calib.npz -o out/net --name net
      microq run out/net --input test.npz -o pred.npz
      microq compare model.onnx out/net --data test.npz
    """


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def inspect(model: str, as_json: bool) -> None:
    """Print one row per layer of MODEL (op, shapes, MACs, parameters) and list every node
    microq cannot compile yet. Never fails on unsupported nodes."""
    from . import api

    report = api.inspect(model)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.table())


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.option("--markdown", is_flag=True, help="Print the README's table.")
def ops(as_json: bool, markdown: bool) -> None:
    """List the ONNX ops microq compiles, the C kernel each runs as, and their limits."""
    from . import api

    ops_table = api.ops_table()
    if as_json:
        click.echo(json.dumps(ops_table.supported_ops(), indent=2, ensure_ascii=False))
    elif markdown:
        click.echo(ops_table.markdown())
    else:
        click.echo(ops_table.text())


METHODS = ["minmax", "percentile", "entropy", "mse"]


def _calib_options(f):
    f = click.option("--bias-correction", is_flag=True,
                     help="Correct each conv/linear layer's per-channel mean shift caused by "
                          "weight quantization, measured on the calibration data.")(f)
    f = click.option("--method", type=click.Choice(METHODS), default="minmax",
                     show_default=True,
                     help="Activation range calibration: min/max, 99.999th percentile, "
                          "entropy (KL divergence) or minimum quantization MSE.")(f)
    f = click.option("--calib", type=click.Path(dir_okay=False, path_type=str), default=None,
                     help="Calibration samples: .npz keyed by input name, arrays "
                          "(N, *input_shape[1:]) in the ONNX layout; a .npy works for a "
                          "single-input model. Not needed for int8 .tflite or QDQ models.")(f)
    return f


def _int16_arg(value):
    """--int16: None, "auto", or the list of layer names."""
    if value is None:
        return None
    if value.strip() == "auto":
        return "auto"
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise click.BadParameter("give layer names or auto", param_hint="--int16")
    return names


def _int16_instructions(model, calib, out_dir, **kw) -> dict | None:
    """Instructions of one inference on the emulated Cortex-M4 of the compiled folder and of
    the same model all in int8 (compiled into a temporary folder)."""
    import tempfile

    from . import api

    try:
        with tempfile.TemporaryDirectory(prefix="mq_int8_") as d:
            api.compile_model(model, calib, Path(d) / "int8", **kw)
            base = api.profile(Path(d) / "int8", DEFAULT_TARGET)["total_instructions"]
        mixed = api.profile(out_dir, DEFAULT_TARGET)["total_instructions"]
    except MicroqError:
        return None
    return {"target": DEFAULT_TARGET, "int8": int(base), "mixed": int(mixed)}


def _int16_line(info: dict) -> str:
    low = ", ".join(f"{k} {v:.1f} dB" for k, v in info.get("low_sqnr_db", {}).items())
    layers = ", ".join(info["int16_layers"]) or "none"
    line = (f"16x8 layers: {layers}" + (f" (int8 isolated SQNR: {low})" if low else "") +
            f"; arena {info['arena_int8']} -> {info['arena_mixed']} B, "
            f"{info['macs_16x8']} MACs in 16x8 kernels, "
            f"{info['requantize_nodes']} int8<->int16 requantize nodes")
    ins = info.get("m4_instructions")
    if ins:
        line += (f"; {ins['target']} instructions {ins['int8']:,} (all int8) -> "
                 f"{ins['mixed']:,} ({100 * (ins['mixed'] / ins['int8'] - 1):+.0f}%)")
    return line


@main.command(name="compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=str))
@_calib_options
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=str),
              help="Output folder for the generated C (replaced atomically).")
@click.option("--name", default="net", show_default=True,
              help="C identifier prefix: NAME.h, NAME_invoke(), NAME_ARENA_SIZE.")
@click.option("--rounding", type=click.Choice(["double", "single"]), default="double",
              show_default=True,
              help="Requantization rounding: TFLite Micro's double rounding, or TFLite's "
                   "single rounding (builds with MQ_SINGLE_ROUNDING=1).")
@click.option("--runtime", type=click.Choice(["copy", "external"]), default="copy",
              show_default=True,
              help="copy: the folder holds the runtime files it uses (compiles on its own); "
                   "external: it does not, link it with one `microq runtime -o DIR` folder "
                   "shared by several models.")
@click.option("--layout", type=click.Choice(["flat", "arduino"]), default="flat",
              show_default=True,
              help="flat: every file at the top plus CMakeLists.txt, Makefile, "
                   "arm-none-eabi.cmake and example/main.c; arduino: an Arduino library "
                   "(library.properties, src/, examples/).")
@click.option("--board", type=click.Choice(BOARDS), default=None,
              help="Also check the result against a real part's flash and RAM.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--plot-memory", "plot_memory", type=click.Path(dir_okay=False, path_type=str),
              default=None,
              help="Also draw the arena over time (one bar per tensor at its offset, per layer) "
                   "into this PNG (needs matplotlib).")
@click.option("--no-size", "no_size", is_flag=True,
              help="Skip linking for the default target (cortex-m4) to report flash and RAM; "
                   "saves several seconds (`microq size` reports it later).")
@click.option("--int16", "int16", default=None, metavar="auto|LAYER,...",
              help="16x8 mode for these layers (int16 activations, int8 weights; ONNX only): "
                   "comma-separated layer names (as `microq inspect` lists them), or auto: the "
                   "layers whose isolated int8 SQNR is below 35 dB and their readers.")
def compile_(model, calib, out_dir, name, method, bias_correction, rounding, runtime, layout,
             board, as_json, plot_memory, no_size, int16) -> None:
    """Quantize MODEL (float ONNX + --calib, or an already quantized QDQ ONNX or int8 .tflite)
    and write a self-contained C folder (NAME.h, NAME.c, weights, runtime sources) that compiles
    with any C99 compiler."""
    from . import api

    api.check_name(name)  # before calibrating
    if plot_memory:
        api.require_matplotlib()
    command = "microq " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    t0 = time.perf_counter()
    steps = api.calibration_steps(calib, method)
    existed = Path(out_dir).is_dir()
    with api.progress_bar("calibrating", as_json or steps is None, steps) as bar:
        result = api.compile_model(model, calib, out_dir, name=name, method=method,
                                   command=command, progress=bar.update, rounding=rounding,
                                   bias_correction=bias_correction, runtime=runtime,
                                   layout=layout, int16=_int16_arg(int16))
    seconds = time.perf_counter() - t0
    if no_size:
        size, note = None, f"({DEFAULT_TARGET} size skipped (--no-size): see `microq size`)"
    else:
        size, note = _default_target_size(out_dir)
    if result.int16 is not None and size is not None:  # measured M4 cost of the 16x8 layers
        result.int16["m4_instructions"] = _int16_instructions(
            model, calib, out_dir, name=name, method=method, rounding=rounding)
    fit = None
    if board:
        fit = api.fit(out_dir, board)
    total = time.perf_counter() - _T0
    if as_json:
        click.echo(json.dumps(dict(result.summary_json(), seconds=round(total, 2),
                                   int16=result.int16,
                                   compile_seconds=round(seconds, 2), size=size,
                                   size_note=note, board=fit, kept=list(result.kept)),
                              indent=2))
    else:
        click.echo(result.summary_table())
        if result.int16 is not None:
            click.echo(_int16_line(result.int16))
        overlap = _overlap_line(result.qgraph)
        if overlap:
            click.echo(overlap)
        click.echo(_size_lines(size) if size else note)
        if fit:
            click.echo(api.fit_lines(fit))
        click.echo(f"wrote {out_dir}/ in {total:.1f} s (quantize and generate {seconds:.1f} s, "
                   "the rest start-up" + ("" if no_size else " and the size check") + ")")
        if existed or result.kept:
            click.echo(_kept_line(out_dir, result.kept))
    if plot_memory:
        api.plot_memory(result.qgraph, plot_memory)
        if not as_json:
            click.echo(f"wrote {plot_memory}")


def _kept_line(out_dir: str, kept: tuple[str, ...]) -> str:
    """How many files microq did not write it carried over into the new folder."""
    if not kept:
        return f"kept 0 files of yours in {out_dir}/ (it held only files microq wrote)"
    tops = sorted({k.split("/")[0] + ("/" if "/" in k else "") for k in kept})
    shown = ", ".join(tops[:5]) + (f", ... ({len(tops)} in all)" if len(tops) > 5 else "")
    n = len(kept)
    return f"kept {n} file{'s' if n != 1 else ''} of yours in {out_dir}/: {shown}"


DEFAULT_TARGET = "cortex-m4"


def _default_target_size(out_dir: str) -> tuple[dict | None, str]:
    """The linked size on the default target, when the Arm toolchain is installed."""
    import shutil

    from . import api

    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        return None, (f"({DEFAULT_TARGET} size: install gcc-arm-none-eabi "
                      "libnewlib-arm-none-eabi qemu-system-arm to see it)")
    try:
        return api.size(out_dir, DEFAULT_TARGET), ""
    except MicroqError as e:
        return None, f"({DEFAULT_TARGET} size not available: {e})"


def _size_lines(rep: dict) -> str:
    lines = [f"linked for {rep['target']} on the emulated board {rep['board']} (its memory, not a "
             "real part's; --board checks one):"]
    for kind in ("flash", "ram"):
        parts = rep[kind]
        items = ", ".join(f"{k} {v:,}" for k, v in parts.items() if k not in ("total", "available"))
        lines.append(f"  {kind:5} {parts['total']:>9,} B of {parts['available']:,}  ({items})")
    return "\n".join(lines)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=str))
@_calib_options
@click.option("-o", "--out", "out_path", required=True,
              type=click.Path(path_type=str),  # a folder is refused by api in one line
              help="The QDQ ONNX file to write (e.g. MODEL.int8.onnx).")
def quantize(model, calib, out_path, method, bias_correction) -> None:
    """Quantize a float ONNX MODEL with microq's scheme and write it as a standard QDQ ONNX model
    (QuantizeLinear/DequantizeLinear pairs, per-channel int8 weights) that onnxruntime runs and
    Netron opens. `microq compile` accepts the result and gives the same C."""
    from . import api

    if calib is None:
        raise MicroqError(f"{model}: quantize needs calibration data (--calib)")
    steps = api.calibration_steps(calib, method)
    with api.progress_bar("calibrating", steps is None, steps) as bar:
        path = api.quantize_to_qdq(model, calib, out_path, method=method, progress=bar.update,
                                   bias_correction=bias_correction)
    click.echo(f"wrote {path}")


@main.command()
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--input", "input_path", required=True,
              type=click.Path(dir_okay=False, path_type=str),
              help=".npz keyed by input name (other keys ignored) or .npy, float, ONNX layout.")
@click.option("-o", "--out", "out_path", required=True,
              type=click.Path(dir_okay=False, path_type=str),
              help="Output .npz keyed by output name, shaped (N, *output_shape[1:]), or "
                   "(N, *output_shape) for an output shape that does not start with 1.")
@click.option("--raw", is_flag=True, help="Write the int8 outputs instead of dequantized floats.")
@click.option("--target", default="host", show_default=True, type=click.Choice(TARGETS),
              help="host (cffi build), or an emulated Cortex-M core under QEMU.")
@click.option("--timeout", type=float, default=None,
              help="Seconds allowed for an emulated run (default: scaled by samples x MACs).")
def run(model_dir, input_path, out_path, raw, target, timeout) -> None:
    """Build MODEL_DIR (a folder from `microq compile`) for the host or an emulated Cortex-M
    core, run it on every sample of the input file, and save the outputs."""
    from . import api

    outputs = api.run_on(model_dir, input_path, target=target, raw=raw, timeout=timeout)
    api.save_npz(out_path, outputs)
    shapes = ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in outputs.items())
    click.echo(f"wrote {out_path}: {shapes}")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=str))
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--data", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Samples (.npz keyed by input name); a 'label' array adds accuracy.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=str),
              default=None,
              help="Also draw SQNR per layer into this PNG (needs matplotlib).")
def compare(model, model_dir, data, as_json, plot_path) -> None:
    """Run the float MODEL (onnxruntime) and the int8 C of MODEL_DIR on the same data and report
    per output and per layer: max abs error, SQNR (dB), cosine; top-1 agreement and accuracy."""
    from . import api

    report = api.compare(model, model_dir, data)
    if plot_path:
        api.plot_compare(report, plot_path)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.table())


@main.command()
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--target", default="cortex-m4", show_default=True, type=click.Choice(MCU_TARGETS))
@click.option("--board", type=click.Choice(BOARDS), default=None,
              help="Check against a real part's flash and RAM (datasheet figures) instead; "
                   "exit status 1 when the model does not fit.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def size(model_dir, target, board, as_json) -> None:
    """Flash and RAM of MODEL_DIR linked for TARGET (arm-none-eabi-size), split into runtime
    code, model code, weights, arena and stack (measured on the emulator); with --board, what
    it needs on that part and by how many bytes it does not fit."""
    from . import api

    if board:
        rep = api.fit(model_dir, board)
        click.echo(json.dumps(rep, indent=2) if as_json else api.fit_lines(rep))
        if not rep["fits"]:
            raise MicroqError(api.misfit_message(rep))
        return
    rep = api.size(model_dir, target)
    if as_json:
        click.echo(json.dumps(rep, indent=2))
        return
    click.echo(f"{rep['model']}: " + _size_lines(rep))


@main.command()
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--target", default="cortex-m4", show_default=True, type=click.Choice(MCU_TARGETS))
@click.option("--clock", "clock_mhz", type=float, default=None, metavar="MHZ",
              help="Core clock in MHz: also print the estimated time in milliseconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def profile(model_dir, target, clock_mhz, as_json) -> None:
    """Exact instruction counts of one inference of MODEL_DIR on the emulated TARGET core, per
    layer and in total, and instructions per MAC (a QEMU plugin counts every instruction); on
    cortex-m4, cortex-m0plus and cortex-m33 also estimated cycles (per-class counts times the
    core's TRM timing table, zero wait states: microq.runtime.timing)."""
    from . import api
    from .runtime.profile import with_clock

    if clock_mhz is not None and not clock_mhz > 0:
        raise MicroqError(f"--clock must be a positive frequency in MHz, got {clock_mhz}")
    rep = with_clock(api.profile(model_dir, target), clock_mhz)
    if as_json:
        click.echo(json.dumps(rep, indent=2))
        return
    cycles = rep.get("estimated_cycles")
    line = (f"{rep['model']} on {rep['target']}: {rep['total_instructions']:,} instructions, "
            f"{rep['macs']:,} MACs, {rep['instructions_per_mac']} per MAC")
    if cycles is not None:
        line += f"; estimated {cycles:,} cycles, {rep['cycles_per_mac']} per MAC"
        if "estimated_ms" in rep:
            line += f", {rep['estimated_ms']:.3f} ms at {clock_mhz:g} MHz"
    click.echo(line)
    from .report import table as _table

    est = cycles is not None
    ms = "estimated_ms" in rep
    rows = []
    for l in rep.get("layers") or []:
        row = [l["index"], l["name"], l["kernel"], f"{l['instructions']:,}", f"{l['macs']:,}",
               "-" if l["instructions_per_mac"] is None else f"{l['instructions_per_mac']:.2f}"]
        if est:
            row += [f"{l['cycles']:,}",
                    "-" if l["cycles_per_mac"] is None else f"{l['cycles_per_mac']:.2f}"]
        if ms:
            row.append(f"{l['estimated_ms']:.3f}")
        rows.append(row)
    if rows:
        head = ["#", "layer", "kernel", "instructions", "MACs", "per MAC"]
        head += ["est. cycles", "cycles/MAC"] if est else []
        head += ["ms"] if ms else []
        click.echo(_table(head, rows, "rllrrr" + "rr" * est + "r" * ms))
    if rep.get("per_layer_note"):
        click.echo(rep["per_layer_note"])
    click.echo(f"cycles: {rep['timing_note']}"
               + (f" ({rep['timing_table']})" if rep.get("timing_table") else ""))


@main.command(name="runtime")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=str),
              help="Folder to write the runtime into (replaced atomically).")
def runtime_(out_dir) -> None:
    """Write the whole C runtime (mq_*.h, mq_*.c) once, for firmware with several models: compile
    each model with --runtime external and build their folders together with this one."""
    from . import api

    files = api.write_runtime(out_dir)
    n = sum(1 for f in files if f.endswith(".c"))
    click.echo(f"wrote {out_dir}/: the microq runtime, {n} sources (link it once per firmware)")


@main.group()
def cache() -> None:
    """The build cache ($MICROQ_CACHE or ~/.cache/microq): host modules, board images."""


@cache.command(name="info")
def cache_info() -> None:
    """Print where the cache is and how much it holds."""
    from . import api

    path, n, size = api.cache_info()
    click.echo(f"{path}: {n} entries, {size:,} B")


@cache.command(name="clean")
def cache_clean() -> None:
    """Delete everything in the cache (it is rebuilt on demand)."""
    from . import api

    path, n, size = api.cache_clean()
    click.echo(f"removed {n} entries ({size:,} B) from {path}")


def _overlap_line(qgraph) -> str:
    """Where in-place overlaps (codegen/overlap.py) change it, the overlap-aware bound next to the
    arena and the tensor-granular liveness bound (both also in the summary's "RAM arena" line)."""
    from . import api

    p = api.plan(qgraph)
    if p.overlap_bound < 0 or p.overlap_bound == p.lower_bound:
        return ""
    return (f"arena {p.arena_size:,} B, liveness bound {p.lower_bound:,} B, overlap-aware bound "
            f"{p.overlap_bound:,} B ({len(p.overlaps)} kernel(s) in place)")
